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

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import parse_qsl, quote, urlencode, urlparse

from playhouse import db_url

from avatar_rtc.errors import AvatarError
from avatar_rtc.settings import Settings
from avatar_rtc.storage import default_url
from avatar_rtc.storage.migrations import LATEST_VERSION

FORMAT = "avatar-rtc-backup"
VERSION = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "db/avatar_rtc.db"
POSTGRES_MEMBER = "db/postgres.dump"
FILE_FOLDERS = ("recordings", "profiles")  # under data_dir, backed up as files/<name>/...
TABLES = ("call", "turn", "voice_profile")
_CHUNK = 1024 * 1024
_PG_TIMEOUT_S = 3600
# libpq URI parameters worth passing on; peewee's own (pool sizes, ...) are not libpq's.
_LIBPQ_PARAMS = {"host", "sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout",
                 "application_name", "options", "target_session_attrs"}


class BackupError(AvatarError):
    """A backup or restore that cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Summary:
    archive: Path
    database: str  # "sqlite" or "postgresql"
    counts: dict[str, int] | None  # rows per table (None: not counted, PostgreSQL)
    files: int
    bytes: int  # of the archive

    def describe(self) -> str:
        counts = ("" if self.counts is None else
                  ", ".join(f"{n} {t.replace('_', ' ')}s" for t, n in self.counts.items()) + ", ")
        return (f"{self.archive}: {self.database} database, {counts}{self.files} files, "
                f"{self.bytes / 1e6:.1f} MB")


# --- where things are -----------------------------------------------------------------


def _data_dir(settings: Settings) -> Path:
    return Path(settings.storage.data_dir).resolve()


def _database_url(settings: Settings) -> str:
    return settings.storage.database_url or default_url(_data_dir(settings))


def _kind(url: str) -> str:
    scheme = urlparse(url).scheme
    if scheme.startswith("sqlite"):
        return "sqlite"
    if scheme.startswith("postgres"):
        return "postgresql"
    raise BackupError(f"cannot back up a {scheme!r} database: only SQLite and PostgreSQL")


def _sqlite_path(url: str) -> Path:
    database = str(db_url.parse(url).get("database") or "")
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError(f"no SQLite database file in {url!r}")
    return Path(database).resolve()


def _postgres(url: str) -> tuple[str, dict[str, str]]:
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


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} not found: install the PostgreSQL client tools "
                          f"(Debian: apt-get install postgresql-client)")
    return path


def _run_pg(args: list[str], env: dict[str, str], what: str) -> str:
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True,
                              timeout=_PG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what} took longer than {_PG_TIMEOUT_S} s") from None
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()
        raise BackupError(f"{what} failed: {detail[-1] if detail else f'exit {done.returncode}'}")
    return done.stdout


# --- hashing copies -------------------------------------------------------------------


class _HashingReader(io.RawIOBase):
    """Reads at most ``limit`` bytes of ``source``, hashing them on the way."""

    def __init__(self, source: IO[bytes], limit: int) -> None:
        super().__init__()
        self._source = source
        self._left = limit
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._source.read(min(len(view), self._left))
        self._left -= len(data)
        self.sha256.update(data)
        view[: len(data)] = data
        return len(data)


def _add_file(tar: tarfile.TarFile, source: Path, name: str) -> dict[str, Any] | None:
    """Adds ``source`` as ``name``; returns its manifest entry (None if it vanished)."""
    try:
        handle = open(source, "rb")  # noqa: SIM115 - closed below, after the tar reads it
    except FileNotFoundError:
        return None  # deleted meanwhile (retention, the admin API): not part of the backup
    with handle:
        stat = os.fstat(handle.fileno())
        info = tarfile.TarInfo(name)
        # The size as of now: a file still growing is copied as far as it went.
        info.size = stat.st_size
        info.mtime = int(stat.st_mtime)
        info.mode = 0o644
        reader = _HashingReader(handle, info.size)
        tar.addfile(info, io.BufferedReader(reader, _CHUNK))
    return {"path": name, "bytes": info.size, "sha256": reader.sha256.hexdigest()}


def _walk(folder: Path) -> Iterator[Path]:
    """Regular files under ``folder``, sorted, symlinks not followed."""
    if not folder.is_dir():
        return
    for dirpath, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


# --- backup ---------------------------------------------------------------------------


def _snapshot_sqlite(source: Path, target: Path) -> tuple[int, dict[str, int]]:
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
            return _check_sqlite(copy, str(source))
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise BackupError(f"backing up {source} failed: {exc}") from None
    finally:
        reader.close()


def _check_sqlite(db: sqlite3.Connection, name: str) -> tuple[int, dict[str, int]]:
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


def _output_path(output: Path) -> Path:
    if output.is_dir():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return output / f"avatar-rtc-backup-{stamp}.tar"
    if output.exists():
        raise BackupError(f"{output} already exists: choose a new file name")
    if not output.parent.is_dir():
        raise BackupError(f"folder {output.parent} does not exist")
    return output


def backup(settings: Settings, output: Path) -> Summary:
    """Writes a backup archive to ``output`` (a .tar file, or a folder to put one in)."""
    target = _output_path(output)
    url = _database_url(settings)
    kind = _kind(url)
    root = _data_dir(settings)
    partial = target.with_name(target.name + ".partial")
    scratch = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.db")
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            database: dict[str, Any] = {"kind": kind}
            if kind == "sqlite":
                version, counts = _snapshot_sqlite(_sqlite_path(url), scratch)
                database.update(schema_version=version, counts=counts, member=SQLITE_MEMBER)
                member = SQLITE_MEMBER
            else:
                uri, env = _postgres(url)
                _run_pg([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                         "--file", str(scratch), "--dbname", uri], env, "pg_dump")
                database.update(schema_version=None, counts=None, member=POSTGRES_MEMBER)
                member = POSTGRES_MEMBER
            entry = _add_file(tar, scratch, member)
            assert entry is not None
            files = [entry]
            # After the database: every file a row refers to is already on disk.
            for folder in FILE_FOLDERS:
                for path in _walk(root / folder):
                    if path in (partial, scratch):
                        continue
                    name = f"files/{path.relative_to(root).as_posix()}"
                    found = _add_file(tar, path, name)
                    if found is not None:
                        files.append(found)
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "database": database,
                "files": files,
            }
            body = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(body)
            info.mtime = int(datetime.now(UTC).timestamp())
            tar.addfile(info, io.BytesIO(body))
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        scratch.unlink(missing_ok=True)
    return Summary(target, kind, database["counts"], len(files) - 1, target.stat().st_size)


# --- restore --------------------------------------------------------------------------


def _read_manifest(tar: tarfile.TarFile, archive: Path) -> dict[str, Any]:
    try:
        member = tar.getmember(MANIFEST)
        handle = tar.extractfile(member)
        if handle is None:
            raise KeyError(MANIFEST)
        manifest = json.loads(handle.read())
    except KeyError:
        raise BackupError(f"{archive} has no {MANIFEST}: not an avatar-rtc backup") from None
    except (ValueError, tarfile.TarError, OSError) as exc:
        raise BackupError(f"{archive}: {MANIFEST} is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive} is not an avatar-rtc backup")
    if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
        raise BackupError(f"{archive} is backup format version {manifest.get('version')}; "
                          f"this avatar-rtc reads up to version {VERSION}")
    database, files = manifest.get("database"), manifest.get("files")
    if (not isinstance(database, dict) or database.get("kind") not in ("sqlite", "postgresql")
            or not isinstance(files, list) or not files):
        raise BackupError(f"{archive}: {MANIFEST} is incomplete")
    return manifest


def _safe_member_name(name: object) -> str:
    if not isinstance(name, str):
        raise BackupError(f"bad member name in the manifest: {name!r}")
    path = PurePosixPath(name)
    allowed = name in (SQLITE_MEMBER, POSTGRES_MEMBER) or (
        len(path.parts) >= 3 and path.parts[0] == "files" and path.parts[1] in FILE_FOLDERS)
    if (not allowed or path.is_absolute() or ".." in path.parts or "\\" in name
            or str(path) != name):
        raise BackupError(f"refusing unsafe member name {name!r}")
    return name


def _extract_verified(tar: tarfile.TarFile, manifest: dict[str, Any], staging: Path) -> None:
    """Every manifest entry, copied into ``staging`` and checked by size and sha256."""
    for entry in manifest["files"]:
        if not isinstance(entry, dict):
            raise BackupError("bad entry in the manifest")
        name = _safe_member_name(entry.get("path"))
        try:
            member = tar.getmember(name)
        except KeyError:
            raise BackupError(f"{name} is listed in the manifest but missing from the "
                              f"archive") from None
        source = tar.extractfile(member) if member.isfile() else None
        if source is None:
            raise BackupError(f"{name} is not a regular file in the archive")
        destination = staging / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        try:
            with source, open(destination, "wb") as out:
                while block := source.read(_CHUNK):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
        except (tarfile.TarError, OSError) as exc:
            raise BackupError(f"{name}: cannot read it from the archive: {exc}") from None
        if size != entry.get("bytes") or digest.hexdigest() != entry.get("sha256"):
            raise BackupError(f"{name} is corrupt: its checksum does not match the manifest")


def _check_target(root: Path, db_path: Path | None, force: bool) -> None:
    if force:
        return
    if root.is_dir() and any(root.iterdir()):
        raise BackupError(f"data dir {root} is not empty: restore into an empty one, or "
                          f"pass --force to replace its database and files")
    if db_path is not None and db_path.exists():
        raise BackupError(f"database {db_path} already exists: pass --force to replace it")


def _pg_has_tables(uri: str, env: dict[str, str]) -> bool:
    out = _run_pg([_tool("psql"), "--no-psqlrc", "--tuples-only", "--no-align", "--dbname", uri,
                   "--command", "SELECT count(*) FROM information_schema.tables "
                   "WHERE table_schema = 'public'"], env, "psql")
    return int(out.strip() or 0) > 0


def _move_into_place(staging: Path, root: Path, db_path: Path | None, force: bool) -> None:
    if db_path is not None:
        if force:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staging / SQLITE_MEMBER, db_path)
    for folder in FILE_FOLDERS:
        if force and (root / folder).exists():
            shutil.rmtree(root / folder)
        staged = staging / "files" / folder
        if staged.is_dir():
            shutil.move(staged, root / folder)


def restore(settings: Settings, archive: Path, *, force: bool = False) -> Summary:
    """Restores ``archive`` into the configured data_dir and database."""
    if not archive.is_file():
        raise BackupError(f"no backup archive at {archive}")
    url = _database_url(settings)
    kind = _kind(url)
    root = _data_dir(settings)
    try:
        tar = tarfile.open(archive, "r:")  # noqa: SIM115 - entered just below
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{archive} is not a backup archive: {exc}") from None
    with tar:
        manifest = _read_manifest(tar, archive)
        database = manifest["database"]
        if database["kind"] != kind:
            raise BackupError(f"the backup holds a {database['kind']} database but the "
                              f"configured one is {kind} ({url.split('://')[0]}://...)")
        db_path = _sqlite_path(url) if kind == "sqlite" else None
        _check_target(root, db_path, force)
        pg: tuple[str, dict[str, str]] | None = None
        if kind == "postgresql":
            pg = _postgres(url)
            _tool("pg_restore")
            if not force and _pg_has_tables(*pg):
                raise BackupError("the target PostgreSQL database is not empty: pass --force "
                                  "to replace its tables")
        root.mkdir(parents=True, exist_ok=True)
        staging = root / f".restore-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            _extract_verified(tar, manifest, staging)
            if db_path is not None:
                _verify_staged_sqlite(staging / SQLITE_MEMBER, database)
            if pg is not None:
                uri, env = pg
                args = [_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
                        "--single-transaction", "--dbname", uri]
                if force:
                    args[1:1] = ["--clean", "--if-exists"]
                _run_pg([*args, str(staging / POSTGRES_MEMBER)], env, "pg_restore")
            _move_into_place(staging, root, db_path, force)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    files = len(manifest["files"]) - 1
    counts = database.get("counts")
    return Summary(archive, kind, counts if isinstance(counts, dict) else None, files,
                   archive.stat().st_size)


def _verify_staged_sqlite(path: Path, database: dict[str, Any]) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        version, counts = _check_sqlite(db, "the backed-up database")
    if version > LATEST_VERSION:
        raise BackupError(f"the backup's schema is version {version}; this avatar-rtc knows "
                          f"up to {LATEST_VERSION}: upgrade it first")
    if counts != database.get("counts"):
        raise BackupError(f"the backed-up database holds {counts} rows, the manifest says "
                          f"{database.get('counts')}")
