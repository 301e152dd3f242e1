"""Calls through a real coturn on loopback, with credentials the server issues from the
secret it shares with coturn: an aiortc caller and headless Chromium, relay-only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aioice.turn
import numpy as np
import pytest
from aioice import stun
from aiortc import RTCIceTransportPolicy

from avatar_rtc.caller import Caller, server_ice
from signaling.turn_credentials import issue
from tests.browser import (
    call_state,
    chromium,
    console_log,
    inbound_audio_stats,
    make_speech_wav,
    missing_tools,
    wait_for_event,
    wait_until,
)
from tests.conftest import LiveServer
from tests.speech import speak, with_silence, word_error_rate
from tests.turn_server import TurnServer, coturn, needs_coturn

# Generous: the first test of a session waits for the models to load.
pytestmark = [needs_coturn, pytest.mark.timeout(300)]

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def turn() -> Iterator[TurnServer]:
    with coturn() as server:
        yield server


async def allocate(turn: TurnServer, username: str, password: str) -> None:
    """A TURN allocation with these credentials; raises if coturn refuses them."""
    transport, _ = await aioice.turn.create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", turn.port), username, password)
    transport.close()


async def test_coturn_takes_issued_credentials_and_refuses_expired_or_forged(
    turn: TurnServer,
) -> None:
    good = issue(turn.secret, 60)
    await allocate(turn, good.username, good.credential)
    assert good.username in turn.allocations()
    expired = issue(turn.secret, 60, now=time.time() - 120)
    forged = issue("not-the-secret", 60)
    for bad in (expired, forged):
        with pytest.raises(stun.TransactionFailed) as refused:
            await allocate(turn, bad.username, bad.credential)
        assert refused.value.response.attributes["ERROR-CODE"][0] == 401
        assert bad.username not in turn.allocations()


def nominated_types(caller: Caller) -> tuple[str, str]:
    """The local and remote candidate types of the caller's selected pair (aioice's
    own record: aiortc's getStats has no candidate pairs)."""
    ice = caller.pc.getTransceivers()[0].sender.transport.transport
    pair = ice._connection._nominated[1]
    return pair.local_candidate.type, pair.remote_candidate.type


@pytest.mark.slow
async def test_a_relay_only_caller_is_heard_and_answered_through_coturn(
    start_server: Callable[..., LiveServer], turn: TurnServer,
) -> None:
    server = start_server(ice__turn_urls=[turn.url], ice__turn_secret=turn.secret)
    earlier = set(turn.allocations())
    configuration = await server_ice(server.url)
    assert configuration.iceTransportPolicy == RTCIceTransportPolicy.ALL
    configuration.iceTransportPolicy = RTCIceTransportPolicy.RELAY  # this caller only
    assert configuration.iceServers
    caller_name = configuration.iceServers[0].username
    async with Caller(server.url, configuration=configuration) as caller:
        # No host candidate of its own: every packet goes through coturn.
        assert nominated_types(caller)[0] == "relay"
        utterance = caller.say(with_silence(speak(QUESTION), 48000, 0.5, 0.0), 48000)
        await utterance.done.wait()
        assert utterance.speech_end_at is not None
        await caller.wait_agent_audio(after=utterance.speech_end_at)
        transcript = await caller.wait_event("user_transcript")
        await caller.wait_event("turn_end", timeout_s=60)
    assert word_error_rate(QUESTION, transcript["text"]) <= 0.3, transcript
    heard = caller.agent_audio().astype(np.float64)
    assert np.sqrt(np.mean(heard**2)) > 200
    # The server's own peer allocated a relay too, with credentials of its own.
    names = set(turn.allocations()) - earlier
    assert caller_name in names
    assert len(names) >= 2, names  # the caller's and the server's own


_SELECTED_PAIR_JS = """
const done = arguments[arguments.length - 1];
const pc = window.avatarCall && window.avatarCall.pc;
if (!pc) { done(null); return; }
pc.getStats().then((report) => {
  const byId = {};
  report.forEach((s) => { byId[s.id] = s; });
  let pair = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = byId[s.selectedCandidatePairId];
  });
  if (!pair || pair.state !== "succeeded") { done(null); return; }
  done({local: byId[pair.localCandidateId].candidateType,
        remote: byId[pair.remoteCandidateId].candidateType});
}, () => done(null));
"""


@pytest.mark.skipif(bool(missing_tools()), reason="needs chromium and chromedriver")
@pytest.mark.browser
@pytest.mark.slow
def test_the_page_calls_relay_only_through_coturn_when_the_settings_say_so(
    start_server: Callable[..., LiveServer], turn: TurnServer, tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    server = start_server(ice__turn_urls=[turn.url], ice__turn_secret=turn.secret,
                          ice__relay_only=True)
    before = len(turn.allocations())
    wav = make_speech_wav(QUESTION, tmp_path / "question.wav", lead_s=1.5, tail_s=4.0)
    with chromium(wav) as driver:
        driver.get(f"{server.url}/?processing=0")
        driver.find_element(By.ID, "call-button").click()
        try:
            wait_until(lambda: call_state(driver)["connectionState"] == "connected",
                       timeout=20, what="the peer connection")
            pair = driver.execute_async_script(_SELECTED_PAIR_JS)
            transcript = wait_for_event(driver, "user_transcript", timeout=30)
            quiet = inbound_audio_stats(driver)  # silence so far: the reply is not sent yet
            wait_for_event(driver, "turn_end", timeout=60)
            time.sleep(1.0)  # the reply's last packets
            spoken = inbound_audio_stats(driver)
        except TimeoutError as exc:
            pytest.fail(f"{exc}; {call_state(driver)}\n{console_log(driver)}")
        # Relay on both ends: the page and the server's peer were both told relay-only.
        assert pair == {"local": "relay", "remote": "relay"}, pair
        # The fake microphone's words reached the server through the relay.
        assert word_error_rate(QUESTION, transcript["text"]) <= 0.3, transcript
        # The reply's audio came back through it: Opus frames of speech, far larger
        # than the few bytes of a silent one. (Chromium's totalAudioEnergy stayed 0 in
        # some runs on a loaded machine although these frames arrived.)
        assert quiet and spoken and quiet["packetsReceived"] > 0, (quiet, spoken)
        silent_frame = quiet["bytesReceived"] / quiet["packetsReceived"]
        speech_bytes = (spoken["bytesReceived"] - quiet["bytesReceived"]
                        - silent_frame * (spoken["packetsReceived"] - quiet["packetsReceived"]))
        assert speech_bytes > 4000 or spoken["totalAudioEnergy"] > 0, (quiet, spoken)
        driver.find_element(By.ID, "call-button").click()
    assert len(turn.allocations()) >= before + 2  # the page's relay and the server's
