"""tools/bench_turns.py's pure parts: the trials it plans, and how it judges a call from
the agent's received audio (times of audible frames) and the data-channel events."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import bench_turns as bt
import turns_audio as ta
import turns_measure as tm

from avatar_rtc.caller import ReceivedFrame


def frames(start: float, end: float) -> list[float]:
    """Audible frames arriving every 20 ms over [start, end)."""
    return [round(float(t), 4) for t in np.arange(start, end - 1e-9, tm.FRAME_S)]


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **fields}


# ---- plans ---------------------------------------------------------------------


def test_every_list_has_eight_items_or_more() -> None:
    for items in (bt.QUESTIONS, bt.HESITATIONS, bt.LONG_PROMPTS, bt.BACKCHANNELS,
                  bt.INTERRUPTIONS, bt.TV_LINES, ta.VOICES):
        assert len(items) >= 8


def test_hesitation_pauses_spread_evenly_and_texts_vary() -> None:
    plans = bt.scenario_plans("hesitation", 8, 60.0)
    assert plans[0].pause_s == 0.5 and plans[-1].pause_s == 1.2
    steps = np.diff([p.pause_s for p in plans])
    assert np.allclose(steps, steps[0], atol=0.002)
    assert len({p.text for p in plans}) == 8 and len({p.voice for p in plans}) == 8
    assert all(p.keys and p.second for p in plans)
    assert bt.pauses(1) == [0.85]


def test_plans_are_the_same_for_the_same_seed_and_use_no_piper_voice() -> None:
    for scenario in bt.SCENARIOS:
        plans = bt.scenario_plans(scenario, 3, 20.0)
        assert plans == bt.scenario_plans(scenario, 3, 20.0)
        assert all(p.voice in ta.VOICES for p in plans)
    assert all(p.echo for p in bt.scenario_plans("echo_only", 2, 0))
    assert all(p.echo and p.keys for p in bt.scenario_plans("echo_interrupt", 2, 0))
    assert not any(p.echo for p in bt.scenario_plans("interruption", 2, 0))
    assert bt.scenario_plans("noise_tv", 1, 20.0)[0].seconds == 20.0
    assert bt.scenario_plans("complete", 2, 0, seed=1)[0].text == bt.QUESTIONS[1]


def test_scenario_names_and_groups() -> None:
    assert bt.parse_scenarios("echo,complete") == ["complete", "echo_only", "echo_interrupt"]
    with pytest.raises(ValueError, match="unknown scenario"):
        bt.parse_scenarios("complete,chitchat")
    assert bt.repeats_for(["complete", "noise_tv"], None, quick=True) == {
        "complete": 1, "noise_tv": 1}
    assert bt.repeats_for(["complete", "noise_tv"], 3, quick=False) == {
        "complete": 3, "noise_tv": 1}


# ---- audio measures ----------------------------------------------------------------


def test_longest_gap_counts_the_window_edges() -> None:
    audible = frames(0.0, 1.0) + frames(1.5, 2.0)
    assert tm.longest_gap(audible, 0.0, 2.0) == pytest.approx(0.5)
    assert tm.longest_gap(audible, 0.0, 3.0) == pytest.approx(1.0)  # silent to the end
    assert tm.longest_gap(frames(0.5, 2.0), 0.0, 2.0) == pytest.approx(0.5)
    assert tm.longest_gap(frames(0.0, 2.0), 0.2, 1.8) == pytest.approx(0.0)


def test_stop_time_is_the_start_of_the_first_200_ms_of_quiet() -> None:
    # A 100 ms breath does not count; the agent goes quiet at 1.4 s and answers at 2.5 s.
    audible = frames(0.0, 1.2) + frames(1.3, 1.4) + frames(2.5, 4.0)
    assert tm.stop_time(audible, 1.0, 5.0) == pytest.approx(1.4)
    assert tm.stop_time(audible, 1.0, 1.5) is None  # not yet seen quiet for 200 ms
    assert tm.stop_time(frames(0.0, 5.0), 1.0, 5.0) is None  # never stopped


def test_bursts_merge_close_frames() -> None:
    audible = frames(1.0, 2.0) + frames(2.5, 3.0) + frames(10.0, 11.0)
    assert len(tm.bursts(audible, 0.0, 20.0, 1.5)) == 2
    assert len(tm.bursts(audible, 0.0, 20.0, 0.03)) == 3


# ---- judges --------------------------------------------------------------------


def test_complete_voice_to_voice_and_answered() -> None:
    call = tm.Observed(frames(3.2, 5.0), [(3.2, event("agent_text", turn=0, text="Paris."))],
                       end=6.0)
    assert tm.judge_complete(call, 2.8) == {"v2v_ms": 400.0, "answered": True}
    silent = tm.Observed([], [], end=6.0)
    assert tm.judge_complete(silent, 2.8) == {"v2v_ms": None, "answered": False}


def _hesitation(audible: list[float], events: list[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    call = tm.Observed(audible, events, end=10.0)
    # First half ends at 1.0 s, the second half is said over 1.8-3.0 s.
    return tm.judge_hesitation(call, 1.0, 1.8, 3.0, ("moon", "far"))


def test_hesitation_answered_once_when_the_agent_waits() -> None:
    judged = _hesitation(frames(3.5, 6.0), [
        (3.3, event("user_transcript", turn=0, text="Could you tell me how far the moon is?")),
        (3.5, event("agent_text", turn=0, text="About 384,000 km."))])
    assert not judged["cut_off"] and judged["answered_once"]
    assert judged["v2v_ms"] == 500.0


def test_hesitation_cut_off_by_audio_in_the_pause() -> None:
    judged = _hesitation(frames(1.6, 2.2) + frames(3.5, 6.0), [
        (1.5, event("user_transcript", turn=0, text="Could you tell me")),
        (1.6, event("agent_text", turn=0, text="Sure!")),
        (3.3, event("user_transcript", turn=1, text="how far the moon is")),
        (3.5, event("agent_text", turn=1, text="About 384,000 km."))])
    assert judged["cut_off"] and judged["agent_in_pause"] and judged["two_turns"]
    assert not judged["answered_once"] and judged["replies"] == 2


def test_hesitation_cut_off_when_the_first_turn_is_only_the_first_half() -> None:
    # The agent was not heard in the pause, but the server had ended the turn there.
    judged = _hesitation(frames(3.5, 6.0), [
        (1.9, event("user_transcript", turn=0, text="Could you tell me")),
        (3.5, event("agent_text", turn=0, text="Tell you what?"))])
    assert judged["cut_off"] and not judged["agent_in_pause"] and judged["two_turns"]


def test_backchannel_kept_talking_through_it() -> None:
    call = tm.Observed(frames(2.0, 9.0), [(1.8, event("user_transcript", turn=0, text="Tell"))],
                       end=9.0)
    judged = tm.judge_backchannel(call, 0, 2.0, 3.2, 3.7)
    assert judged["kept_talking"] and judged["longest_gap_ms"] == 0.0
    assert not judged["new_turn"]


def test_backchannel_stopping_or_a_new_turn_is_not_kept_talking() -> None:
    stopped = tm.Observed(frames(2.0, 3.4) + frames(3.8, 9.0), [
        (3.5, event("turn_end", turn=0, interrupted=True))], end=9.0)
    judged = tm.judge_backchannel(stopped, 0, 2.0, 3.2, 3.7)
    assert not judged["kept_talking"] and judged["interrupted"]
    assert judged["longest_gap_ms"] == pytest.approx(400.0)
    answered = tm.Observed(frames(2.0, 9.0), [
        (4.5, event("user_transcript", turn=1, text="Mm-hmm.")),
        (5.0, event("agent_text", turn=1, text="Glad you agree."))], end=9.0)
    judged = tm.judge_backchannel(answered, 0, 2.0, 3.2, 3.7)
    assert not judged["kept_talking"] and judged["new_turn"]


def test_backchannel_window_ends_with_a_reply_that_ends_by_itself() -> None:
    # The reply's last word is 0.5 s after the backchannel: the silence after it is no gap.
    call = tm.Observed(frames(2.0, 4.2), [(4.3, event("turn_end", turn=0, interrupted=False))],
                       end=9.0)
    assert tm.judge_backchannel(call, 0, 2.0, 3.2, 3.7)["kept_talking"]


def test_interruption_stop_and_answer() -> None:
    call = tm.Observed(frames(2.0, 5.25) + frames(8.0, 9.0), [
        (1.9, event("user_transcript", turn=0, text="Tell me a story")),
        (5.4, event("turn_end", turn=0, interrupted=True)),
        (7.9, event("user_transcript", turn=1, text="Wait, stop. What is the capital of Spain?")),
        (8.0, event("agent_text", turn=1, text="Madrid."))], end=9.5)
    judged = tm.judge_interruption(call, 0, 5.0, ("spain",))
    assert judged["stop_ms"] == pytest.approx(260.0) and judged["answered"]
    assert judged["reply_interrupted"]
    misheard = tm.Observed(call.audible, [*call.events[:2], (
        7.9, event("user_transcript", turn=1, text="Wait, stop. What is the capital of pain?"))],
        end=9.5)
    assert not tm.judge_interruption(misheard, 0, 5.0, ("spain",))["answered"]


def test_echo_own_words_and_talking_to_itself() -> None:
    call = tm.Observed(frames(2.0, 4.0) + frames(6.0, 8.0), [
        (1.9, event("user_transcript", turn=0, text="Explain engines")),
        (4.1, event("turn_end", turn=0, interrupted=True)),
        (5.8, event("user_transcript", turn=1, text="An engine burns fuel")),
        (6.0, event("agent_text", turn=1, text="Yes, it does."))], end=9.0)
    judged = tm.judge_echo(call, 0, 1.5, 2.0)
    assert judged["self_interrupted"] and judged["own_words_turn"]
    assert judged["talking_to_itself"] and judged["own_words"] == ["An engine burns fuel"]
    clean = tm.Observed(frames(2.0, 8.0), [(8.1, event("turn_end", turn=0, interrupted=False))],
                        end=9.0)
    judged = tm.judge_echo(clean, 0, 1.5, 2.0)
    assert not judged["self_interrupted"] and judged["longest_cut_ms"] == 0.0
    cut = tm.Observed(frames(2.0, 4.0) + frames(4.5, 8.0), [], end=9.0)
    assert tm.judge_echo(cut, 0, 1.5, 2.0)["self_interrupted"]


def test_noise_phantom_replies_per_minute() -> None:
    call = tm.Observed(frames(10.0, 12.0) + frames(40.0, 41.0), [
        (10.0, event("agent_text", turn=0, text="Pardon?"))], end=60.0)
    judged = tm.judge_noise(call, 0.0)
    assert judged["phantom_replies"] == 2 and judged["per_minute"] == 2.0
    assert tm.judge_noise(tm.Observed([], [], end=30.0), 0.0)["per_minute"] == 0.0


# ---- figures ----------------------------------------------------------------------


def _record(scenario: str, **measures: Any) -> dict[str, Any]:
    return {"scenario": scenario, "index": 0, "error": None, "measures": measures}


def test_summary_rates_and_the_targets_table() -> None:
    records = [
        _record("hesitation", cut_off=True, agent_in_pause=True, two_turns=False,
                answered_once=False, v2v_ms=900.0),
        _record("hesitation", cut_off=False, agent_in_pause=False, two_turns=False,
                answered_once=True, v2v_ms=700.0),
        _record("complete", v2v_ms=400.0, answered=True),
        _record("interruption", stop_ms=None, observed_ms=9000.0, answered=False),
        _record("echo_interrupt", stop_ms=None, observed_ms=None, answered=True,
                reply_over_first=True),
        {"scenario": "backchannel", "index": 1, "error": "no reply within 30 s"},
    ]
    summary = bt.summarize_trials(records)
    assert summary["hesitation"]["cut_off"] == {"n": 2, "hits": 1, "rate": 0.5}
    assert summary["hesitation"]["v2v_ms"]["n"] == 1  # cut-off trials left out
    assert summary["interruption"]["stop_ms"]["p50"] == 9000.0  # never stopped: a bound
    assert summary["backchannel"]["kept_talking"]["rate"] is None
    assert summary["errors"] == ["backchannel #1: no reply within 30 s"]
    lines = "\n".join(bt.table(summary))
    assert "50%" in lines and "MISS" in lines and "ok" in lines
    assert summary["echo"]["stop_ms"]["n"] == 0 and "already stopped by its echo" in lines
    line = {"label": "x", "figures": bt.headline(summary)}
    earlier = {"when": "t", "figures": {**line["figures"], "cut_off_rate": 0.25}}
    assert any("+25 points" in t for t in bt.trend_lines(line, [earlier]))


# ---- sound ------------------------------------------------------------------------


def test_echo_path_delays_and_attenuates_the_agent() -> None:
    frames: list[ReceivedFrame] = []
    received: list[Any] = []
    path = ta.EchoPath(frames, received, origin=100.0)
    click = np.zeros(320, dtype=np.int16)
    click[0] = 20000  # played as it arrives, one 16 kHz sample late (interpolation)
    frames.append(ReceivedFrame(100.0, 20000))
    received.append(click)
    out = np.concatenate([path.next(ta.FRAME, 100.0 + k * 0.02) for k in range(15)])
    first = int(np.flatnonzero(np.abs(out) > 1)[0])
    assert abs(first / ta.RATE - 0.150) < 0.001
    peaks = [int(i) for i in np.flatnonzero(out == np.max(out))]
    assert len(peaks) == 1 and out[peaks[0]] == pytest.approx(20000 * 10 ** (-10 / 20))
    reflections = out[round(0.165 * ta.RATE):]
    assert np.max(reflections) == pytest.approx(20000 * 10 ** (-16 / 20))


def test_noise_bed_levels() -> None:
    rng = np.random.default_rng(0)
    noise = ta.colored_noise(ta.RATE * 2, rng)
    assert float(np.sqrt(np.mean(noise.astype(float) ** 2))) == pytest.approx(1.0, rel=0.01)
    response = ta.room_response(rng)
    assert response[0] == 1.0 and abs(response[-100:]).max() < 0.01


async def test_reactive_mic_mixes_speech_and_bed() -> None:
    mic = ta.ReactiveMic()
    speech = np.full(ta.FRAME, 1000, dtype=np.int16)
    mic.say(speech, ta.RATE)
    mic.play_bed(np.full(ta.FRAME * 2, 50, dtype=np.int16))
    frame = await mic.recv()
    left = frame.to_ndarray().reshape(-1)[::2]
    assert left.min() == 1050 and left.max() == 1050
    assert frame.sample_rate == ta.RATE and frame.pts == 0
    mic.stop()
