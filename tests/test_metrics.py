"""Prometheus metrics and the per-turn log line: the same numbers as the data channel and
the stored turn. Real aiortc calls with the fast fake models."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from avatar_rtc.caller import Caller
from avatar_rtc.conversation.turn import Turn
from avatar_rtc.logs import setup_logging
from avatar_rtc.metrics import STAGES, Metrics, error_stage
from avatar_rtc.state import STATE
from tests.fake_server import ClientFactory, base_url, settings_for, start
from tests.fakes import LONG_REPLY, FakeLlm, FakeTts, tone

pytestmark = pytest.mark.timeout(120)









def value(text: str, name: str, labels: str = "") -> float | None:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return None if match is None else float(match.group(1))


def question(seconds: float = 0.5) -> np.ndarray:
    return np.concatenate([tone(seconds, 48000), np.zeros(24000, np.int16)])


def finished_turn(interrupted: bool = False) -> Turn:
    turn = Turn(audio=np.zeros(1600, np.int16), speech_end_at=100.0)
    for stage, at in (("stt_start", 100.0), ("stt_end", 100.1234), ("llm_first_token", 100.3),
                      ("first_chunk", 100.35), ("tts_first_audio", 100.4),
                      ("committed", 100.32), ("first_audio_sent", 100.41)):
        turn.mark(stage, at)
    turn.interrupted = interrupted
    return turn


def test_a_turn_is_observed_with_exactly_its_timings() -> None:
    metrics = Metrics(active_calls=lambda: 3)
    turns = [finished_turn(), finished_turn(interrupted=True)]
    turns[0].backchannels = ["Mm-hmm.", "Yeah."]
    observed = [metrics.observe_turn(t) for t in turns]
    assert observed == [t.timings_ms() for t in turns]
    registry = metrics.registry
    for key, (name, _) in STAGES.items():
        total = registry.get_sample_value(f"{name}_sum")
        assert total is not None and total * 1000 == pytest.approx(2 * observed[0][key]), key
        assert registry.get_sample_value(f"{name}_count") == 2
    assert registry.get_sample_value("avatar_turns_total") == 2
    assert registry.get_sample_value("avatar_interruptions_total") == 1
    assert registry.get_sample_value("avatar_backchannels_total") == 2
    assert registry.get_sample_value("avatar_active_calls") == 3


def test_a_turn_without_a_stage_does_not_observe_it() -> None:
    metrics = Metrics()
    turn = Turn(audio=np.zeros(10, np.int16), speech_end_at=5.0)
    turn.mark("stt_start", 5.0)
    turn.mark("stt_end", 5.2)
    metrics.observe_turn(turn)
    assert metrics.registry.get_sample_value("avatar_stt_seconds_count") == 1
    assert metrics.registry.get_sample_value("avatar_voice_to_voice_seconds_count") == 0


def test_errors_are_counted_by_the_stage_their_message_names() -> None:
    assert error_stage("stt: whisper needs 16 kHz audio") == "stt"
    assert error_stage("llm: ConnectionError: refused") == "llm"
    assert error_stage("tts: Piper voice 'x' not installed") == "tts"
    assert error_stage("internal error: KeyError") == "internal"
    assert error_stage("weird") == "internal"
    metrics = Metrics()
    for message in ("llm: a", "llm: b", "internal error: X"):
        metrics.error(message)
    get = metrics.registry.get_sample_value
    assert get("avatar_errors_total", {"stage": "llm"}) == 2
    assert get("avatar_errors_total", {"stage": "internal"}) == 1
    assert get("avatar_errors_total", {"stage": "stt"}) is None


async def test_each_app_has_its_own_registry_and_the_route_can_be_off(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    one, app_one = await start(aiohttp_client, settings_for(tmp_path / "a"))
    two, _ = await start(aiohttp_client, settings_for(tmp_path / "b"))
    app_one[STATE].metrics.call_started()
    first, second = await one.get("/metrics"), await two.get("/metrics")
    assert first.status == second.status == 200
    assert first.headers["Content-Type"].startswith("text/plain; version=")
    assert value(await first.text(), "avatar_calls_total") == 1
    assert value(await second.text(), "avatar_calls_total") == 0
    assert value(await second.text(), "avatar_active_calls") == 0
    off, _ = await start(aiohttp_client, settings_for(tmp_path / "c", server__metrics=False))
    response = await off.get("/metrics")
    assert response.status == 404 and "error" in await response.json()


async def test_a_real_call_counts_and_times_its_turns_like_the_data_channel(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    # The caller's tones and the fake voice's are alike: no echo canceller to tell them.
    client, app = await start(aiohttp_client, settings_for(tmp_path, echo__enabled=False),
                              llm=FakeLlm(reply="Hello there. How can I help?"))
    async with Caller(base_url(client)) as caller:
        during = value(await (await client.get("/metrics")).text(), "avatar_active_calls")
        for _ in range(2):
            said = caller.say(question(), 48000)
            await said.done.wait()
            await caller.wait_event("turn_end", after=said.queued_at, timeout_s=10)
        await caller.wait_event("timings", turn=1, timeout_s=5)
    assert during == 1
    sent = [e["timings"] for _, e in caller.events if e["type"] == "timings"]
    assert len(sent) == 2
    await asyncio.gather(*app[STATE].background)
    store = app[STATE].store
    assert store is not None and caller.session_id is not None
    stored = [t.timings for t in await store.turns(caller.session_id)]
    assert stored == sent
    text = await (await client.get("/metrics")).text()
    assert value(text, "avatar_calls_total") == 1
    assert value(text, "avatar_turns_total") == 2
    assert value(text, "avatar_interruptions_total") == 0
    for key, (name, _) in STAGES.items():
        total = value(text, f"{name}_sum")
        assert total is not None and total * 1000 == pytest.approx(sum(t[key] for t in sent))
        assert value(text, f"{name}_count") == 2


async def test_interruptions_and_failed_stages_are_counted(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client, _ = await start(aiohttp_client, settings_for(tmp_path),
                            llm=FakeLlm(reply=LONG_REPLY),
                            tts=FakeTts(seconds_per_char=0.05))
    async with Caller(base_url(client)) as caller:
        said = caller.say(question(), 48000)
        await said.done.wait()
        await caller.wait_event("agent_text", timeout_s=10)
        caller.say(question(0.6), 48000)  # talks over the reply
        await caller.wait_event("turn_end", interrupted=True, timeout_s=10)
    text = await (await client.get("/metrics")).text()
    assert value(text, "avatar_interruptions_total") == 1

    failing, _ = await start(aiohttp_client, settings_for(tmp_path / "f"),
                             llm=FakeLlm(fail=True))
    async with Caller(base_url(failing)) as caller:
        said = caller.say(question(), 48000)
        await said.done.wait()
        await caller.wait_event("error", timeout_s=10)
    text = await (await failing.get("/metrics")).text()
    assert value(text, "avatar_errors_total", '{stage="llm"}') == 1


async def test_json_logs_carry_the_call_id_and_one_line_per_turn(
    aiohttp_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = await start(aiohttp_client, settings_for(tmp_path))
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("INFO", as_json=True)
    try:
        async with Caller(base_url(client)) as caller:
            said = caller.say(question(), 48000)
            await said.done.wait()
            timings = await caller.wait_event("timings", timeout_s=10)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    turns = [line for line in lines if line.get("event") == "turn"]
    assert len(turns) == 1
    turn = turns[0]
    assert turn["call_id"] == caller.session_id
    assert turn["timings_ms"] == timings["timings"]
    assert turn["user_text"] == "Hello there" and turn["interrupted"] is False
    assert turn["msg"].startswith("turn 0: v2v=")
    ours = [line for line in lines if line["logger"].startswith("avatar_rtc")]
    assert any(line["call_id"] == caller.session_id for line in ours)
