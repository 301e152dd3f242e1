"""Recordings of real calls: two aligned Ogg/Opus files, turn offsets that point into them,
finalized on hang-up, when the peer vanishes, and when the server shuts down."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from avatar_rtc.app import create_app
from avatar_rtc.caller import Caller, MicrophoneTrack
from avatar_rtc.state import STATE
from avatar_rtc.storage import CallRecord, Store, TurnRecord, default_url
from tests.conftest import LiveServer
from tests.fake_server import ClientFactory, base_url, settings_for
from tests.fakes import LONG_REPLY, FakeLlm, FakeTts, fake_backends, tone
from tests.speech import speak, with_silence
from tests.test_recorder import decode, envelope

pytestmark = pytest.mark.timeout(180)

QUESTION = "What is the capital of France?"
LOUD = 0.02  # RMS over 20 ms: -34 dBFS; Opus noise on silence stays far below it


async def stored_recording(store: Store, call_id: str, timeout_s: float = 20.0
                           ) -> tuple[CallRecord, list[TurnRecord]]:
    """The call row once its finalized recording is saved, and its turns."""
    deadline = time.monotonic() + timeout_s
    while True:
        call = await store.get_call(call_id)
        if call is not None and call.recording_bytes > 0:
            return call, await store.turns(call_id)
        assert time.monotonic() < deadline, f"no recording saved for {call_id}: {call}"
        await asyncio.sleep(0.1)


def loud_frames(samples: npt.NDArray[np.float64], rate: int) -> npt.NDArray[np.intp]:
    """Indexes of the loud 20 ms frames."""
    return np.flatnonzero(envelope(samples, rate) > LOUD)


def voiced_frames(samples: npt.NDArray[np.float64], rate: int) -> npt.NDArray[np.intp]:
    """Indexes of the 20 ms frames with any voice in them: the caller's own criterion
    (a peak above 300/32768), doubled to stay clear of Opus noise on silence."""
    size = round(0.02 * rate)
    usable = samples[: samples.size - samples.size % size]
    return np.flatnonzero(np.abs(usable.reshape(-1, size)).max(axis=1) > 600 / 32768)


def rms(samples: npt.NDArray[np.float64], rate: int, start_ms: float, end_ms: float) -> float:
    piece = samples[max(0, round(start_ms * rate / 1000)) : round(end_ms * rate / 1000)]
    return float(np.sqrt(np.mean(piece**2))) if piece.size else 0.0


@pytest.mark.slow
async def test_a_real_call_records_both_sides_on_one_timeline(live_server: LiveServer) -> None:
    # Synthesized first: Piper on this loop mid-call would stall the caller's microphone.
    question = with_silence(speak(QUESTION), 48000, 0.5, 0.0)
    async with Caller(live_server.url) as caller:
        assert caller.session_id is not None
        recorder = live_server.state.calls[caller.session_id].recorder
        assert recorder is not None
        t0 = recorder.t0
        utterance = caller.say(question, 48000)
        await utterance.done.wait()
        assert utterance.speech_start_at is not None and utterance.speech_end_at is not None
        first_audio = await caller.wait_agent_audio(after=utterance.speech_end_at)
        end = await caller.wait_event("turn_end", timeout_s=60)
        await asyncio.sleep(0.5)
        hung_up = time.monotonic()
    assert end["interrupted"] is False

    store = live_server.state.store
    assert store is not None
    call, turns = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
        stored_recording(store, caller.session_id), live_server.loop.loop))
    data = Path(live_server.state.settings.storage.data_dir)
    assert call.user_audio_path == f"recordings/{call.id}/user.ogg"
    assert call.agent_audio_path == f"recordings/{call.id}/agent.ogg"
    assert not call.recording_deleted
    user_path, agent_path = data / call.user_audio_path, data / call.agent_audio_path
    assert call.recording_bytes == user_path.stat().st_size + agent_path.stat().st_size

    codec_u, rate_u, user = decode(user_path)
    codec_a, rate_a, agent = decode(agent_path)
    assert codec_u == codec_a == "opus"
    duration_u, duration_a = user.size / rate_u, agent.size / rate_a
    # Both start at t0 (the offer) and end at the hang-up; a track may run ahead of the
    # clock by up to 40 ms before silence is trimmed to bring it back.
    assert abs(duration_u - duration_a) <= 0.06, (duration_u, duration_a)
    assert abs(duration_u - (hung_up - t0)) <= 1.0, (duration_u, hung_up - t0)

    assert len(turns) == 1
    turn = turns[0]
    assert turn.user_audio_start_ms is not None and turn.user_audio_end_ms is not None
    assert turn.agent_audio_start_ms is not None and turn.agent_audio_end_ms is not None
    assert turn.user_audio_start_ms < turn.user_audio_end_ms <= turn.agent_audio_start_ms
    assert turn.agent_audio_start_ms < turn.agent_audio_end_ms <= duration_a * 1000

    # The user's voice is in the user track where the caller spoke it (loopback: a few ms
    # of network and jitter buffer), and inside the turn's stored span.
    spoken = voiced_frames(user, rate_u)
    assert spoken.size, "no speech in the user track"
    # Where the caller's mic clock put them: a frame sent late (the test's loop was busy)
    # is followed by a catch-up burst, and the recording keeps the stream's timing.
    said_from = (utterance.speech_start_at - utterance.start_late_s - t0) * 1000
    said_to = (utterance.speech_end_at - utterance.end_late_s - t0) * 1000
    assert abs(spoken[0] * 20 - said_from) <= 150, (spoken[0] * 20, said_from)
    assert abs(spoken[-1] * 20 + 20 - said_to) <= 150, (spoken[-1] * 20, said_to)
    assert turn.user_audio_start_ms - 100 <= spoken[0] * 20
    assert spoken[-1] * 20 <= turn.user_audio_end_ms + 100
    assert rms(user, rate_u, turn.user_audio_start_ms, turn.user_audio_end_ms) > 0.03
    assert rms(user, rate_u, 0, said_from - 100) < 0.005  # silence before the question

    # The agent's reply is in the agent track where the caller heard it start, inside the
    # stored span, and the agent track is silent while the user speaks.
    replied = voiced_frames(agent, rate_a)
    assert replied.size, "no speech in the agent track"
    # Frames read late (the test's loop was busy) come in a burst: the next second of
    # frames says when the first one would have been read on time.
    first = next(i for i, f in enumerate(caller.frames) if f.at == first_audio)
    on_time = min(f.at - 0.02 * k for k, f in enumerate(caller.frames[first:first + 50]))
    heard_at = (on_time - t0) * 1000
    assert abs(replied[0] * 20 - heard_at) <= 150, (replied[0] * 20, heard_at)
    assert abs(replied[0] * 20 - turn.agent_audio_start_ms) <= 100
    assert replied[-1] * 20 <= turn.agent_audio_end_ms + 100
    assert turn.agent_audio_end_ms - (replied[-1] * 20 + 20) <= 600  # ends with the speech
    assert rms(agent, rate_a, turn.agent_audio_start_ms, turn.agent_audio_end_ms) > 0.03
    assert rms(agent, rate_a, 0, turn.agent_audio_start_ms - 100) < 0.005






async def test_a_peer_vanishing_mid_reply_leaves_finalized_files_cut_where_it_went(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    llm = FakeLlm(reply=LONG_REPLY)
    app = create_app(settings_for(tmp_path), backends=fake_backends(
        llm=llm, tts=FakeTts(seconds_per_char=0.05)))
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[STATE].ready.wait(), 10)
    caller = Caller(base_url(client))
    await caller.connect()
    said = caller.say(np.concatenate([tone(0.5, 48000), np.zeros(24000, np.int16)]), 48000)
    await said.done.wait()
    await caller.wait_event("agent_text", timeout_s=10)
    await asyncio.sleep(1.0)
    await caller.pc.close()  # gone mid-sentence, no goodbye
    store = app[STATE].store
    assert store is not None and caller.session_id is not None
    call, turns = await stored_recording(store, caller.session_id)
    await caller.close()

    # (Whether the turn is marked cut off depends on who notices first: aiortc stops the
    # outbound track when its sender fails, which ends the reply's playout early.)
    assert len(turns) == 1
    turn = turns[0]
    assert turn.agent_audio_start_ms is not None and turn.agent_audio_end_ms is not None
    assert call.user_audio_path and call.agent_audio_path
    _, rate, agent = decode(tmp_path / call.agent_audio_path)
    _, _, user = decode(tmp_path / call.user_audio_path)
    assert abs(agent.size - user.size) <= rate * 0.05
    # The reply plays from its start until the peer vanished, then the file just ends
    # (disconnect detection), silent: what was sent, as sent.
    replied = loud_frames(agent, rate)
    assert replied.size
    assert abs(replied[0] * 20 - turn.agent_audio_start_ms) <= 100
    assert abs(replied[-1] * 20 + 20 - turn.agent_audio_end_ms) <= 150
    # About a second was sent of a 32-second reply; the track has that, not more.
    assert 0.9 <= (replied[-1] - replied[0] + 1) * 0.02 <= 4.0
    assert rms(user, rate, turn.user_audio_start_ms or 0, turn.user_audio_end_ms or 0) > 0.1


async def test_server_shutdown_mid_call_finalizes_and_stores_the_recording(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    app = create_app(settings_for(tmp_path), backends=fake_backends(
        llm=FakeLlm(reply=LONG_REPLY),
        tts=FakeTts(seconds_per_char=0.05)))
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[STATE].ready.wait(), 10)
    caller = Caller(base_url(client))
    await caller.connect()
    said = caller.say(np.concatenate([tone(0.5, 48000), np.zeros(24000, np.int16)]), 48000)
    await said.done.wait()
    await caller.wait_event("agent_text", timeout_s=10)
    await client.close()  # the server stops with the call live
    await caller.close()

    store = await Store.open(default_url(tmp_path))
    try:
        assert caller.session_id is not None
        call = await store.get_call(caller.session_id)
    finally:
        await store.close()
    assert call is not None and call.end_reason == "shutdown"
    assert call.recording_bytes > 0 and call.user_audio_path and call.agent_audio_path
    for relative in (call.user_audio_path, call.agent_audio_path):
        codec, rate, samples = decode(tmp_path / relative)
        assert codec == "opus" and samples.size > rate  # playable, longer than a second
    assert loud_frames(decode(tmp_path / call.agent_audio_path)[2], 48000).size


async def test_with_recording_off_no_files_and_no_paths(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    app = create_app(settings_for(tmp_path, recording__enabled=False),
                     backends=fake_backends(llm=FakeLlm(reply="Okay.")))
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[STATE].ready.wait(), 10)
    async with Caller(base_url(client)) as caller:
        said = caller.say(np.concatenate([tone(0.3, 48000), np.zeros(16000, np.int16)]), 48000)
        await said.done.wait()
        await caller.wait_event("turn_end", timeout_s=10)
    for _ in range(100):
        if not app[STATE].calls:
            break
        await asyncio.sleep(0.05)
    await asyncio.gather(*app[STATE].background)
    store = app[STATE].store
    assert store is not None and caller.session_id is not None
    call = await store.get_call(caller.session_id)
    turns = await store.turns(caller.session_id)
    assert call is not None and call.ended_at is not None
    assert call.user_audio_path is None and call.agent_audio_path is None
    assert turns and turns[0].user_audio_start_ms is None
    assert not (tmp_path / "recordings").exists()


class SlowCatchUpMic(MicrophoneTrack):
    """A caller whose loop stalls 0.5 s mid-question, then sends only 1.1x real time
    until it has caught up: every frame arrives late for about five seconds."""

    def __init__(self, stall_at_s: float) -> None:
        super().__init__()
        self._stall_at = round(stall_at_s * 48000)
        self._stalled = False

    async def recv(self) -> av.AudioFrame:
        if self._t0 is not None and self._sent >= self._stall_at:
            behind = time.monotonic() - (self._t0 + self._sent / 48000)
            if not self._stalled:
                self._stalled = True
                await asyncio.sleep(0.5)
            elif behind > 0:
                await asyncio.sleep(0.02 / 1.1)
        return await super().recv()


async def test_a_caller_that_catches_up_slowly_is_recorded_without_a_gap(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    app = create_app(settings_for(tmp_path), backends=fake_backends())
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[STATE].ready.wait(), 10)
    caller = Caller(base_url(client))
    caller.mic = SlowCatchUpMic(stall_at_s=1.5)
    await caller.connect()
    said = caller.say(np.concatenate([np.zeros(48000, np.int16), tone(1.5, 48000),
                                      np.zeros(4 * 48000, np.int16)]), 48000)
    await said.done.wait()
    await caller.close()
    store = app[STATE].store
    assert store is not None and caller.session_id is not None
    call, _ = await stored_recording(store, caller.session_id)

    assert call.user_audio_path
    _, rate, user = decode(tmp_path / call.user_audio_path)
    spoken = voiced_frames(user, rate)
    # One unbroken 1.5 s tone, as sent (placed by arrival, 480 ms of silence split it).
    assert spoken.size and np.diff(spoken).max() == 1, np.flatnonzero(np.diff(spoken) > 1)
    assert abs((spoken[-1] - spoken[0] + 1) * 0.02 - 1.5) <= 0.06
