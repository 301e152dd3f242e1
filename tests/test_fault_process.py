"""The `avatar-rtc serve` process stopped with live calls, as a real subprocess with real
aiortc callers (the STT, LLM and TTS of the echo plugin in tests/plugin_backend: fast,
and installed as a user would; the VAD is the real one).

- SIGTERM: /offer answers 503 with Retry-After, /health and /ready say draining; a call that
  hangs up ends as usual, one that stays is closed at server.drain_timeout_s; every
  finished turn is stored and the process exits 0.
- SIGKILL: after a restart the database passes integrity_check, the finished turns are
  there, and the partial recording decodes up to its last flushed page.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from avatar_rtc.caller import Caller
from avatar_rtc.storage import Store, default_url
from tests.conftest import free_port
from tests.speech import speak, with_silence
from tests.test_recorder import decode

Process = asyncio.subprocess.Process
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REPO_ROOT = Path(__file__).resolve().parents[1]
DRAIN_S = 4.0



@pytest.fixture(scope="module")
def question() -> Any:
    return with_silence(speak("What is the capital of France?"), 48000, 0.3, 0.0)


@asynccontextmanager
async def serving(data_dir: Path, site: Path) -> AsyncIterator[tuple[str, Process]]:
    port = free_port()
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), str(site),
                                         os.environ.get("PYTHONPATH")]))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "avatar_rtc", "serve", "--host", "127.0.0.1",
        "--port", str(port), "--storage-data-dir", str(data_dir),
        "--ice-host-addresses", "127.0.0.1", "--turn-model", "none",
        "--stt-backend", "echo-stt", "--llm-backend", "echo-llm", "--tts-backend", "tone-tts",
        "--server-drain-timeout-s", str(DRAIN_S),
        env={**os.environ, "PYTHONPATH": path}, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 120
            while True:
                assert process.returncode is None, "the server exited"
                try:
                    async with http.get(f"{url}/health") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "the server never got ready"
                await asyncio.sleep(0.3)
        yield url, process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _one_turn(caller: Caller, question: Any) -> dict[str, Any]:
    said = caller.say(question, 48000)
    await said.done.wait()
    return await caller.wait_event("turn_end", timeout_s=60)


async def test_sigterm_drains_live_calls_then_exits_0(
    tmp_path: Path, plugin_site: Path, question: Any
) -> None:
    async with serving(tmp_path, plugin_site) as (url, process), \
            aiohttp.ClientSession() as http:
        leaving, staying = Caller(url), Caller(url)
        await leaving.connect()
        await staying.connect()
        await _one_turn(leaving, question)
        await _one_turn(staying, question)

        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        async with http.get(f"{url}/health") as response:
            health = response.status, await response.json()
        async with http.get(f"{url}/ready") as response:  # the balancer moves on
            ready = response.status, await response.json()
        async with http.post(f"{url}/offer", json={}) as response:
            refused = response.status, response.headers.get("Retry-After"), \
                await response.json()
        await leaving.close()  # hangs up during the drain
        stopped_at = time.monotonic()
        bye = await staying.wait_event("bye", timeout_s=DRAIN_S + 10)
        closed_after = time.monotonic() - stopped_at
        code = await asyncio.wait_for(process.wait(), 30)
        await staying.close()
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()

    assert health[0] == 503 and health[1]["draining"] is True
    assert ready[0] == 503 and ready[1]["reason"] == "draining"
    assert refused[0] == 503 and refused[1] == "10"
    assert refused[2] == {"error": "the server is shutting down"}
    assert bye["reason"] == "shutdown" and DRAIN_S - 1.5 < closed_after < DRAIN_S + 5
    assert code == 0, log
    assert "draining: 2 live calls" in log and "drain over: closing 1 calls" in log
    store = await Store.open(default_url(tmp_path))
    try:
        ends = {c: (await store.get_call(c)) for c in (leaving.session_id, staying.session_id)}
        turns = [await store.turns(c) for c in ends if c]
    finally:
        await store.close()
    reasons = [call.end_reason for call in ends.values() if call is not None]
    assert reasons == ["closed", "shutdown"]
    assert [len(t) for t in turns] == [1, 1]
    assert all(t[0].reply_text.startswith("You asked:") for t in turns)


async def test_sigkill_mid_call_leaves_a_consistent_database_and_a_readable_recording(
    tmp_path: Path, plugin_site: Path, question: Any
) -> None:
    async with serving(tmp_path, plugin_site) as (url, process):
        caller = Caller(url)
        await caller.connect()
        await _one_turn(caller, question)
        await _one_turn(caller, question)
        await asyncio.sleep(2.0)  # a page or two more of both tracks on disk
        process.kill()
        await process.wait()
        await caller.close()
    call_id = caller.session_id
    assert call_id is not None

    async with serving(tmp_path, plugin_site) as (url, process):  # the restart
        store = await Store.open(default_url(tmp_path))
        try:
            integrity = await store.pragma("integrity_check")
            call = await store.get_call(call_id)
            turns = await store.turns(call_id)
        finally:
            await store.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0

    assert integrity == "ok"
    assert call is not None and call.ended_at is None  # it never ended
    assert [t.index for t in turns] == [0, 1]
    assert call.user_audio_path and call.agent_audio_path
    for path in (call.user_audio_path, call.agent_audio_path):
        codec, rate, samples = decode(tmp_path / path)  # no trailer: up to its last page
        assert codec == "opus" and samples.size / rate > 2.0
