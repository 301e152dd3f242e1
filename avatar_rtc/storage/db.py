"""Open a peewee database from a single URL setting."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import peewee
from playhouse import db_url

DEFAULT_DATA_DIR = Path("data")
DEFAULT_DB_NAME = "avatar_rtc.db"

# WAL lets readers run beside the writer; synchronous=NORMAL in WAL mode keeps
# every commit across a process crash (only an OS crash can drop the last ones).
SQLITE_PRAGMAS: tuple[tuple[str, str | int], ...] = (
    ("journal_mode", "wal"),
    ("foreign_keys", 1),
    ("busy_timeout", 5000),
    ("synchronous", "normal"),
)


def default_url(data_dir: str | Path = DEFAULT_DATA_DIR) -> str:
    """The SQLite URL used when none is configured."""
    return f"sqlite:///{Path(data_dir).resolve() / DEFAULT_DB_NAME}"


def is_sqlite(db: peewee.Database) -> bool:
    return isinstance(db, peewee.SqliteDatabase)


def open_database(url: str) -> peewee.Database:
    """Build (but do not connect) the database ``url`` names.

    ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or anything else
    ``playhouse.db_url`` understands, e.g. ``postgresql://user:pw@host/db``.
    """
    scheme = urlparse(url).scheme
    db: peewee.Database
    if scheme.startswith("sqlite"):
        # IMMEDIATE: take the write lock at BEGIN, so two processes never
        # deadlock upgrading read locks (busy_timeout then just waits).
        db = db_url.connect(url, pragmas=list(SQLITE_PRAGMAS), lock_type="IMMEDIATE")
        _ensure_parent_dir(str(db.database))
    else:
        db = db_url.connect(url)
    return db


def _ensure_parent_dir(path: str) -> None:
    if path == ":memory:" or path.startswith("file:"):
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)


def execute(db: peewee.Database, sql: str, params: Sequence[object] = ()) -> None:
    db.execute_sql(sql, params)  # type: ignore[no-untyped-call]  # untyped in peewee's stubs


def fetch_one(
    db: peewee.Database, sql: str, params: Sequence[object] = ()
) -> tuple[Any, ...] | None:
    cursor = db.execute_sql(sql, params)  # type: ignore[no-untyped-call]
    row: tuple[Any, ...] | None = cursor.fetchone()
    return row
