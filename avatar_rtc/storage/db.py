"""Open a peewee database from a single URL setting."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import peewee
from playhouse import db_url
from playhouse.shortcuts import ReconnectMixin

from .errors import StorageError

DEFAULT_DATA_DIR = Path("data")
DEFAULT_DB_NAME = "avatar_rtc.db"
POSTGRES_SCHEMES = ("postgres", "postgresql")

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


def is_postgres(db: peewee.Database) -> bool:
    return isinstance(db, peewee.PostgresqlDatabase)


def open_database(url: str) -> peewee.Database:
    """Build (but do not connect) the database ``url`` names.

    ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
    ``postgresql://user:password@host:port/dbname`` (psycopg 3, the ``postgres``
    extra), or anything else ``playhouse.db_url`` understands.
    """
    scheme = urlparse(url).scheme
    db: peewee.Database
    if scheme.startswith("sqlite"):
        # IMMEDIATE: take the write lock at BEGIN, so two processes never
        # deadlock upgrading read locks (busy_timeout then just waits).
        db = db_url.connect(url, pragmas=list(SQLITE_PRAGMAS), lock_type="IMMEDIATE")
        _ensure_parent_dir(str(db.database))
    elif scheme in POSTGRES_SCHEMES:
        db = _open_postgres(url)
    else:
        db = db_url.connect(url)
    return db


class ReconnectingPostgresqlDatabase(ReconnectMixin, peewee.PostgresqlDatabase):  # type: ignore[misc]
    """Opens a new connection when the server dropped the old one (a restart, an idle
    timeout, pg_terminate_backend). Only between transactions: inside one the error
    stands, so no write is lost or applied twice; every write here runs in one."""

    reconnect_errors = (
        (peewee.OperationalError, "terminating connection"),
        (peewee.OperationalError, "server closed the connection"),
        (peewee.OperationalError, "consuming input failed"),
        (peewee.OperationalError, "the connection is closed"),
        (peewee.InterfaceError, "the connection is closed"),
    )


def _open_postgres(url: str) -> peewee.PostgresqlDatabase:
    try:
        import psycopg  # noqa: F401  # only to say what is missing, before peewee does
    except ImportError:
        raise StorageError(
            "storage.database_url is a PostgreSQL URL but its driver is not installed: "
            "pip install 'avatar-rtc[postgres]' (psycopg 3)"
        ) from None
    # Percent-escapes in the user or password are decoded, as in any URL.
    params: dict[str, Any] = db_url.parse(url, unquote_password=True, unquote_user=True)
    database = params.pop("database", None)
    if not database:
        raise StorageError(f"no database name in {redacted(url)!r}: "
                           "postgresql://user:password@host:port/dbname")
    # psycopg 3 even where psycopg2 is installed too: the one this project tests.
    return ReconnectingPostgresqlDatabase(database, prefer_psycopg3=True, **params)


def redacted(url: str) -> str:
    """``url`` with its password, if any, as ***: fit for logs and errors."""
    parts = urlparse(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def snapshot(db: peewee.Database) -> Any:
    """A transaction whose reads all see one moment (a page and its total, say).

    SQLite's transactions already do; PostgreSQL's default, READ COMMITTED, gives
    each statement its own snapshot, so ask for REPEATABLE READ there.
    """
    if is_postgres(db):
        return db.atomic(isolation_level="REPEATABLE READ")
    return db.atomic()


def check_server(db: peewee.Database) -> None:
    """Refuse a server the schema cannot live on, with what to do about it."""
    if not is_postgres(db):
        return
    row = fetch_one(db, "SHOW server_encoding")
    # Bytes when it is not UTF-8: psycopg cannot decode text from such a database.
    found = None if row is None else row[0]
    if isinstance(found, bytes):
        found = found.decode("ascii", "replace")
    if found != "UTF8":
        raise StorageError(
            f"the PostgreSQL database's encoding is {found}, but transcripts are Unicode: "
            "create it with ENCODING 'UTF8' (e.g. createdb -E UTF8 -T template0 ...)"
        )


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


def fetch_all(
    db: peewee.Database, sql: str, params: Sequence[object] = ()
) -> list[tuple[Any, ...]]:
    cursor = db.execute_sql(sql, params)  # type: ignore[no-untyped-call]
    rows: list[tuple[Any, ...]] = cursor.fetchall()
    return rows
