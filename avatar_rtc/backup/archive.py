"""The archive format: its members, the manifest, hashed copies in, verified copies out.

    db/avatar_rtc.db        SQLite snapshot, or db/postgres.dump (pg_dump custom format)
    files/recordings/...    <data_dir>/recordings, as is
    files/profiles/...      <data_dir>/profiles, as is
    manifest.json           written last: format, version, when, the database (kind,
                            schema version, row counts) and every member's size and sha256
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from avatar_rtc.backup.errors import BackupError

FORMAT = "avatar-rtc-backup"
VERSION = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "db/avatar_rtc.db"
POSTGRES_MEMBER = "db/postgres.dump"
FILE_FOLDERS = ("recordings", "profiles")  # under data_dir, backed up as files/<name>/...
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Summary:
    archive: Path
    database: str  # "sqlite" or "postgresql"
    counts: dict[str, int] | None  # rows per table (None: an archive without them)
    files: int
    bytes: int  # of the archive

    def describe(self) -> str:
        counts = ("" if self.counts is None else
                  ", ".join(f"{n} {t.replace('_', ' ')}s" for t, n in self.counts.items()) + ", ")
        return (f"{self.archive}: {self.database} database, {counts}{self.files} files, "
                f"{self.bytes / 1e6:.1f} MB")


class HashingReader(io.RawIOBase):
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


def add_file(tar: tarfile.TarFile, source: Path, name: str) -> dict[str, Any] | None:
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
        reader = HashingReader(handle, info.size)
        tar.addfile(info, io.BufferedReader(reader, CHUNK))
    return {"path": name, "bytes": info.size, "sha256": reader.sha256.hexdigest()}


def walk(folder: Path) -> Iterator[Path]:
    """Regular files under ``folder``, sorted, symlinks not followed."""
    if not folder.is_dir():
        return
    for dirpath, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


def read_manifest(tar: tarfile.TarFile, archive: Path) -> dict[str, Any]:
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


def safe_member_name(name: object) -> str:
    if not isinstance(name, str):
        raise BackupError(f"bad member name in the manifest: {name!r}")
    path = PurePosixPath(name)
    allowed = name in (SQLITE_MEMBER, POSTGRES_MEMBER) or (
        len(path.parts) >= 3 and path.parts[0] == "files" and path.parts[1] in FILE_FOLDERS)
    if (not allowed or path.is_absolute() or ".." in path.parts or "\\" in name
            or str(path) != name):
        raise BackupError(f"refusing unsafe member name {name!r}")
    return name


def extract_verified(tar: tarfile.TarFile, manifest: dict[str, Any], staging: Path) -> None:
    """Every manifest entry, copied into ``staging`` and checked by size and sha256."""
    for entry in manifest["files"]:
        if not isinstance(entry, dict):
            raise BackupError("bad entry in the manifest")
        name = safe_member_name(entry.get("path"))
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
                while block := source.read(CHUNK):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
        except (tarfile.TarError, OSError) as exc:
            raise BackupError(f"{name}: cannot read it from the archive: {exc}") from None
        if size != entry.get("bytes") or digest.hexdigest() != entry.get("sha256"):
            raise BackupError(f"{name} is corrupt: its checksum does not match the manifest")
