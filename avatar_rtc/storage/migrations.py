"""Versioned schema migrations, applied in order at startup.

Each migration runs in its own transaction together with the row recording
it, so a crash mid-way leaves the previous version intact. Re-running is a
no-op. Append new migrations; never edit or reorder applied ones.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee
import playhouse.migrate

from .codec import time_to_db
from .errors import SchemaTooNewError
from .models import TABLES, SchemaVersion, Turn
from .records import utc_now
from .search import ensure_fts

Migration = Callable[[peewee.Database], None]


def _v1_initial(db: peewee.Database) -> None:
    db.create_tables(list(TABLES), safe=True)


def _v2_typed_turns_and_tool_calls(db: peewee.Database) -> None:
    # A database made by v1 of this code lacks the columns; one made since has them.
    have = {column.name for column in db.get_columns(Turn._meta.table_name)}
    migrator = playhouse.migrate.SchemaMigrator.from_database(db)
    operations = [migrator.add_column(Turn._meta.table_name, name, getattr(Turn, name))
                  for name in ("typed", "tool_calls") if name not in have]
    if operations:
        playhouse.migrate.migrate(*operations)


MIGRATIONS: tuple[Migration, ...] = (_v1_initial, _v2_typed_turns_and_tool_calls)
LATEST_VERSION = len(MIGRATIONS)


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
        db.create_tables([SchemaVersion], safe=True)
    for version, migration in enumerate(migrations, start=1):
        # Checked inside the write transaction: another process may have
        # migrated while we waited for the lock.
        with db.atomic():
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
