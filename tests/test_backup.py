"""Online backup and restore with real files and a real database: a SQLite file, or a
database on a real PostgreSQL server (tests/postgres.py) backed up with pg_dump and
restored with pg_restore."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import sqlite3
import subprocess
import sys
import tarfile
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from avatar_rtc.backup import MANIFEST, BackupError, backup, restore
from avatar_rtc.cli import main
from avatar_rtc.recordings import relative_paths
from avatar_rtc.settings import Settings
from avatar_rtc.storage import (
    CallRecord,
    Store,
    TurnRecord,
    VoiceProfileRecord,
    default_url,
    new_id,
    utc_now,
)
from tests.postgres import PgServer

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent


def settings_for(data_dir: Path) -> Settings:
    settings = Settings()
    settings.storage.data_dir = str(data_dir)
    return settings


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of everything in recordings/ and profiles/."""
    return {p.relative_to(root).as_posix(): sha256(p)
            for folder in ("recordings", "profiles") if (root / folder).is_dir()
            for p in sorted((root / folder).rglob("*")) if p.is_file()}


async def add_call(store: Store, root: Path, turns: int, audio: bytes) -> str:
    call_id = new_id()
    user, agent = relative_paths(call_id)
    started = utc_now()
    await store.create_call(CallRecord(id=call_id, started_at=started, user_audio_path=user,
                                       agent_audio_path=agent, recording_bytes=2 * len(audio)))
    for index in range(turns):
        await store.save_turn(TurnRecord(
            id=new_id(), call_id=call_id, index=index, started_at=started,
            user_text=f"question {index} about the weather", reply_text=f"answer {index}",
            user_audio_start_ms=index * 1000, user_audio_end_ms=index * 1000 + 500,
        ))
    (root / user).parent.mkdir(parents=True, exist_ok=True)
    (root / user).write_bytes(audio)
    (root / agent).write_bytes(audio[::-1])
    return call_id


async def fill(store: Store, root: Path) -> None:
    """Calls, turns, recordings and a voice profile."""
    for n in range(3):
        await add_call(store, root, turns=4, audio=bytes(range(256)) * (50 + n))
    profile = VoiceProfileRecord(id=new_id(), name="Ada", backend="piper", created_at=utc_now(),
                                 updated_at=utc_now(), reference_text="hello there",
                                 reference_audio_path="profiles/ada/reference.wav")
    await store.create_profile(profile)
    (root / "profiles" / "ada").mkdir(parents=True)
    (root / "profiles" / "ada" / "reference.wav").write_bytes(b"RIFF" + bytes(5000))


@pytest.fixture
async def populated(tmp_path: Path) -> AsyncIterator[tuple[Store, Path]]:
    """A data dir with calls, turns, recordings and a voice profile, its store open."""
    root = tmp_path / "data"
    store = await Store.open(default_url(root))
    await fill(store, root)
    yield store, root
    await store.close()


class LiveWrites:
    """A live server's writes during a backup: turns keep coming (``written``, in commit
    order) and one recording keeps growing on disk."""

    def __init__(self, store: Store, call_id: str, growing: Path) -> None:
        self.store = store
        self.call_id = call_id
        self.growing = growing
        self.written: list[str] = []
        self._stop = asyncio.Event()
        self._stop_growing = threading.Event()

    async def _write(self) -> None:
        index = 0
        while not self._stop.is_set():
            turn_id = new_id()
            await self.store.save_turn(TurnRecord(id=turn_id, call_id=self.call_id,
                                                  index=index, started_at=utc_now(),
                                                  user_text=f"live {index}"))
            self.written.append(turn_id)
            index += 1
            await asyncio.sleep(0.001)

    def _grow(self) -> None:
        with open(self.growing, "ab") as out:
            while not self._stop_growing.is_set():
                out.write(b"page" * 256)
                out.flush()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        writer = asyncio.create_task(self._write())
        grower = threading.Thread(target=self._grow)
        grower.start()
        try:
            await asyncio.sleep(0.2)
            yield
            await asyncio.sleep(0.2)  # the server goes on after the backup
        finally:
            self._stop.set()
            self._stop_growing.set()
            await writer
            grower.join()


async def dump(store: Store) -> tuple[list[CallRecord], list[TurnRecord]]:
    calls, _ = await store.list_calls(limit=10_000)
    turns = [t for c in calls for t in await store.turns(c.id)]
    return calls, turns


