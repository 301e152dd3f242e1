"""A real PostgreSQL server for the tests, from Debian's `postgresql` package.

One server per test session (started on first use), in a temporary folder, on
127.0.0.1 and a free port; each test gets a fresh database of its own, owned by an
ordinary role (not a superuser, as in a real deployment) that logs in with a
password. PostgreSQL refuses to run as root, so as root (CI, this machine) the
server runs as the `postgres` user the Debian package creates.

Without the server binaries the PostgreSQL variants fail with what to install when
CI=true, and are skipped elsewhere.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

PG_ROOT = Path("/usr/lib/postgresql")
ROLE = "avatar"
PASSWORD = "avatar-test-pw"
ADMIN = "avatar_admin"
ADMIN_PASSWORD = "avatar-admin-pw"
# Speed over durability: the cluster is thrown away after the session.
SERVER_OPTIONS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                  "-c max_connections=50")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """CI must run the PostgreSQL variants: there a missing server is a failure."""
    if _in_ci():
        pytest.fail(f"{reason}: tools/setup --test installs it (apt-get install postgresql "
                    "postgresql-client)", pytrace=False)
    pytest.skip(reason)


def server_bin() -> Path | None:
    """The newest installed server's bin folder (Debian keeps it off PATH)."""
    found = sorted(PG_ROOT.glob("*/bin/pg_ctl"), key=lambda p: _version(p.parent.parent.name))
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    bindir: Path
    base: Path
    port: int
    host: str = "127.0.0.1"
    runas: list[str] = field(default_factory=list)

    def url(self, database: str, user: str = ROLE, password: str = PASSWORD) -> str:
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres", **kwargs: Any) -> Any:
        """A psycopg connection as the superuser, in autocommit mode."""
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=ADMIN,
                               password=ADMIN_PASSWORD, dbname=database, autocommit=True,
                               connect_timeout=10, **kwargs)

    def query(self, database: str, sql: str, params: tuple[Any, ...] | None = None
              ) -> list[tuple[Any, ...]]:
        with self.connect(database) as conn:
            cursor = conn.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    def create_database(self) -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {ROLE} TEMPLATE template0 "
                         "ENCODING 'UTF8'")
        return name

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.runas, str(self.bindir / "pg_ctl"), "-D",
                               str(self.base / "cluster"), *args],
                              capture_output=True, text=True, timeout=120, check=False)


def _run(args: list[str], what: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip()}")


def start_server() -> PgServer:
    bindir = server_bin()
    if bindir is None or not (bindir / "initdb").exists():
        unavailable(f"no PostgreSQL server under {PG_ROOT}/*/bin (Debian package postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (the test extra has it)")
    # Not under pytest's tmp dir, which is private to this user.
    base = Path(tempfile.mkdtemp(prefix="avatar-pg-"))
    runas: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            unavailable("running as root and there is no 'postgres' user to run the "
                        "server as (Debian's postgresql package creates it)")
        shutil.chown(base, "postgres", "postgres")
        runas = ["runuser", "-u", "postgres", "--"]
    password_file = base / "password"
    password_file.write_text(ADMIN_PASSWORD + "\n")
    if runas:
        shutil.chown(password_file, "postgres", "postgres")
    try:
        _run([*runas, str(bindir / "initdb"), "-D", str(base / "cluster"), "-U", ADMIN,
              "--pwfile", str(password_file), "--auth=scram-sha-256", "--encoding=UTF8",
              "--locale=C.UTF-8", "--no-sync", "--no-instructions"], "initdb")
        server = PgServer(bindir, base, 0, runas=runas)
        for _ in range(3):  # the free port may be taken before the server binds it
            server.port = _free_port()
            options = (f"-c port={server.port} -c listen_addresses=127.0.0.1 "
                       f"-c unix_socket_directories={base} {SERVER_OPTIONS}")
            started = server.pg_ctl("-l", str(base / "server.log"), "-w", "-t", "60",
                                    "-o", options, "start")
            if started.returncode == 0:
                break
        else:
            log = (base / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr.strip()}\n{log}")
        with server.connect() as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        return server
    except BaseException:
        subprocess.run([*runas, str(bindir / "pg_ctl"), "-D", str(base / "cluster"), "-m",
                        "immediate", "stop"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)
        raise


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture
def postgres_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database of its own, owned by the `avatar` role."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both engines: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
