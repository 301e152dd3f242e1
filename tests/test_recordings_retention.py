"""Recording retention and the disk cap, on a real SQLite store and real files."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from avatar_rtc.app import create_app
from avatar_rtc.recordings import MIB, recording_dir, relative_paths, save_recording, sweep
from avatar_rtc.settings import RecordingSettings
from avatar_rtc.state import STATE
from avatar_rtc.storage import CallRecord, Store, default_url, new_id, utc_now
from media.recorder import RecordingResult
from tests.conftest import make_settings
from tests.fakes import fake_backends

pytestmark = pytest.mark.timeout(60)

NOW = utc_now()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(default_url(tmp_path))
    yield opened
    await opened.close()


async def recorded_call(store: Store, root: Path, age_days: float, size: int,
                        call_id: str | None = None) -> str:
    """A stored call with its two files (``size`` bytes together) on disk."""
    call_id = call_id or new_id()
    user, agent = relative_paths(call_id)
    await store.create_call(CallRecord(
        id=call_id, started_at=NOW - timedelta(days=age_days), ended_at=NOW,
        end_reason="hangup", user_audio_path=user, agent_audio_path=agent,
        recording_bytes=size,
    ))
    folder = recording_dir(root, call_id)
    folder.mkdir(parents=True)
    (root / user).write_bytes(b"u" * (size // 2))
    (root / agent).write_bytes(b"a" * (size - size // 2))
    return call_id


async def state_of(store: Store, root: Path, call_id: str) -> tuple[bool, bool]:
    """(files still on disk, row says deleted)."""
    call = await store.get_call(call_id)
    assert call is not None
    return recording_dir(root, call_id).exists(), call.recording_deleted


def policy(retention_days: float = 0, max_disk_mb: float = 0) -> RecordingSettings:
    return RecordingSettings(retention_days=retention_days, max_disk_mb=max_disk_mb)


def nothing_live() -> set[str]:
    return set()


async def test_recordings_past_retention_are_deleted_and_their_rows_say_so(
    store: Store, tmp_path: Path
) -> None:
    ages = {"old": 45.0, "just_past": 30.01, "young": 29.9, "new": 0.01}
    ids = {name: await recorded_call(store, tmp_path, age, 1000) for name, age in ages.items()}
    report = await sweep(store, tmp_path, policy(retention_days=30), nothing_live, NOW)
    assert report.deleted == [ids["old"], ids["just_past"]]  # oldest first
    assert report.expired == 2 and report.over_cap == 0 and report.freed_bytes == 2000
    assert await state_of(store, tmp_path, ids["old"]) == (False, True)
    assert await state_of(store, tmp_path, ids["just_past"]) == (False, True)
    assert await state_of(store, tmp_path, ids["young"]) == (True, False)
    assert await state_of(store, tmp_path, ids["new"]) == (True, False)
    # The rows stay (history is kept), with their paths: only the audio is gone.
    call = await store.get_call(ids["old"])
    assert call is not None and call.user_audio_path and call.recording_bytes == 1000
    # A second pass has nothing left to do.
    again = await sweep(store, tmp_path, policy(retention_days=30), nothing_live, NOW)
    assert again.deleted == [] and again.total_bytes == 2000


async def test_over_the_disk_cap_the_oldest_go_first_until_it_fits(
    store: Store, tmp_path: Path
) -> None:
    # Created out of age order: the sweeper must order by the call's start.
    ages = [3.0, 9.0, 1.0, 7.0, 5.0]
    ids = {age: await recorded_call(store, tmp_path, age, MIB) for age in ages}
    report = await sweep(store, tmp_path, policy(max_disk_mb=2.5), nothing_live, NOW)
    assert report.deleted == [ids[9.0], ids[7.0], ids[5.0]]
    assert report.over_cap == 3 and report.expired == 0
    assert report.total_bytes == 2 * MIB
    for age in (9.0, 7.0, 5.0):
        assert await state_of(store, tmp_path, ids[age]) == (False, True)
    for age in (3.0, 1.0):
        assert await state_of(store, tmp_path, ids[age]) == (True, False)


async def test_live_calls_are_never_touched_but_count_toward_the_cap(
    store: Store, tmp_path: Path
) -> None:
    live_id = await recorded_call(store, tmp_path, 90.0, 2 * MIB)  # oldest, and expired
    older = await recorded_call(store, tmp_path, 2.0, MIB)
    newer = await recorded_call(store, tmp_path, 1.0, MIB)
    live = {live_id}
    report = await sweep(store, tmp_path, policy(retention_days=30, max_disk_mb=3.5),
                         lambda: live, NOW)
    # 4 MiB on disk: the live call's 2 MiB stay, so the oldest finished one goes.
    assert report.deleted == [older]
    assert await state_of(store, tmp_path, live_id) == (True, False)
    assert await state_of(store, tmp_path, older) == (False, True)
    assert await state_of(store, tmp_path, newer) == (True, False)
    assert (tmp_path / relative_paths(live_id)[0]).stat().st_size == MIB


async def test_a_call_that_goes_live_during_the_sweep_is_spared(
    store: Store, tmp_path: Path
) -> None:
    first = await recorded_call(store, tmp_path, 5.0, MIB)
    second = await recorded_call(store, tmp_path, 4.0, MIB)
    asked: list[int] = []

    def live() -> set[str]:
        asked.append(1)
        return {first} if len(asked) > 1 else set()  # live by the time it is deleted

    report = await sweep(store, tmp_path, policy(max_disk_mb=0.5), live, NOW)
    assert report.deleted == [second]
    assert await state_of(store, tmp_path, first) == (True, False)


async def test_files_gone_behind_its_back_are_marked_and_foreign_folders_left_alone(
    store: Store, tmp_path: Path
) -> None:
    gone = await recorded_call(store, tmp_path, 1.0, 100)
    kept = await recorded_call(store, tmp_path, 1.0, 100)
    for path in recording_dir(tmp_path, gone).iterdir():
        path.unlink()
    recording_dir(tmp_path, gone).rmdir()
    # A folder no row knows (a crash, a deleted call), old, and one that is not ours.
    orphan = recording_dir(tmp_path, new_id())
    orphan.mkdir()
    (orphan / "user.ogg").write_bytes(b"x" * 50)
    old = (NOW - timedelta(days=60)).timestamp()
    os.utime(orphan / "user.ogg", (old, old))
    foreign = tmp_path / "recordings" / "notes"
    foreign.mkdir()
    (foreign / "readme.txt").write_text("keep me")
    report = await sweep(store, tmp_path, policy(retention_days=30), nothing_live, NOW)
    assert report.missing == [gone]
    assert await state_of(store, tmp_path, gone) == (False, True)
    assert report.deleted == [orphan.name] and not orphan.exists()
    assert await state_of(store, tmp_path, kept) == (True, False)
    assert (foreign / "readme.txt").read_text() == "keep me"


async def test_without_a_recordings_folder_nothing_is_marked(
    store: Store, tmp_path: Path
) -> None:
    call_id = await recorded_call(store, tmp_path / "elsewhere", 99.0, 100)
    report = await sweep(store, tmp_path, policy(retention_days=1), nothing_live, NOW)
    assert report.deleted == [] and report.missing == []
    call = await store.get_call(call_id)
    assert call is not None and not call.recording_deleted


async def test_zero_means_keep_forever_and_no_cap(store: Store, tmp_path: Path) -> None:
    ids = [await recorded_call(store, tmp_path, age, MIB) for age in (400.0, 2.0)]
    report = await sweep(store, tmp_path, policy(), nothing_live, NOW)
    assert report.deleted == [] and report.total_bytes == 2 * MIB
    for call_id in ids:
        assert await state_of(store, tmp_path, call_id) == (True, False)


async def test_the_server_sweeps_at_startup(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    store = await Store.open(default_url(data))
    expired = await recorded_call(store, data, 40.0, 100)
    kept = await recorded_call(store, data, 1.0, 100)
    await store.close()
    settings = make_settings(data, recording__retention_days=30.0)
    app = create_app(settings, backends=fake_backends())
    await aiohttp_client(app)
    server_store = app[STATE].store
    assert server_store is not None
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        call = await server_store.get_call(expired)
        if call is not None and call.recording_deleted:
            break
        assert asyncio.get_running_loop().time() < deadline, "no sweep at startup"
        await asyncio.sleep(0.05)
    assert not recording_dir(data, expired).exists()
    assert recording_dir(data, kept).exists()



async def test_a_call_whose_recording_is_still_being_saved_is_spared(
    store: Store, tmp_path: Path
) -> None:
    """Between leaving the live calls and its recording being saved, a call is busy."""
    ended = await recorded_call(store, tmp_path, 40.0, MIB)
    release = asyncio.Event()

    class EndedCall:  # what save_recording reads of a Call
        id = ended
        recording_offset = None
        conversation = type("C", (), {"finished_turns": []})()

        async def finish_recording(self) -> RecordingResult:
            await release.wait()  # the encoder is still flushing
            user, agent = (tmp_path / p for p in relative_paths(ended))
            return RecordingResult(user, agent, MIB, 1.0)

    saving = asyncio.create_task(save_recording(store, EndedCall(), tmp_path))  # type: ignore
    report = await sweep(store, tmp_path, policy(retention_days=30), nothing_live, NOW)
    assert report.deleted == []
    release.set()
    await saving
    assert await state_of(store, tmp_path, ended) == (True, False)
    # Saved: now it is an ordinary (expired) recording.
    report = await sweep(store, tmp_path, policy(retention_days=30), nothing_live, NOW)
    assert report.deleted == [ended]
    assert await state_of(store, tmp_path, ended) == (False, True)