def fresh_database(request: pytest.FixtureRequest, like: str, folder: Path) -> Settings:
    """Settings for an empty data dir and an empty database of the same engine as ``like``."""
    settings = settings_for(folder)
    if like.startswith("postgres"):
        server: PgServer = request.getfixturevalue("pg_server")
        name = server.create_database()
        request.addfinalizer(lambda: server.drop_database(name))
        settings.storage.database_url = server.url(name)
    return settings


async def test_backup_during_live_writes_restores_everything_into_a_fresh_database(
    database_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    settings = settings_for(root)
    settings.storage.database_url = database_url
    store = await Store.open(database_url)
    try:
        await fill(store, root)
        before_calls, before_turns = await dump(store)
        original_files = files_under(root)
        live_call = await add_call(store, root, turns=0, audio=b"OggS" * 100)
        growing = root / relative_paths(live_call)[0]
        live = LiveWrites(store, live_call, growing)
        async with live.running():
            committed_before = len(live.written)
            archive = tmp_path / "backup.tar"
            summary = await asyncio.to_thread(backup, settings, archive)
            committed_after = len(live.written)
    finally:
        await store.close()
    written = live.written
    assert committed_after > committed_before > 0, "the writes did not overlap the backup"
    assert summary.archive == archive and archive.is_file()
    leftovers = await asyncio.to_thread(lambda: [*tmp_path.glob("*.partial"),
                                                 *tmp_path.glob(".*.db")])
    assert not leftovers

    target = tmp_path / "restored"
    target_settings = fresh_database(request, database_url, target)
    restored = restore(target_settings, archive)
    assert restored.counts == summary.counts

    again = await Store.open(target_settings.storage.database_url or default_url(target))
    try:
        calls, turns = await dump(again)
        live_turns = await again.turns(live_call)
        profiles, _ = await again.list_profiles()
        found = await again.search_turns("weather")
        stats = await again.stats()
    finally:
        await again.close()
    # Everything committed before the backup is there, exactly; of the live writes, a
    # prefix (one consistent moment), no more than had been written when it finished.
    assert [c for c in calls if c.id != live_call] == before_calls
    assert [t for t in turns if t.call_id != live_call] == before_turns
    live_ids = [t.id for t in live_turns]
    assert committed_before <= len(live_ids) <= committed_after
    assert live_ids == written[: len(live_ids)]
    assert summary.counts == {"call": 4, "turn": len(before_turns) + len(live_ids),
                              "voice_profile": 1}
    assert [p.name for p in profiles] == ["Ada"]
    assert len(found) == len(before_turns)  # the search index came along
    assert stats["turns"] == summary.counts["turn"]
    if database_url.startswith("sqlite"):
        with sqlite3.connect(target / "avatar_rtc.db") as db:
            assert db.execute("PRAGMA foreign_key_check").fetchall() == []
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    # The files: the finished ones identical, the growing one as far as it had got.
    restored_files = files_under(target)
    for name, digest in original_files.items():
        assert restored_files[name] == digest, name
    copied = (target / relative_paths(live_call)[0]).read_bytes()
    assert len(copied) >= 400 and growing.read_bytes().startswith(copied)
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    listed = {e["path"]: e for e in manifest["files"]}
    assert manifest["database"]["schema_version"] == again.schema_version
    for name in restored_files:
        entry = listed[f"files/{name}"]
        assert entry["sha256"] == sha256(target / name)
        assert entry["bytes"] == (target / name).stat().st_size


def rewrite_member(archive: Path, name: str, data: bytes, *, keep_manifest: bool = True) -> None:
    """Replaces one member's bytes, leaving the manifest (and its checksums) as they were."""
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore
    with tarfile.open(archive, "w") as tar:
        for member, body in members:
            if member.name == name:
                body = data
            if member.name == MANIFEST and not keep_manifest:
                continue
            member.size = len(body)
            tar.addfile(member, io.BytesIO(body))


@pytest.fixture
def archive(populated: tuple[Store, Path], tmp_path: Path) -> Path:
    _, root = populated
    return backup(settings_for(root), tmp_path / "backup.tar").archive


def test_a_missing_archive_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match=r"no backup archive at .*nope\.tar"):
        restore(settings_for(tmp_path / "target"), tmp_path / "nope.tar")


