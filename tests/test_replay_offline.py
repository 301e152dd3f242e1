"""Offline replay: a recorded call (or a file) through the pipeline without WebRTC.

The driver is checked with fast fake models; the real runs use the embedded models on
calls recorded by a real server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from avatar_rtc.backends.registry import Backends
from avatar_rtc.calls import conversation_config
from avatar_rtc.conversation.agent import ConversationConfig
from avatar_rtc.conversation.endpointing import EndpointConfig
from avatar_rtc.replay.measure import audible_at, first_quiet, last_audible_end, longest_silence
from avatar_rtc.replay.offline import load_recorded_call, match_turns, replay_offline
from avatar_rtc.replay.sources import AudioSource, load_audio
from avatar_rtc.replay.summary import render
from avatar_rtc.replay.timeline import OriginalTurn, TimelineTurn
from avatar_rtc.replay.webrtc import WebrtcOptions, replay_webrtc
from tests.conftest import LiveServer
from tests.fakes import LONG_REPLY, FakeLlm, FakeStt, FakeTts, fake_backends, silence, tone
from tests.replay_audio import encode
from tests.speech import speak, word_error_rate

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?"]


# ---- the matching, exactly ----------------------------------------------------


def test_turns_are_matched_by_when_the_speech_ended() -> None:
    def old(i: int, end: float | None) -> OriginalTurn:
        return OriginalTurn(index=i, user_text="", reply_text="", spoken_text="",
                            interrupted=False, timings_ms={}, user_end_s=end)

    def new(i: int, end: float) -> TimelineTurn:
        return TimelineTurn(index=i, source="x", user_end_s=end)

    rows = match_turns([old(0, 2.0), old(1, 9.0), old(2, 15.0)],
                       [new(0, 2.3), new(1, 5.0), new(2, 15.5)])
    assert [(m.original, m.replay) for m in rows] == [(0, 0), (None, 1), (1, None), (2, 2)]
    # Without recording offsets: in order.
    rows = match_turns([old(0, None), old(1, None)], [new(0, 2.0)])
    assert [(m.original, m.replay) for m in rows] == [(0, 0), (1, None)]


def test_the_agent_stopping_is_told_from_a_pause() -> None:
    # Audible 20 ms frames: talking until 1.0, a 100 ms gap, 0.3 s more, then quiet.
    audible = [round(0.5 + 0.02 * k, 2) for k in range(25)]
    audible += [round(1.1 + 0.02 * k, 2) for k in range(15)]
    assert first_quiet(audible, 0.9, 10.0, 0.02) == pytest.approx(1.4)
    assert first_quiet(audible, 0.9, 10.0, 0.02, quiet_s=0.08) == pytest.approx(1.0)
    assert last_audible_end(audible, 0.9, 10.0, 0.02) == pytest.approx(1.4)
    assert last_audible_end(audible, 0.9, 1.05, 0.02) == pytest.approx(1.0)
    assert last_audible_end(audible, 2.0, 3.0, 0.02) is None
    assert first_quiet(audible, 2.0, 3.0, 0.02) == 2.0
    # The longest silence inside the reply: the 100 ms gap, not the quiet after it.
    assert longest_silence(audible, 0.5, 10.0, 0.02) == pytest.approx(0.1)
    assert longest_silence(audible, 1.1, 10.0, 0.02) == pytest.approx(0.0)


def test_the_agent_speaks_now_only_if_its_latest_frame_is_audible_and_fresh() -> None:
    audible = [round(0.5 + 0.02 * k, 2) for k in range(25)]  # the last one at 0.98
    assert audible_at(audible, 0.99, 0.02)
    assert audible_at(audible, 1.01, 0.02)  # one frame late
    assert not audible_at(audible, 1.05, 0.02)  # between two chunks
    assert not audible_at([], 1.0, 0.02)
    assert longest_silence(audible, 2.0, 3.0, 0.02) == 0.0


def fake_config() -> ConversationConfig:
    return ConversationConfig(endpoint=EndpointConfig(min_speech_ms=96, end_silence_ms=200),
                              system_prompt="test")


def two_tones() -> AudioSource:
    pcm = np.concatenate([silence(1.0), tone(0.6), silence(4.0), tone(0.6), silence(3.0)])
    return AudioSource("tones", pcm, 16000)


async def test_fast_mode_skips_idle_time_and_keeps_the_stage_timings() -> None:
    user = two_tones()
    backends = fake_backends(stt=FakeStt(delay_s=0.15), llm=FakeLlm(token_delay_s=0.01),
                             tts=FakeTts(seconds_per_char=0.03))
    started = time.monotonic()
    fast = await replay_offline(backends, fake_config(), user, source="tones", fast=True)
    wall = time.monotonic() - started
    assert wall < user.duration_s / 2, wall
    assert fast.duration_s >= user.duration_s  # the replay's own clock ran the whole call
    assert [round(t.user_end_s or 0, 1) for t in fast.turns] == [1.6, 6.2]
    for turn in fast.turns:
        assert turn.user_text == "Hello there" and not turn.interrupted
        # STT took 150 ms of real time, and the replay clock says so.
        assert 140 <= turn.timings_ms["stt_ms"] < 1000, turn.timings_ms  # not skipped
        assert turn.agent_start_s is not None and turn.agent_end_s is not None
        assert turn.agent_end_s - turn.agent_start_s > 1.0  # the whole reply was played
    assert len(fast.vad) == 2
    assert fast.agent_audio is not None and fast.user_audio is not None
    assert abs(len(fast.agent_audio) / 16000 - fast.duration_s) < 0.1


async def test_real_time_mode_takes_the_recording_s_own_time() -> None:
    user = AudioSource("tone", np.concatenate([silence(0.5), tone(0.6), silence(2.5)]), 16000)
    started = time.monotonic()
    timeline = await replay_offline(fake_backends(llm=FakeLlm(reply="Okay.")), fake_config(),
                                    user, source="tone")
    assert time.monotonic() - started >= user.duration_s
    assert len(timeline.turns) == 1 and timeline.turns[0].spoken_text.strip() == "Okay."
    assert timeline.options["fast"] is False


async def test_talking_over_the_reply_interrupts_it_offline_too() -> None:
    pcm = np.concatenate([silence(0.5), tone(0.6), silence(1.5), tone(0.8), silence(2.0)])
    timeline = await replay_offline(
        fake_backends(llm=FakeLlm(reply=LONG_REPLY),
                      tts=FakeTts(seconds_per_char=0.05)),
        fake_config(), AudioSource("barge", pcm, 16000), source="barge", fast=True)
    first = timeline.turns[0]
    assert first.interrupted and first.barge_in_reaction_ms is not None
    assert first.agent_end_s is not None and first.agent_end_s < 3.0
    # Paused after 96 ms of speech, cut at 200 ms (min_speech_ms 96 here): within a frame.
    assert 0 < first.barge_in_reaction_ms < 200
    assert first.barge_in_pause_ms == first.barge_in_reaction_ms  # no resume: a tone
    assert 0 < len(first.spoken_text) < len(first.reply_text.strip())


# ---- real models, calls recorded by a real server ----------------------------------


async def recorded(server: LiveServer, call_id: str, timeout_s: float = 30.0) -> None:
    store = server.state.store
    assert store is not None
    deadline = time.monotonic() + timeout_s
    while True:
        call = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
            store.get_call(call_id), server.loop.loop))
        if call is not None and call.recording_bytes > 0:
            return
        assert time.monotonic() < deadline, f"no recording saved for {call_id}"
        await asyncio.sleep(0.2)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_recorded_call_replayed_by_id_compares_with_the_original(
    live_server: LiveServer, real_backends: Backends, tmp_path: Path
) -> None:
    files = [encode(tmp_path / f"q{i}.wav", speak(text, 22050), 22050)
             for i, text in enumerate(QUESTIONS)]
    sources = [await asyncio.to_thread(load_audio, f, 48000) for f in files]
    # A long gap: the replay keeps the recording's timing, so a slower pipeline (a busy
    # machine) would otherwise still be answering when the next question comes.
    call = await replay_webrtc(live_server.url, sources, WebrtcOptions(gap_s=4.0))
    assert call.call_id is not None and [t.error for t in call.turns] == [None, None]
    await recorded(live_server, call.call_id)

    settings = live_server.state.settings
    stored = await load_recorded_call(settings, call.call_id)
    assert len(stored.original) == 2
    started = time.monotonic()
    timeline = await replay_offline(real_backends, conversation_config(settings), stored.user,
                                    source=f"call {call.call_id}", fast=True,
                                    original=stored.original)
    wall = time.monotonic() - started
    assert wall < stored.user.duration_s, (wall, stored.user.duration_s)
    assert timeline.matches is not None and timeline.original is not None
    heard = [(t.user_text, t.user_end_s) for t in timeline.turns]
    said = [(t.user_text, t.user_end_s) for t in timeline.original]
    assert [(m.original, m.replay) for m in timeline.matches] == [(0, 0), (1, 1)], (heard, said)
    for turn, old, text in zip(timeline.turns, timeline.original, QUESTIONS, strict=True):
        assert word_error_rate(text, turn.user_text) <= 0.3, turn.user_text
        assert turn.spoken_text.strip() and not turn.interrupted
        # The recording's offsets and the replay's clock share one time axis. The stored
        # end is when the live server heard it, late by however far a busy machine made
        # its VAD lag then (0.1-0.5 s seen here); the replay's VAD hears the file itself.
        assert old.user_end_s is not None and turn.user_end_s is not None
        assert abs(turn.user_end_s - old.user_end_s) < 1.0, (turn.user_end_s, old.user_end_s)
        assert set(old.timings_ms) <= set(turn.timings_ms)
    text = render(timeline)
    assert "original call vs. replay, side by side:" in text
    assert "first audio sent (server v2v)" in text

    # The same recording as a plain file, in real time: no originals, the same words.
    track = Path(settings.storage.data_dir) / f"recordings/{call.call_id}/user.ogg"
    user = await asyncio.to_thread(load_audio, track)
    started = time.monotonic()
    again = await replay_offline(real_backends, conversation_config(settings), user,
                                 source=str(track))
    assert time.monotonic() - started >= user.duration_s
    assert again.original is None and again.matches is None
    assert [t.user_text for t in again.turns] == [t.user_text for t in timeline.turns]

    # The command line, by call ID, with an HTML report.
    out = tmp_path / "cli"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "avatar_rtc", "replay", "offline", "--call-id", call.call_id,
        "--data-dir", settings.storage.data_dir, "--fast", "--out", str(out),
        "--report", "html", cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 400)
    assert process.returncode == 0, stderr.decode()
    assert "original call vs. replay, side by side:" in stdout.decode()
    assert "loading models" in stderr.decode()  # the progress bar
    saved = json.loads((out / "timeline.json").read_text())
    assert saved["mode"] == "offline" and saved["call_id"] == call.call_id
    assert saved["matches"] == [{"original": 0, "replay": 0}, {"original": 1, "replay": 1}]
    assert [t["user_text"] for t in saved["turns"]] == [t.user_text for t in timeline.turns]
    assert (out / "report.html").read_text().count("<svg") == 1
