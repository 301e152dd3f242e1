"""The two commands, backup() and restore(), built from the database and archive parts."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from avatar_rtc.backup import postgres
from avatar_rtc.backup.archive import (
    FILE_FOLDERS,
    FORMAT,
    MANIFEST,
    POSTGRES_MEMBER,
    SQLITE_MEMBER,
    VERSION,
    Summary,
    add_file,
    extract_verified,
    read_manifest,
    walk,
)
from avatar_rtc.backup.database import (
    database_url,
    kind_of,
    snapshot_sqlite,
    sqlite_path,
    verify_staged_sqlite,
)
from avatar_rtc.backup.errors import BackupError
from avatar_rtc.settings import Settings


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
    url = database_url(settings)
    kind = kind_of(url)
    root = settings.storage.root
    partial = target.with_name(target.name + ".partial")
    scratch = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.db")
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            database: dict[str, Any] = {"kind": kind}
            if kind == "sqlite":
                version, counts = snapshot_sqlite(sqlite_path(url), scratch)
                member = SQLITE_MEMBER
            else:
                version, counts = postgres.dump(url, scratch)
                member = POSTGRES_MEMBER
            database.update(schema_version=version, counts=counts, member=member)
            entry = add_file(tar, scratch, member)
            assert entry is not None
            files = [entry]
            # After the database: every file a row refers to is already on disk.
            for folder in FILE_FOLDERS:
                for path in walk(root / folder):
                    if path in (partial, scratch):
                        continue
                    name = f"files/{path.relative_to(root).as_posix()}"
                    found = add_file(tar, path, name)
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


def _check_target(root: Path, db_path: Path | None, force: bool) -> None:
    if force:
        return
    if root.is_dir() and any(root.iterdir()):
        raise BackupError(f"data dir {root} is not empty: restore into an empty one, or "
                          f"pass --force to replace its database and files")
    if db_path is not None and db_path.exists():
        raise BackupError(f"database {db_path} already exists: pass --force to replace it")


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
    url = database_url(settings)
    kind = kind_of(url)
    root = settings.storage.root
    try:
        tar = tarfile.open(archive, "r:")  # noqa: SIM115 - entered just below
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{archive} is not a backup archive: {exc}") from None
    with tar:
        manifest = read_manifest(tar, archive)
        database = manifest["database"]
        if database["kind"] != kind:
            raise BackupError(f"the backup holds a {database['kind']} database but the "
                              f"configured one is {kind} ({url.split('://')[0]}://...)")
        db_path = sqlite_path(url) if kind == "sqlite" else None
        _check_target(root, db_path, force)
        if kind == "postgresql":
            postgres.check_version(database)
            postgres.tool("pg_restore")
            if not force and postgres.has_tables(url):
                raise BackupError("the target PostgreSQL database is not empty: pass --force "
                                  "to replace its tables")
        root.mkdir(parents=True, exist_ok=True)
        staging = root / f".restore-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            extract_verified(tar, manifest, staging)
            if db_path is not None:
                verify_staged_sqlite(staging / SQLITE_MEMBER, database)
            if kind == "postgresql":
                postgres.restore(url, staging / POSTGRES_MEMBER, database, force=force)
            _move_into_place(staging, root, db_path, force)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    files = len(manifest["files"]) - 1
    counts = database.get("counts")
    return Summary(archive, kind, counts if isinstance(counts, dict) else None, files,
                   archive.stat().st_size)