def test_a_file_that_is_not_a_backup_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar archive" * 100)
    with pytest.raises(BackupError, match="is not a backup archive"):
        restore(settings_for(tmp_path / "target"), junk)
    bare = tmp_path / "bare.tar"
    with tarfile.open(bare, "w") as tar:
        tar.addfile(tarfile.TarInfo("hello.txt"), io.BytesIO(b""))
    with pytest.raises(BackupError, match=r"has no manifest\.json"):
        restore(settings_for(tmp_path / "target"), bare)


def test_a_corrupt_member_is_caught_before_anything_is_restored(
    archive: Path, tmp_path: Path
) -> None:
    with tarfile.open(archive) as tar:
        name = next(m.name for m in tar.getmembers() if m.name.startswith("files/recordings/"))
        body = tar.extractfile(name).read()  # type: ignore[union-attr]
    flipped = bytes([body[0] ^ 0xFF]) + body[1:]
    rewrite_member(archive, name, flipped)
    target = tmp_path / "target"
    with pytest.raises(BackupError, match=f"{name} is corrupt: its checksum"):
        restore(settings_for(target), archive)
    assert list(target.iterdir()) == []  # nothing half-restored, no staging left


def test_a_truncated_archive_is_refused(archive: Path, tmp_path: Path) -> None:
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(BackupError):
        restore(settings_for(tmp_path / "target"), archive)
    assert not (tmp_path / "target" / "avatar_rtc.db").exists()


def test_unsafe_member_names_are_refused(archive: Path, tmp_path: Path) -> None:
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    manifest["files"].append({"path": "files/recordings/../../evil", "bytes": 1, "sha256": "x"})
    rewrite_member(archive, MANIFEST, json.dumps(manifest).encode())
    with pytest.raises(BackupError, match="unsafe member name"):
        restore(settings_for(tmp_path / "target"), archive)
    assert not (tmp_path / "evil").exists()


def test_a_non_empty_target_is_refused_unless_forced(
    populated: tuple[Store, Path], archive: Path, tmp_path: Path
) -> None:
    _, root = populated
    target = tmp_path / "target"
    (target / "recordings" / "stale").mkdir(parents=True)
    (target / "recordings" / "stale" / "user.ogg").write_bytes(b"old")
    with pytest.raises(BackupError, match=r"is not empty.*--force"):
        restore(settings_for(target), archive)
    assert (target / "recordings" / "stale" / "user.ogg").read_bytes() == b"old"
    restore(settings_for(target), archive, force=True)
    assert not (target / "recordings" / "stale").exists()
    assert files_under(target) == files_under(root)


async def test_restore_over_a_used_database_with_force_replaces_it(
    archive: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    other = await Store.open(default_url(target))
    stray = CallRecord(id=new_id(), started_at=utc_now() - timedelta(days=1))
    await other.create_call(stray)
    await other.close()
    restore(settings_for(target), archive, force=True)
    store = await Store.open(default_url(target))
    try:
        calls, total = await store.list_calls()
        assert total == 3 and stray.id not in {c.id for c in calls}
    finally:
        await store.close()


def test_a_database_from_a_newer_release_is_refused(archive: Path, tmp_path: Path) -> None:
    with tarfile.open(archive) as tar:
        db_bytes = tar.extractfile("db/avatar_rtc.db").read()  # type: ignore[union-attr]
        manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    scratch = tmp_path / "newer.db"
    scratch.write_bytes(db_bytes)
    with sqlite3.connect(scratch) as db:
        db.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 'x')")
    db_bytes = scratch.read_bytes()
    entry = next(e for e in manifest["files"] if e["path"] == "db/avatar_rtc.db")
    entry.update(bytes=len(db_bytes), sha256=hashlib.sha256(db_bytes).hexdigest())
    rewrite_member(archive, "db/avatar_rtc.db", db_bytes)
    rewrite_member(archive, MANIFEST, json.dumps(manifest).encode())
    with pytest.raises(BackupError, match="schema is version 99"):
        restore(settings_for(tmp_path / "target"), archive)


