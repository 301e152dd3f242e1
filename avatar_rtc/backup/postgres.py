"""The PostgreSQL side of a backup: pg_dump from one exported snapshot, so the row
counts in the manifest are those of the dump however the server writes meanwhile,
pg_restore, and the checks around them (psycopg for the queries, the client tools
for the dump)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlparse

from avatar_rtc.backup.database import TABLES
from avatar_rtc.backup.errors import BackupError
from avatar_rtc.storage.migrations import LATEST_VERSION

_PG_TIMEOUT_S = 3600
# libpq URI parameters worth passing on; peewee's own (pool sizes, ...) are not libpq's.
_LIBPQ_PARAMS = {"host", "sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout",
                 "application_name", "options", "target_session_attrs"}


def postgres(url: str) -> tuple[str, dict[str, str]]:
    """(libpq URI without the password, environment with it): no secret on argv."""
    parts = urlparse(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    if parts.username:
        netloc = f"{quote(unquote(parts.username), safe='')}@{netloc}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k in _LIBPQ_PARAMS])
    uri = f"postgresql://{netloc}{parts.path}" + (f"?{query}" if query else "")
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    return uri, env


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} not found: install the PostgreSQL client tools "
                          f"(Debian: apt-get install postgresql-client)")
    return path


def run_pg(args: list[str], env: dict[str, str], what: str) -> str:
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True,
                              timeout=_PG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what} took longer than {_PG_TIMEOUT_S} s") from None
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()
        raise BackupError(f"{what} failed: {detail[-1] if detail else f'exit {done.returncode}'}")
    return done.stdout


@contextlib.contextmanager
def _connect(uri: str, env: dict[str, str]) -> Iterator[Any]:
    try:
        import psycopg
    except ImportError:
        raise BackupError("psycopg is not installed: pip install 'avatar-rtc[postgres]'"
                          ) from None
    try:
        # Autocommit: transactions only where we BEGIN one, with the isolation we ask.
        conn = psycopg.connect(uri, password=env.get("PGPASSWORD"), connect_timeout=30,
                               autocommit=True)
    except psycopg.Error as exc:
        raise BackupError(f"cannot connect to {uri}: {exc}") from None
    with conn:
        try:
            yield conn
        except psycopg.Error as exc:
            raise BackupError(f"{uri}: {exc}") from None


def _state(conn: Any) -> tuple[int, dict[str, int]]:
    """(schema version, rows per table) as the connection's transaction sees them."""
    import psycopg

    try:
        version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        counts = {t: int(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0])
                  for t in TABLES}
    except psycopg.errors.UndefinedTable as exc:
        raise BackupError(f"not an avatar_rtc database: {exc}") from None
    return int(version or 0), counts


def dump(url: str, target: Path) -> tuple[int, dict[str, int]]:
    """pg_dump of ``url`` into ``target``; returns (schema version, counts) of that dump."""
    uri, env = postgres(url)
    pg_dump = tool("pg_dump")
    with _connect(uri, env) as conn:
        # The transaction stays open while pg_dump reads the snapshot it exported.
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        version, counts = _state(conn)
        run_pg([pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                f"--snapshot={snapshot}", "--file", str(target), "--dbname", uri],
               env, "pg_dump")
        conn.execute("ROLLBACK")
    return version, counts


def has_tables(url: str) -> bool:
    uri, env = postgres(url)
    with _connect(uri, env) as conn:
        row = conn.execute("SELECT count(*) FROM information_schema.tables "
                           "WHERE table_schema = 'public'").fetchone()
    return int(row[0]) > 0


def check_version(database: dict[str, Any]) -> None:
    version = database.get("schema_version")
    if isinstance(version, int) and version > LATEST_VERSION:
        raise BackupError(f"the backup's schema is version {version}; this avatar-rtc knows "
                          f"up to {LATEST_VERSION}: upgrade it first")


def restore(url: str, dump_file: Path, database: dict[str, Any], *, force: bool) -> None:
    """pg_restore in one transaction, then the rows checked against the manifest."""
    uri, env = postgres(url)
    args = [tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
            "--single-transaction", "--dbname", uri]
    if force:
        args[1:1] = ["--clean", "--if-exists"]
    run_pg([*args, str(dump_file)], env, "pg_restore")
    expected = database.get("counts")
    if not isinstance(expected, dict):
        return  # an archive from before the counts were taken
    with _connect(uri, env) as conn:
        _, counts = _state(conn)
    if counts != expected:
        raise BackupError(f"the restored database holds {counts} rows, the manifest says "
                          f"{expected}")
