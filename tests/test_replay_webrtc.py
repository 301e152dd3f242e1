"""The replay tool over real WebRTC against a real server with the embedded models."""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from avatar_rtc.call import Call
from avatar_rtc.replay.report import render_html, render_png
from avatar_rtc.replay.sources import AudioSource, load_audio
from avatar_rtc.replay.summary import render, summarize
from avatar_rtc.replay.timeline import Timeline
from avatar_rtc.replay.webrtc import WebrtcOptions, replay_webrtc
from tests.conftest import LiveServer, storyteller
from tests.replay_audio import encode
from tests.speech import speak, word_error_rate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = {
    "capital.wav": "What is the capital of France?",
    "spider.flac": "How many legs does a spider have?",
    "color.mp3": "What is your favorite color?",
    "sun.ogg": "How far away is the sun?",
}


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


async def the_call(server: LiveServer, timeout_s: float = 30.0) -> Call:
    """The server's Call object for the one call the test makes (kept after hang-up)."""
    async with asyncio.timeout(timeout_s):
        while not server.state.calls:  # noqa: ASYNC110 - the server runs on another thread
            await asyncio.sleep(0.01)
    return next(iter(server.state.calls.values()))


async def test_four_formats_replayed_like_a_caller_agree_with_the_server(
    live_server: LiveServer, tmp_path: Path
) -> None:
    files = [encode(tmp_path / name, speak(text, 22050), 22050)
             for name, text in QUESTIONS.items()]
    sources = [await asyncio.to_thread(load_audio, path, 48000) for path in files]
    watcher = asyncio.create_task(the_call(live_server))
    timeline = await replay_webrtc(live_server.url, sources, WebrtcOptions(gap_s=0.5))
    conversation = (await watcher).conversation

    assert [t.source for t in timeline.turns] == list(QUESTIONS)
    server_turns = {t.index: t for t in conversation.finished_turns}
    assert timeline.clock_origin is not None
    gaps: list[float] = []
    for turn, text in zip(timeline.turns, QUESTIONS.values(), strict=True):
        assert turn.error is None, turn
        assert word_error_rate(text, turn.user_text) <= 0.3, turn.user_text
        assert turn.spoken_text.strip() and not turn.interrupted
        assert turn.voice_to_voice_ms is not None
        assert turn.user_end_s is not None and turn.agent_start_s is not None
        assert turn.user_end_s < turn.agent_start_s < turn.agent_end_s  # type: ignore[operator]
        # Client and server run on one monotonic clock here, so the gap between the
        # client's voice-to-voice and the server's own (first_audio_sent_ms) splits
        # exactly into its two causes.
        assert turn.server_turn is not None
        heard_by_server = server_turns[turn.server_turn]
        client_end = timeline.clock_origin + turn.user_end_s
        client_first = timeline.clock_origin + turn.agent_start_s
        server_first = heard_by_server.marks["first_audio_sent"]
        # The server dates the end of speech to the arrival of the last voiced sample,
        # the client to its departure: they differ by the way in (Opus, loopback, a
        # 20 ms jitter buffer) give or take where each side finds the "last" sample.
        # (The client takes the last sample over 300 anywhere; the server only looks
        # before the VAD frame that turned silent, so a soft tail the VAD already
        # calls silence counts on the client's side only: -78 ms measured once.)
        detection = heard_by_server.speech_end_at - client_end
        # The first frame sent -> received: pacing, Opus, loopback, the jitter buffer.
        transport = client_first - server_first
        server = turn.timings_ms["first_audio_sent_ms"]
        # Neither side may date it before the other could have: the server before the
        # sample left, the client the first frame before the server sent it. The upper
        # bounds catch a wrong match (a turn or a frame off), not a slow frame: a loaded
        # CI runner delayed one first frame by 430 ms. The 100 ms agreement the issue
        # asks for is a latency figure; tools/bench.py prints it (p50/p90).
        assert -0.1 < detection < 0.5, (detection, turn)
        assert 0 <= transport < 1.0, (transport, turn)
        assert turn.voice_to_voice_ms - server == pytest.approx(
            (detection + transport) * 1000, abs=0.5)
        gaps.append(turn.voice_to_voice_ms - server)
    assert statistics.median(gaps) < 300, gaps
    assert timeline.vad and all(v.end_s is not None and v.end_s > v.start_s for v in timeline.vad)
    assert timeline.user_audio is not None and timeline.agent_audio is not None

    # The same numbers in the timeline, the stored turns and /metrics.
    assert timeline.call_id is not None
    stored = await asyncio.to_thread(live_server.turns, timeline.call_id)
    assert [t["timings"] for t in stored] == [t.timings_ms for t in timeline.turns]
    assert [t["user_text"] for t in stored] == [t.user_text for t in timeline.turns]
    async with aiohttp.ClientSession() as http, http.get(f"{live_server.url}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    assert metric(text, "avatar_turns_total") == 4
    assert metric(text, "avatar_calls_total") == 1
    assert metric(text, "avatar_voice_to_voice_seconds_count") == 4
    total = sum(t.timings_ms["first_audio_sent_ms"] for t in timeline.turns)
    assert metric(text, "avatar_voice_to_voice_seconds_sum") * 1000 == pytest.approx(total)

    # The summary, the JSON round trip and both reports.
    figures = summarize(timeline.turns)
    assert figures["answered"] == 4 and figures["voice_to_voice_ms"]["n"] == 4
    assert "voice-to-voice (client clock)  p50" in render(timeline)
    json_path = await asyncio.to_thread(timeline.save, tmp_path / "out")
    again = await asyncio.to_thread(Timeline.load, json_path)
    assert again.to_dict() == timeline.to_dict()
    assert again.agent_audio is not None and len(again.agent_audio) == len(timeline.agent_audio)
    png = await asyncio.to_thread(render_png, timeline, tmp_path / "out" / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    page = await asyncio.to_thread(render_html, timeline, tmp_path / "out" / "report.html")
    html = page.read_text()
    assert "<svg" in html and "src=" not in html  # self-contained
    assert all(t.source in html for t in timeline.turns)


def test_the_cli_barges_in_and_reports_an_interrupted_turn(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    # The barge-in speaks in the agent's own (and only) Piper voice: the server's echo
    # canceller would take it for the agent, so this caller turns it off (as one with
    # its own canceller may).
    server = storyteller(start_server, max_sentences=0, max_tokens=80,  # ~20 s of story
                         echo__enabled=False)
    ask = encode(tmp_path / "ask.wav", speak("Tell me a story about a brave dragon."), 48000)
    stop = encode(tmp_path / "stop.ogg", speak("Stop, stop. Wait a moment please."), 48000)
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "avatar_rtc", "replay", "webrtc", "--url", server.url,
         str(ask), "--barge-in", str(stop), "--barge-in-at", "1.5", "--out", str(out),
         "--report", "both"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert "barge-in reaction" in done.stdout and "[interrupted]" in done.stdout
    assert "replay [" in done.stderr  # the progress bar
    data = json.loads((out / "timeline.json").read_text())
    first, barge = data["turns"]
    assert first["interrupted"] and barge["role"] == "barge-in" and barge["error"] is None
    # 0: the agent was between two sentences at the onset (quiet already). It went quiet
    # soon (the bench measures how soon) and stopped for good before the user finished
    # talking over it ("Stop." alone may be too short to count: Piper varies run to run).
    assert 0 <= first["barge_in_pause_ms"] <= first["barge_in_reaction_ms"]
    assert first["barge_in_pause_ms"] < 1000
    assert first["barge_in_reaction_ms"] < 1000 * (barge["user_end_s"] - barge["user_start_s"])
    assert first["spoken_text"] and len(first["spoken_text"]) < len(first["reply_text"].strip())
    # The agent had begun its reply when the barge-in began (on a loaded runner the onset
    # may fall in a pause between two sentences, so its audio may have ended already).
    assert first["agent_start_s"] < barge["user_start_s"]
    for name in ("user.wav", "agent.wav", "summary.txt", "report.png", "report.html"):
        assert (out / name).stat().st_size > 0, name
    stored = server.turns(data["call_id"])
    assert stored[0]["interrupted"] and stored[0]["spoken_text"] == first["spoken_text"]


async def test_a_call_the_server_ends_midway_returns_at_once_with_the_reason(
    start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(server__call_max_s=6.0)
    sources = [AudioSource(name, speak(text), 48000) for name, text in QUESTIONS.items()]
    started = time.monotonic()
    timeline = await replay_webrtc(server.url, sources, WebrtcOptions(gap_s=0.5))
    # The call ends 6 s in, during the second or third question: no 60 s reply timeouts.
    assert time.monotonic() - started < 30
    error = timeline.options["error"]
    assert "the server ended the call" in error and "max" in error, error
    assert timeline.turns[-1].error == error
    assert len(timeline.turns) < len(sources)
