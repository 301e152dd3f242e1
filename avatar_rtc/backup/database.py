"""The database side of a backup: where it is, SQLite snapshots and checks, and the
PostgreSQL client tools (pg_dump, pg_restore, psql)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlparse

from playhouse import db_url

from avatar_rtc.backup.errors import BackupError
from avatar_rtc.settings import Settings
from avatar_rtc.storage import default_url
from avatar_rtc.storage.migrations import LATEST_VERSION

TABLES = ("call", "turn", "voice_profile")
_PG_TIMEOUT_S = 3600
# libpq URI parameters worth passing on; peewee's own (pool sizes, ...) are not libpq's.
_LIBPQ_PARAMS = {"host", "sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout",
                 "application_name", "options", "target_session_attrs"}


def database_url(settings: Settings) -> str:
    return settings.storage.database_url or default_url(settings.storage.root)


def kind_of(url: str) -> str:
    scheme = urlparse(url).scheme
    if scheme.startswith("sqlite"):
        return "sqlite"
    if scheme.startswith("postgres"):
        return "postgresql"
    raise BackupError(f"cannot back up a {scheme!r} database: only SQLite and PostgreSQL")


def sqlite_path(url: str) -> Path:
    database = str(db_url.parse(url).get("database") or "")
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError(f"no SQLite database file in {url!r}")
    return Path(database).resolve()


def postgres(url: str) -> tuple[str, dict[str, str]]:
    """(libpq URI without the password, environment with it): no secret on argv."""
    parts = urlparse(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    if parts.username:
        netloc = f"{quote(parts.username, safe='')}@{netloc}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k in _LIBPQ_PARAMS])
    uri = f"postgresql://{netloc}{parts.path}" + (f"?{query}" if query else "")
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = parts.password
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


def snapshot_sqlite(source: Path, target: Path) -> tuple[int, dict[str, int]]:
    """A consistent copy of ``source`` at ``target``; returns (schema version, counts)."""
    if not source.is_file():
        raise BackupError(f"no database at {source}: check storage.data_dir / "
                          f"storage.database_url")
    try:
        reader = sqlite3.connect(f"file:{quote(str(source))}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {source}: {exc}") from None
    try:
        copy = sqlite3.connect(target)
        try:
            # One step (pages=-1): a single read transaction, so one consistent state.
            reader.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            return check_sqlite(copy, str(source))
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise BackupError(f"backing up {source} failed: {exc}") from None
    finally:
        reader.close()


def check_sqlite(db: sqlite3.Connection, name: str) -> tuple[int, dict[str, int]]:
    try:
        status = db.execute("PRAGMA quick_check").fetchone()[0]
        if status != "ok":
            raise BackupError(f"{name} is damaged: {status}")
        version = int(db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)
        counts = {t: int(db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0])
                  for t in TABLES}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{name} is not an avatar_rtc database: {exc}") from None
    return version, counts


def pg_has_tables(uri: str, env: dict[str, str]) -> bool:
    out = run_pg([tool("psql"), "--no-psqlrc", "--tuples-only", "--no-align", "--dbname", uri,
                   "--command", "SELECT count(*) FROM information_schema.tables "
                   "WHERE table_schema = 'public'"], env, "psql")
    return int(out.strip() or 0) > 0


def verify_staged_sqlite(path: Path, database: dict[str, Any]) -> None:
    """The restored SQLite file is sound, not newer than this code, and holds the rows
    the manifest counted."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        version, counts = check_sqlite(db, "the backed-up database")
    if version > LATEST_VERSION:
        raise BackupError(f"the backup's schema is version {version}; this avatar-rtc knows "
                          f"up to {LATEST_VERSION}: upgrade it first")
    if counts != database.get("counts"):
        raise BackupError(f"the backed-up database holds {counts} rows, the manifest says "
                          f"{database.get('counts')}")
