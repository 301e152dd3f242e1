"""Online backup and restore: the database and the audio files in one .tar archive.

The server may keep running (and writing) during a backup:
- SQLite: a snapshot taken with SQLite's backup API, in one step, from a separate
  read-only connection. In WAL mode that is one read transaction, so writers go on
  and the copy is exactly the database as of one commit.
- PostgreSQL: ``pg_dump --format=custom`` (one transaction, so also consistent).
- Files: ``recordings/`` and ``profiles/`` of data_dir, copied after the database,
  so every row's files are there (a recording still being written is copied as far
  as it goes; Ogg stays playable up to its last complete page).

Archive layout (uncompressed: Opus audio does not shrink, and members stream):

    db/avatar_rtc.db        SQLite snapshot, or db/postgres.dump (pg_dump custom format)
    files/recordings/...    <data_dir>/recordings, as is
    files/profiles/...      <data_dir>/profiles, as is
    manifest.json           written last: format, version, when, the database (kind,
                            schema version, row counts) and every member's size and sha256

Restore checks every member against the manifest in a staging folder before touching
anything, and refuses a non-empty data_dir (or an existing database) unless forced.
Stop the server before restoring.
"""

from avatar_rtc.backup.archive import MANIFEST, Summary
from avatar_rtc.backup.errors import BackupError
from avatar_rtc.backup.operations import backup, restore

__all__ = ["MANIFEST", "BackupError", "Summary", "backup", "restore"]
