"""Calls that end badly, many times over, leave nothing behind: real aiortc callers on a
real server (fast fake models: the subject is the call's lifecycle, not the models).

- the peer vanishes mid-reply, 100 times: each turn stored as cut off, and no task,
  thread or descriptor left;
- the caller never starts ICE: the call is closed at the connect timeout and stored so;
- 20 calls in a row: tasks, threads and descriptors flat, memory bounded.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from avatar_rtc.caller import Caller
from avatar_rtc.state import STATE
from tests.fake_server import ClientFactory, base_url, settings_for, start
from tests.fakes import LONG_REPLY, FakeLlm, FakeTts, tone
from tests.resources import Resources, now, rss_bytes, settled

pytestmark = pytest.mark.timeout(240)

BATCH = 10  # callers at once
VANISHED = 100
SPEECH = np.concatenate([tone(0.5, 48000), np.zeros(24000, np.int16)])


async def _vanish_mid_reply(url: str) -> str:
    caller = Caller(url)
    await caller.connect(timeout_s=60)
    said = caller.say(SPEECH, 48000)
    await said.done.wait()
    await caller.wait_event("agent_text", timeout_s=60)
    await asyncio.sleep(0.2)
    await caller.close()  # gone mid-sentence, no goodbye
    assert caller.session_id is not None
    return caller.session_id


async def _short_call(url: str) -> str:
    async with Caller(url) as caller:
        said = caller.say(SPEECH, 48000)
        await said.done.wait()
        await caller.wait_event("turn_end", timeout_s=60)
    assert caller.session_id is not None
    return caller.session_id


async def _quiet() -> Resources:
    """The baseline: what is left once the calls so far have closed, with the loop's
    default thread pool grown to its most (it grows on demand and never shrinks)."""
    await asyncio.gather(*(asyncio.to_thread(time.sleep, 0.05) for _ in range(64)))
    await asyncio.sleep(3)
    return now()


async def _stored(app: Any, call_ids: list[str]) -> list[Any]:
    state = app[STATE]
    await asyncio.gather(*state.background, return_exceptions=True)
    return [(await state.store.get_call(c), await state.store.turns(c)) for c in call_ids]


async def test_the_peer_vanishes_mid_reply_100_times(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    # Every caller is 127.0.0.1, BATCH at once, 100 in all: no limit on offers.
    settings = settings_for(tmp_path, server__max_calls=BATCH,
                            server__max_pending_offers=0, server__max_pending_per_address=0,
                            server__offer_rate_per_min=0)
    client, app = await start(aiohttp_client, settings, llm=FakeLlm(reply=LONG_REPLY),
                              tts=FakeTts(seconds_per_char=0.05))
    url = base_url(client)
    # Warm: codecs, and the thread pools grown to what a batch of calls uses.
    await asyncio.gather(*(_vanish_mid_reply(url) for _ in range(BATCH)))
    baseline = await _quiet()
    call_ids: list[str] = []
    for _ in range(VANISHED // BATCH):
        call_ids += await asyncio.gather(*(_vanish_mid_reply(url) for _ in range(BATCH)))
    left = await settled(baseline)
    stored = await _stored(app, call_ids)

    assert len(app[STATE].registry) == 0 and not app[STATE].calls
    assert left.within(baseline), (left, baseline)
    assert len(set(call_ids)) == VANISHED
    for call, turns in stored:
        assert call.end_reason in ("closed", "failed", "disconnected"), call
        assert len(turns) == 1, (call.id, turns)
        assert turns[0].cut_off and not turns[0].interrupted, turns[0]
        assert turns[0].spoken_text and turns[0].spoken_text != turns[0].reply_text


async def test_a_caller_that_never_starts_ice_is_closed_at_the_connect_timeout(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, server__connect_timeout_s=1.0, server__max_calls=5,
                            server__max_pending_per_address=0)
    client, app = await start(aiohttp_client, settings)

    async def offers_never_connected() -> list[str]:
        call_ids: list[str] = []
        async with aiohttp.ClientSession() as http:
            for _ in range(5):
                pc = RTCPeerConnection()
                pc.addTransceiver("audio")
                pc.createDataChannel("events")
                await pc.setLocalDescription(await pc.createOffer())
                # The offer is answered; the caller never connects: no ICE checks.
                await pc.close()
                async with http.post(f"{base_url(client)}/offer", json={
                        "sdp": pc.localDescription.sdp, "type": "offer"}) as response:
                    assert response.status == 200, await response.text()
                    call_ids.append((await response.json())["session_id"])
        return call_ids

    await offers_never_connected()  # warm: the thread pools grow to what 5 calls use
    baseline = await _quiet()
    call_ids = await offers_never_connected()
    left = await settled(baseline, timeout_s=15)
    stored = await _stored(app, call_ids)

    assert len(app[STATE].registry) == 0 and not app[STATE].calls
    assert left.within(baseline), (left, baseline)
    assert [call.end_reason for call, _ in stored] == ["connect_timeout"] * 5
    assert all(turns == [] for _, turns in stored)


async def test_20_calls_in_a_row_leak_nothing(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client, app = await start(aiohttp_client, settings_for(tmp_path),
                              tts=FakeTts(seconds_per_char=0.005))
    url = base_url(client)
    for _ in range(3):  # warm
        await _short_call(url)
    baseline = await _quiet()
    rss_before = rss_bytes()
    call_ids = [await _short_call(url) for _ in range(20)]
    left = await settled(baseline)
    rss_growth = rss_bytes() - rss_before
    stored = await _stored(app, call_ids)

    assert left.within(baseline), (left, baseline)
    assert rss_growth < 32 * 1024 * 1024, f"RSS grew {rss_growth / 2**20:.1f} MiB"
    assert all(call.end_reason == "closed" and len(turns) == 1 for call, turns in stored)