def test_backup_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackupError, match="no database at"):
        backup(settings_for(tmp_path / "empty"), tmp_path / "x.tar")
    existing = tmp_path / "taken.tar"
    existing.write_bytes(b"keep")
    with pytest.raises(BackupError, match="already exists"):
        backup(settings_for(tmp_path), existing)
    assert existing.read_bytes() == b"keep"
    with pytest.raises(BackupError, match="does not exist"):
        backup(settings_for(tmp_path), tmp_path / "no" / "such" / "x.tar")
    # PostgreSQL without its client tools installed.
    settings = settings_for(tmp_path)
    settings.storage.database_url = "postgresql://avatar:secret@127.0.0.1:5999/avatar"
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackupError, match="pg_dump not found: install the PostgreSQL client"):
        backup(settings, tmp_path / "pg.tar")
    assert not (tmp_path / "pg.tar").exists() and not (tmp_path / "pg.tar.partial").exists()


def test_a_backup_into_a_folder_gets_a_dated_name(
    populated: tuple[Store, Path], tmp_path: Path
) -> None:
    _, root = populated
    folder = tmp_path / "backups"
    folder.mkdir()
    summary = backup(settings_for(root), folder)
    assert summary.archive.parent == folder
    assert summary.archive.name.startswith("avatar-rtc-backup-")
    assert summary.archive.suffix == ".tar"


def test_the_cli_backs_up_and_restores_and_fails_with_a_message(
    populated: tuple[Store, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, root = populated
    archive = tmp_path / "cli.tar"
    assert main(["backup", str(archive), "--storage-data-dir", str(root)]) == 0
    assert "backup written" in capsys.readouterr().out
    target = tmp_path / "cli-target"
    assert main(["restore", str(archive), "--storage-data-dir", str(target)]) == 0
    assert "restored" in capsys.readouterr().out
    assert files_under(target) == files_under(root)
    assert main(["restore", str(archive), "--storage-data-dir", str(target)]) == 1
    assert "is not empty" in capsys.readouterr().err
    # As a process: a non-zero exit and the reason on stderr.
    done = subprocess.run(
        [sys.executable, "-m", "avatar_rtc", "restore", str(tmp_path / "missing.tar"),
         "--storage-data-dir", str(tmp_path / "t2")],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )
    assert done.returncode == 1
    assert "avatar-rtc restore: no backup archive at" in done.stderr


def test_the_tools_wrappers_exist_and_call_the_cli() -> None:
    for name in ("backup", "restore"):
        script = REPO / "tools" / name
        assert script.stat().st_mode & 0o111, f"tools/{name} is not executable"
        text = script.read_text()
        assert "tools/setup" in text and f".venv/bin/avatar-rtc {name} \"$@\"" in text


async def test_postgresql_restore_refusals_and_force(
    pg_server: PgServer, postgres_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    settings = settings_for(root)
    settings.storage.database_url = postgres_url
    store = await Store.open(postgres_url)
    try:
        await fill(store, root)
        expected = await dump(store)
    finally:
        await store.close()
    archive = backup(settings, tmp_path / "pg.tar").archive

    # A database already in use is not overwritten without --force; with it, replaced.
    target = fresh_database(request, postgres_url, tmp_path / "target")
    used = await Store.open(target.storage.database_url)
    stray = CallRecord(id=new_id(), started_at=utc_now() - timedelta(days=1))
    await used.create_call(stray)
    await used.close()
    with pytest.raises(BackupError, match="PostgreSQL database is not empty: pass --force"):
        restore(target, archive)
    restore(target, archive, force=True)
    again = await Store.open(target.storage.database_url)
    try:
        assert await dump(again) == expected
        assert len(await again.search_turns("weather")) == len(expected[1])
    finally:
        await again.close()

    # Neither into the other engine, nor from a newer release, nor from a stranger's DB.
    with pytest.raises(BackupError, match="holds a postgresql database"):
        restore(settings_for(tmp_path / "sqlite-target"), archive)
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    manifest["database"]["schema_version"] = 99
    rewrite_member(archive, MANIFEST, json.dumps(manifest).encode())
    fresh = fresh_database(request, postgres_url, tmp_path / "fresh")
    with pytest.raises(BackupError, match="schema is version 99"):
        restore(fresh, archive)
    assert pg_server.query(fresh.storage.database_url.rsplit("/", 1)[1],
                           "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                           ) == [(0,)]
    other = fresh_database(request, postgres_url, tmp_path / "other")
    with pytest.raises(BackupError, match="not an avatar_rtc database"):
        backup(other, tmp_path / "other.tar")
