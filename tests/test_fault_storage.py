"""Storage under stress during real calls (real aiortc callers, fast fake models):
the disk fills while recording, and another process holds the SQLite database locked.
The call goes on and its turns are stored either way."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from avatar_rtc.caller import Caller
from avatar_rtc.recordings import RECORDINGS_DIR
from avatar_rtc.state import STATE
from avatar_rtc.storage import CallRecord, Store, TurnRecord, default_url, new_id, utc_now
from tests.fake_server import ClientFactory, base_url, settings_for, start
from tests.fakes import FakeTts, tone
from tests.test_recorder import decode

pytestmark = pytest.mark.timeout(180)

# The caller's tone is the fake TTS's tone: the server's echo canceller (on by default)
# would take it for the agent's own voice, so these servers run without it, as with a
# caller whose client cancels its echo itself.
SPEECH = np.concatenate([tone(0.5, 48000), np.zeros(24000, np.int16)])
SMALL_FS = 24 * 1024  # a few seconds of both tracks at 24 kbps


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """<tmp_path>/recordings on a tmpfs of SMALL_FS bytes (the database stays outside)."""
    mount = tmp_path / RECORDINGS_DIR
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_FS}", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def _ended(app: web.Application, timeout_s: float = 20.0) -> None:
    """Once the server saw the hang-up and stored what it does then."""
    state = app[STATE]
    deadline = time.monotonic() + timeout_s
    while len(state.registry) or state.calls:
        assert time.monotonic() < deadline, "the call never ended on the server"
        await asyncio.sleep(0.05)
    await asyncio.gather(*state.background, return_exceptions=True)


async def _turn(caller: Caller, index: int) -> dict[str, object]:
    said = caller.say(SPEECH, 48000)
    await said.done.wait()
    return await caller.wait_event("turn_end", turn=index, timeout_s=60)


async def test_the_disk_fills_while_recording(
    aiohttp_client: ClientFactory, tmp_path: Path, small_disk: Path,
    caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    client, app = await start(aiohttp_client, settings_for(tmp_path, echo__enabled=False),
                              tts=FakeTts(seconds_per_char=0.03))
    async with Caller(base_url(client)) as caller:
        ends = [await _turn(caller, i) for i in range(4)]  # ~15 s: the disk fills early
        assert caller.ended is None
    state = app[STATE]
    assert caller.session_id is not None and state.store is not None
    deadline = time.monotonic() + 20
    while (call := await state.store.get_call(caller.session_id)) is None or \
            call.recording_bytes == 0:
        assert time.monotonic() < deadline, call
        await asyncio.sleep(0.1)
    await asyncio.gather(*state.background, return_exceptions=True)
    turns = await state.store.turns(caller.session_id)

    assert [e["reply_text"] for e in ends] == [t.reply_text for t in turns]
    assert len(turns) == 4 and call.end_reason == "closed"
    full = [r.getMessage() for r in caplog.records if "No space left on device" in
            r.getMessage()]
    assert full and "track: encode failed: " in full[0], full  # a precise line
    assert call.user_audio_path and call.agent_audio_path
    for path in (call.user_audio_path, call.agent_audio_path):
        codec, rate, samples = decode(tmp_path / path)  # up to its last complete page
        assert codec == "opus" and samples.size / rate > 0.5


class Locker:
    """Another process's connection holding the database's write lock for a while."""

    def __init__(self, path: Path, hold_s: float) -> None:
        self.locked, self.released = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._hold, args=(path, hold_s))

    def __enter__(self) -> Locker:
        self._thread.start()
        assert self.locked.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join()

    def _hold(self, path: Path, hold_s: float) -> None:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("BEGIN EXCLUSIVE")
            self.locked.set()
            time.sleep(hold_s)
            db.execute("COMMIT")
        finally:
            db.close()
            self.released.set()


async def test_a_locked_database_delays_writes_without_blocking_the_loop(
    tmp_path: Path
) -> None:
    store = await Store.open(default_url(tmp_path))
    call = CallRecord(id=new_id(), started_at=utc_now())
    await store.create_call(call)
    lag = 0.0

    async def tick() -> None:
        nonlocal lag
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.02)
            lag = max(lag, time.monotonic() - before - 0.02)

    ticker = asyncio.create_task(tick())
    try:
        # Longer than busy_timeout (5 s): the store's own retries take over.
        with Locker(_db_path(tmp_path), hold_s=7.0):
            started = time.monotonic()
            turns = [TurnRecord(id=new_id(), call_id=call.id, index=i, started_at=utc_now())
                     for i in range(3)]
            await asyncio.gather(*(store.save_turn(t) for t in turns))
            waited = time.monotonic() - started
        stored = await store.turns(call.id)
    finally:
        ticker.cancel()
        await store.close()
    assert waited > 6.0  # they waited for the lock...
    assert [t.id for t in stored] == [t.id for t in turns]  # ...and landed, in order
    assert lag < 0.5, f"the event loop stalled {lag:.2f} s"


async def test_a_calls_turns_land_while_another_process_holds_the_database_locked(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client, app = await start(aiohttp_client, settings_for(tmp_path, echo__enabled=False),
                              tts=FakeTts(seconds_per_char=0.01))
    async with Caller(base_url(client)) as caller:
        with Locker(_db_path(tmp_path), hold_s=7.0) as locker:
            ends = [await _turn(caller, i) for i in range(2)]
            during_lock = not locker.released.is_set()
    state = app[STATE]
    await _ended(app)
    assert caller.session_id is not None and state.store is not None
    turns = await state.store.turns(caller.session_id)
    call = await state.store.get_call(caller.session_id)
    assert during_lock  # the call went on: its turns ended while the database was locked
    assert [t.reply_text for t in turns] == [e["reply_text"] for e in ends]
    assert call is not None and call.end_reason == "closed"


def _db_path(data_dir: Path) -> Path:
    return Path(default_url(data_dir).removeprefix("sqlite:///"))
