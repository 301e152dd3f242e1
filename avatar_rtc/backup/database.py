"""The database side of a backup: where it is, SQLite snapshots and checks
(PostgreSQL's side is in backup.postgres)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from playhouse import db_url

from avatar_rtc.backup.errors import BackupError
from avatar_rtc.settings import Settings
from avatar_rtc.storage import default_url
from avatar_rtc.storage.migrations import LATEST_VERSION

TABLES = ("call", "turn", "voice_profile")


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
