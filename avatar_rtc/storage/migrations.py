"""Versioned schema migrations, applied in order at startup.

Each migration runs in its own transaction together with the row recording
it, so a crash mid-way leaves the previous version intact (PostgreSQL's DDL is
transactional too). Re-running is a no-op. Append new migrations; never edit or
reorder applied ones. A migration sees either engine: the schema is the same on
both, but for the full-text index each builds its own way.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee
import playhouse.migrate

from . import search_pg
from .codec import time_to_db
from .db import execute, is_postgres
from .errors import SchemaTooNewError
from .models import TABLES, SchemaVersion, Turn
from .records import utc_now
from .search import ensure_fts

Migration = Callable[[peewee.Database], None]


def _v1_initial(db: peewee.Database) -> None:
    db.create_tables(list(TABLES), safe=True)


def _v2_postgres_search(db: peewee.Database) -> None:
    # SQLite's FTS5 index depends on how SQLite was built, so ensure_fts keeps it at
    # every startup instead; PostgreSQL always has tsvector.
    if is_postgres(db):
        search_pg.create_index(db)


def _v3_typed_turns_and_tool_calls(db: peewee.Database) -> None:
    # A database made before v3 lacks the columns; one made since has them (v1 creates
    # the tables from the current models).
    have = {column.name for column in db.get_columns(Turn._meta.table_name)}
    migrator = playhouse.migrate.SchemaMigrator.from_database(db)
    operations = [migrator.add_column(Turn._meta.table_name, name, getattr(Turn, name))
                  for name in ("typed", "tool_calls") if name not in have]
    if operations:
        playhouse.migrate.migrate(*operations)


def _v4_turn_language(db: peewee.Database) -> None:
    # A database made at version 1 by this code's models has the column already.
    if "language" not in {c.name for c in db.get_columns("turn")}:
        execute(db, "ALTER TABLE turn ADD COLUMN language VARCHAR(16) NOT NULL DEFAULT ''")


MIGRATIONS: tuple[Migration, ...] = (_v1_initial, _v2_postgres_search,
                                     _v3_typed_turns_and_tool_calls, _v4_turn_language)
LATEST_VERSION = len(MIGRATIONS)
# Any fixed number: PostgreSQL's advisory lock that serializes migrating servers.
_PG_MIGRATION_LOCK = 0x61766174


def _lock(db: peewee.Database) -> None:
    """Serialize migrations across processes, until this transaction ends.

    SQLite's IMMEDIATE transactions already do; on PostgreSQL two servers starting
    together would both find version 0 and both migrate.
    """
    if is_postgres(db):
        execute(db, "SELECT pg_advisory_xact_lock(%s)", (_PG_MIGRATION_LOCK,))


def current_version(db: peewee.Database) -> int:
    if not db.table_exists(SchemaVersion._meta.table_name):
        return 0
    version = SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar()
    return int(version or 0)


def migrate(db: peewee.Database, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Bring the schema up to date; returns the resulting version.

    Must run on the thread the models are bound to (see models.bind_thread).
    Raises SchemaTooNewError if a newer release already migrated the database.
    """
    with db.atomic():
        _lock(db)
        db.create_tables([SchemaVersion], safe=True)
    for version, migration in enumerate(migrations, start=1):
        # Checked inside the write transaction: another process may have
        # migrated while we waited for the lock.
        with db.atomic():
            _lock(db)
            found = current_version(db)
            if found > len(migrations):
                raise SchemaTooNewError(found, len(migrations))
            if found >= version:
                continue
            migration(db)
            SchemaVersion.insert(version=version, applied_at=time_to_db(utc_now())).execute()
    found = current_version(db)
    if found > len(migrations):
        raise SchemaTooNewError(found, len(migrations))
    ensure_fts(db)
    return found
