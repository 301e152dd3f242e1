"""Turn-taking benchmark: does the agent let people finish, keep talking through
"mm-hmm", stop when interrupted, ignore its own echo and the TV, and answer fast?

Starts `avatar-rtc serve` (or uses --url), then runs scenarios, one call per trial and
one caller at a time, each caller an aiortc peer whose microphone mixes in real time
what it says (espeak-ng voices, never the agent's), the agent's echo and a room's
noise (tools/turns_audio.py). Measured on the client's clock (tools/turns_measure.py):

  complete      a whole question: voice-to-voice = last voiced sample sent -> first
                audible agent frame received; answered = that audio and a reply text
  hesitation    a question in two halves, 0.5-1.2 s apart: cut off = the agent heard
                before the second half starts, or the server's first transcript lacks
                the second half / two user turns; answered once = exactly one reply,
                starting after the second half; voice-to-voice from the second half
  backchannel   "mm-hmm" 1.2 s into a long reply: kept talking = no inaudible stretch
                over 300 ms from 200 ms before its onset to 2 s after it (or the
                reply's natural end), the reply not ended as interrupted, no new turn
  interruption  "Wait, stop. What is the capital of Spain?" 1.2 s into a long reply:
                stop = first voiced sample sent -> start of the agent's first 200 ms
                of quiet; answered = a new turn whose transcript holds the key word,
                and a reply to it
  echo          a speakerphone without echo cancelling (the agent's audio back 150 ms
                later at -10 dB, with reflections): echo_only = a long reply, nothing
                said: self-interruption = turn ended as interrupted, a user turn (its
                own words), or a cut over 300 ms mid-reply; echo_interrupt = the same
                plus a real interruption: stop as above
  noise_tv      nobody talks for 60 s over room noise and a distant TV: phantom
                replies per minute (server turns that spoke, or bursts of agent audio)

`--callers N` (N > 1) adds N concurrent callers asking complete questions: their
voice-to-voice p90. Prints the rates beside their targets and the change from the
last run with the same label; writes every trial's raw measurements to
bench-results/turns-<time>.json and one line (kind "turns") to
bench-results/history.jsonl, the file tools/bench also writes.

    tools/bench-turns                              # ~10 minutes, all scenarios
    tools/bench-turns --quick                      # 1 trial each, 20 s of TV
    tools/bench-turns --scenarios hesitation,backchannel --repeat 3
    tools/bench-turns --callers 4 -- --vad-end-silence-ms 500
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # its siblings, also when imported

from bench import (  # noqa: E402  tools/bench.py, beside this script
    ProcessStats,
    cpu_times,
    host_shares,
    previous_runs,
    start_server,
    wait_ready,
)
from turns_audio import (  # noqa: E402
    VOICES,
    RoomCaller,
    espeak_missing,
    noise_bed,
    silence,
    speak,
    trimmed,
)
from turns_measure import (  # noqa: E402
    FRAME_S,
    POST_BACKCHANNEL_S,
    Observed,
    bursts,
    judge_backchannel,
    judge_complete,
    judge_echo,
    judge_hesitation,
    judge_interruption,
    judge_noise,
    of_type,
    turn_end,
)

from avatar_rtc.caller import AUDIBLE_PEAK, RATE, CallerError, Utterance  # noqa: E402
from avatar_rtc.replay.measure import audible_at  # noqa: E402
from avatar_rtc.replay.summary import spread  # noqa: E402
from media.latency import set_audio_prefetch  # noqa: E402
from media.resample import Pcm  # noqa: E402
from signaling.ice import restrict_host_addresses  # noqa: E402

KIND = "turns"  # history.jsonl lines of this bench (tools/bench's have no "kind")
SCENARIOS = ("complete", "hesitation", "backchannel", "interruption", "echo_only",
             "echo_interrupt", "noise_tv")
GROUPS = {"echo": ("echo_only", "echo_interrupt")}  # --scenarios echo = both
# Trials per scenario when --repeat is not given: the whole run about 10 minutes.
DEFAULT_REPEAT = {"complete": 10, "hesitation": 10, "backchannel": 8, "interruption": 8,
                  "echo_only": 6, "echo_interrupt": 6, "noise_tv": 1}
CONCURRENT_REPEAT = 5  # complete questions per concurrent caller

QUESTIONS = [
    "What is the capital of France?", "How many legs does a spider have?",
    "Can you recommend a good book?", "Why is the sky blue?",
    "How do I make a cup of tea?", "What is the tallest mountain in the world?",
    "How far away is the sun?", "What should I cook for dinner tonight?",
    "Who painted the Mona Lisa?", "What is the biggest animal on earth?",
]
# (first half, second half, words of the second half a transcript of both has)
HESITATIONS = [
    ("Could you tell me", "how far away the moon is?", ("moon", "far")),
    ("I was wondering", "what the capital of Spain is.", ("spain", "capital", "capitol")),
    ("What do you think about", "going to the beach tomorrow?", ("beach", "tomorrow")),
    ("So I need", "a recipe for pancakes.", ("recipe", "pancakes", "pancake")),
    ("Can you explain", "why the sky is blue?", ("sky", "blue")),
    ("I would like to know", "what time it is in Tokyo.", ("tokyo", "time")),
    ("Do you happen to know", "what the biggest animal is?", ("animal", "biggest")),
    ("My question is", "how tall the Eiffel Tower is.", ("eiffel", "tower", "tall")),
    ("Tell me please", "what I should eat for breakfast.", ("breakfast", "eat")),
    ("I forgot", "how many days are in a leap year.", ("leap", "days", "year", "many")),
]
LONG_PROMPTS = [
    "Tell me a long story about a dragon and a knight.",
    "Explain how a car engine works in detail.",
    "Tell me a long story about a pirate who finds a treasure map.",
    "Explain in detail how airplanes fly.",
    "Describe in detail how bread is made, step by step.",
    "Tell me a long story about a girl who travels to the moon.",
    "Explain in detail how the human heart works.",
    "Tell me a long story about a robot who learns to paint.",
]
# (what it is, what espeak-ng is given: it reads "mm-hmm" as "em em hum")
BACKCHANNELS = [
    ("mm-hmm", "[[m@m'h@m]]"), ("uh-huh", "uh-huh"), ("yeah", "yeah"), ("okay", "okay"),
    ("right", "right"), ("sure", "sure"), ("I see", "I see"), ("got it", "got it"),
]
# (the interruption, words of its new question a transcript of it has). Each is one
# that Whisper tiny.en transcribes from these voices: "a joke instead" and "Romeo and
# Juliet" came out as "I'm joking, Ted" and "Go, go, go", measuring STT, not turns.
INTERRUPTIONS = [
    ("Wait, stop. What is the capital of Spain?", ("spain", "capital", "capitol")),
    ("No no, hold on. What time is it in Tokyo?", ("tokyo", "time")),
    ("Hold on. How many legs does a spider have?", ("spider", "legs")),
    ("Okay, stop. What should I cook for dinner tonight?", ("dinner", "cook")),
    ("Wait a second. How far away is the sun?", ("sun", "far")),
    ("Wait, wait. How do I make a cup of coffee?", ("coffee", "cup")),
    ("Stop there. What is the biggest animal in the world?", ("animal", "biggest")),
    ("Excuse me, stop. Can you recommend a good movie?", ("movie", "recommend")),
    ("Hold on. What is the capital of Italy?", ("italy", "capital", "capitol")),
]
# What the TV across the room says.
TV_LINES = [
    "And now, the weather for the weekend.",
    "Temperatures will rise to twenty degrees on Saturday.",
    "The city council met again last night to discuss the new bridge.",
    "Stay with us, more news after the break.",
    "Our reporter is live at the stadium.",
    "The home team scored twice in the second half.",
    "Traffic is heavy on the main road this morning.",
    "Scientists have found a new species of frog in the rainforest.",
    "Prices at the supermarket went up again this month.",
    "Good evening and welcome to the show.",
]

TALK_OVER_AT_S = 1.2  # the backchannel or interruption, into the reply's first audio
LEAD_S = 0.5  # microphone silence between connecting and the first word
REPLY_TIMEOUT_S = 60.0  # for the agent to start a reply (a busy 2-core machine: 25 s seen)
SETTLE_S = 3.0  # after a reply starts: a second reply, a new turn, would show by then
ECHO_LISTEN_S = 15.0  # of a long reply with its echo on
SPEAKING_WAIT_S = 3.0  # for the agent to be audible again when it is time to talk over

T = TypeVar("T")


# ---- the plan: who says what, in which trial ------------------------------------


@dataclass(frozen=True)
class Plan:
    scenario: str
    index: int  # the trial's number within its scenario
    voice: str = ""
    text: str = ""  # the question, the long prompt, a hesitation's first half
    second: str = ""  # a hesitation's second half, the backchannel, the interruption
    second_speech: str = ""  # what espeak-ng is given for `second`, when it differs
    keys: tuple[str, ...] = ()  # words that show the server heard `second`
    pause_s: float = 0.0  # between a hesitation's halves
    seconds: float = 0.0  # noise_tv: how long nobody talks
    echo: bool = False


def pauses(count: int, low: float = 0.5, high: float = 1.2) -> list[float]:
    """`count` pauses spread evenly over [low, high] (one: the middle)."""
    if count == 1:
        return [round((low + high) / 2, 3)]
    return [round(float(p), 3) for p in np.linspace(low, high, count)]


def pick(items: Sequence[T], index: int, offset: int) -> T:
    return items[(index + offset) % len(items)]


def scenario_plans(scenario: str, count: int, noise_s: float, seed: int = 0) -> list[Plan]:
    """The trials of one scenario: texts and voices change from trial to trial; the
    same seed gives the same plans, so runs compare like for like."""
    offset = seed + SCENARIOS.index(scenario) if scenario in SCENARIOS else seed
    plans = []
    gaps = pauses(count)
    for i in range(count):
        plan = Plan(scenario=scenario, index=i, voice=pick(VOICES, i, offset))
        if scenario in ("complete", "concurrent"):
            plan = replace(plan, text=pick(QUESTIONS, i, seed))
        elif scenario == "hesitation":
            first, second, keys = pick(HESITATIONS, i, seed)
            plan = replace(plan, text=first, second=second, keys=keys, pause_s=gaps[i])
        elif scenario == "backchannel":
            said, speech = pick(BACKCHANNELS, i, seed)
            plan = replace(plan, text=pick(LONG_PROMPTS, i, seed), second=said,
                           second_speech=speech)
        elif scenario in ("interruption", "echo_interrupt"):
            over, keys = pick(INTERRUPTIONS, i, seed)
            plan = replace(plan, text=pick(LONG_PROMPTS, i, seed + 3), second=over, keys=keys,
                           echo=scenario == "echo_interrupt")
        elif scenario == "echo_only":
            plan = replace(plan, text=pick(LONG_PROMPTS, i, seed + 5), echo=True)
        elif scenario == "noise_tv":
            plan = replace(plan, seconds=noise_s)
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
        plans.append(plan)
    return plans


def parse_scenarios(text: str) -> list[str]:
    """`a,b` -> the scenarios in the bench's order; a group name stands for its members."""
    asked: set[str] = set()
    for name in (part.strip() for part in text.split(",") if part.strip()):
        if name in GROUPS:
            asked.update(GROUPS[name])
        elif name in SCENARIOS:
            asked.add(name)
        else:
            known = ", ".join([*SCENARIOS, *GROUPS])
            raise ValueError(f"unknown scenario {name!r} (known: {known})")
    return [s for s in SCENARIOS if s in asked]


# ---- running one trial ---------------------------------------------------------


async def until(check: Callable[[], T | None], timeout_s: float,
                caller: RoomCaller | None = None) -> T | None:
    """Poll `check` every 50 ms until it gives something, or None after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found is not None or time.monotonic() >= deadline:
            return found
        if caller is not None:
            caller.check_live()
        await asyncio.sleep(0.05)


async def sleep_until(at: float) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))


def audible(caller: RoomCaller) -> list[float]:
    return [f.at for f in caller.frames if f.peak >= AUDIBLE_PEAK]


def observed(caller: RoomCaller) -> Observed:
    return Observed(audible=audible(caller), events=list(caller.events), end=time.monotonic())


async def said(caller: RoomCaller, pcm: Pcm) -> Utterance:
    return await finished(caller, caller.say(pcm, RATE))


async def finished(caller: RoomCaller, utterance: Utterance) -> Utterance:
    """`utterance` once all of it was sent, with its voiced samples' times."""
    await utterance.done.wait()
    caller.check_live()  # not cut short by the end of the call
    if utterance.speech_start_at is None or utterance.speech_end_at is None:
        raise CallerError("an utterance had no voiced sample")
    return utterance


async def first_reply(caller: RoomCaller, question: Utterance) -> tuple[float, int | None]:
    """The first audible frame after the question, and the server turn it answers."""
    assert question.speech_end_at is not None and question.speech_start_at is not None
    try:
        heard = await caller.wait_agent_audio(after=question.speech_end_at,
                                              timeout_s=REPLY_TIMEOUT_S)
    except TimeoutError:
        raise CallerError(f"no reply within {REPLY_TIMEOUT_S:.0f} s") from None
    start = question.speech_start_at
    found = await until(lambda: next((e for _, e in of_type(caller.events, "user_transcript",
                                                            start)), None), 3.0)
    return heard, None if found is None else int(found.get("turn", -1))


async def talk_over(caller: RoomCaller, heard: float, turn: int | None,
                    pcm: Pcm) -> tuple[Utterance, bool]:
    """Say `pcm` TALK_OVER_AT_S into the reply, while the agent is audible (not into the
    pause between two sentences, which would time a stop that already happened). Also
    says whether the reply had ended by then (a short one, or cut by its own echo)."""
    await sleep_until(heard + TALK_OVER_AT_S)
    await until(lambda: True if audible_at(audible(caller)[-1:], time.monotonic(), FRAME_S)
                else None, SPEAKING_WAIT_S)
    over_first = turn_end(caller.events, turn) is not None
    utterance = caller.say(pcm, RATE)
    # Its first voiced sample sent, or the call over (nothing is sent then).
    await until(lambda: True if utterance.voiced.is_set() or utterance.done.is_set()
                else None, 60.0, caller)
    caller.check_live()
    if utterance.speech_start_at is None:
        raise CallerError("the utterance had no voiced sample")
    return utterance, over_first


async def run_complete(caller: RoomCaller, plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    question = await said(caller, speak(plan.text, plan.voice))
    end = question.speech_end_at
    assert end is not None
    try:
        await caller.wait_agent_audio(after=end, timeout_s=REPLY_TIMEOUT_S)
        await caller.wait_event("agent_text", after=end, timeout_s=5.0)
    except TimeoutError:
        pass  # judged unanswered
    return judge_complete(observed(caller), end), {"speech_end": end}


async def run_hesitation(caller: RoomCaller,
                         plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    first = trimmed(speak(plan.text, plan.voice))
    second = trimmed(speak(plan.second, plan.voice))
    # Both halves keep 10 ms of their silence: the pause between voiced samples is pause_s.
    one = caller.say(first, RATE)
    caller.say(silence(plan.pause_s - 0.02), RATE)
    two = await said(caller, second)
    assert one.speech_end_at is not None and two.speech_start_at is not None
    assert two.speech_end_at is not None
    try:
        await caller.wait_agent_audio(after=two.speech_end_at, timeout_s=REPLY_TIMEOUT_S)
        await asyncio.sleep(SETTLE_S)
    except TimeoutError:
        pass
    measures = judge_hesitation(observed(caller), one.speech_end_at, two.speech_start_at,
                                two.speech_end_at, plan.keys)
    measures["pause_ms"] = round((two.speech_start_at - one.speech_end_at) * 1000, 1)
    return measures, {"first_start": one.speech_start_at, "first_end": one.speech_end_at,
                      "second_start": two.speech_start_at, "second_end": two.speech_end_at}


async def run_backchannel(caller: RoomCaller,
                          plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    question = await said(caller, speak(plan.text, plan.voice))
    heard, turn = await first_reply(caller, question)
    over, over_first = await talk_over(caller, heard, turn,
                                       speak(plan.second_speech or plan.second, plan.voice))
    if over_first:
        raise CallerError("the reply ended before the backchannel (too short to judge)")
    await finished(caller, over)
    onset, end = over.speech_start_at, over.speech_end_at
    assert onset is not None and end is not None
    await sleep_until(end + POST_BACKCHANNEL_S + 1.5)  # a new turn's transcript by then
    measures = judge_backchannel(observed(caller), turn, heard, onset, end)
    return measures, {"question_end": question.speech_end_at, "reply_start": heard,
                      "backchannel_start": onset, "backchannel_end": end}


async def run_interruption(caller: RoomCaller,
                           plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    question = await said(caller, speak(plan.text, plan.voice))
    heard, turn = await first_reply(caller, question)
    over, over_first = await talk_over(caller, heard, turn, speak(plan.second, plan.voice))
    await finished(caller, over)
    onset = over.speech_start_at
    assert onset is not None

    def answered() -> bool | None:
        judged = judge_interruption(observed(caller), turn, onset, plan.keys)
        return True if judged["answered"] else None

    await until(answered, REPLY_TIMEOUT_S, caller)
    await asyncio.sleep(0.5)  # the stop needs its 200 ms of quiet seen
    measures = judge_interruption(observed(caller), turn, onset, plan.keys)
    measures["reply_over_first"] = over_first
    if over_first:  # nothing to stop: it was quiet already
        measures["stop_ms"] = measures["observed_ms"] = None
    return measures, {"question_end": question.speech_end_at, "reply_start": heard,
                      "interruption_start": onset, "interruption_end": over.speech_end_at}


async def run_echo_only(caller: RoomCaller,
                        plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    question = await said(caller, speak(plan.text, plan.voice))
    heard, turn = await first_reply(caller, question)
    await until(lambda: turn_end(caller.events, turn), ECHO_LISTEN_S, caller)
    await asyncio.sleep(SETTLE_S)  # its own words, transcribed, and its reply to them
    assert question.speech_end_at is not None
    measures = judge_echo(observed(caller), turn, question.speech_end_at, heard)
    return measures, {"question_end": question.speech_end_at, "reply_start": heard}


async def run_noise(caller: RoomCaller, plan: Plan,
                    bed: Pcm) -> tuple[dict[str, Any], dict[str, Any]]:
    caller.room_mic.play_bed(bed[: round(plan.seconds * RATE)])
    start = time.monotonic()
    while time.monotonic() < start + plan.seconds:
        caller.check_live()
        await asyncio.sleep(0.5)
    return judge_noise(observed(caller), start), {"start": start}


async def run_plan(url: str, plan: Plan, bed: Pcm) -> dict[str, Any]:
    """One trial in a call of its own; what went wrong is recorded, not raised."""
    caller = RoomCaller(url, echo=plan.echo)
    record: dict[str, Any] = {"scenario": plan.scenario, "index": plan.index,
                              "plan": asdict(plan), "error": None}
    t0 = time.monotonic()
    try:
        await caller.connect()
        await asyncio.sleep(LEAD_S)
        if plan.scenario in ("complete", "concurrent"):
            measures, marks = await run_complete(caller, plan)
        elif plan.scenario == "hesitation":
            measures, marks = await run_hesitation(caller, plan)
        elif plan.scenario == "backchannel":
            measures, marks = await run_backchannel(caller, plan)
        elif plan.scenario in ("interruption", "echo_interrupt"):
            measures, marks = await run_interruption(caller, plan)
        elif plan.scenario == "echo_only":
            measures, marks = await run_echo_only(caller, plan)
        else:
            measures, marks = await run_noise(caller, plan, bed)
        record["measures"] = measures
        record["marks_s"] = {k: None if v is None else round(v - t0, 3)
                             for k, v in marks.items()}
    except (CallerError, TimeoutError) as exc:
        record["error"] = str(exc) or type(exc).__name__
    finally:
        record["events"] = [[round(at - t0, 3), event] for at, event in caller.events]
        record["audible_s"] = [[round(a - t0, 3), round(b - t0, 3)] for a, b in
                               bursts(audible(caller), t0, float("inf"), 1.5 * FRAME_S)]
        record["duration_s"] = round(time.monotonic() - t0, 2)
        await caller.close()
    return record


def trial_note(record: dict[str, Any]) -> str:
    """One line per trial while the bench runs."""
    head = f"{record['scenario']:14s} #{record['index']:<2d}"
    if record["error"]:
        return f"{head} error: {record['error']}"
    m = record["measures"]
    scenario = record["scenario"]
    if scenario in ("complete", "concurrent"):
        return f"{head} v2v {m['v2v_ms']} ms, answered {m['answered']}"
    if scenario == "hesitation":
        return (f"{head} pause {m['pause_ms']:.0f} ms: cut off {m['cut_off']}, answered once "
                f"{m['answered_once']}, v2v {m['v2v_ms']} ms, heard {m['user_texts']}")
    if scenario == "backchannel":
        return (f"{head} kept talking {m['kept_talking']} (gap {m['longest_gap_ms']} ms, "
                f"interrupted {m['interrupted']}, new turn {m['new_turn']})")
    if scenario in ("interruption", "echo_interrupt"):
        stop = "reply over first" if m["reply_over_first"] else f"stop {m['stop_ms']} ms"
        return f"{head} {stop}, answered {m['answered']}, heard {m['user_texts']}"
    if scenario == "echo_only":
        return (f"{head} self-interrupted {m['self_interrupted']} (interrupted "
                f"{m['interrupted']}, own words {m['own_words']}, cut {m['longest_cut_ms']} "
                f"ms), talking to itself {m['talking_to_itself']}")
    return f"{head} {m['phantom_replies']} phantom replies in {m['minutes']} min"


async def run_all(url: str, plans: list[Plan], concurrent: list[list[Plan]],
                  bed: Pcm) -> list[dict[str, Any]]:
    records = []
    for number, plan in enumerate(plans, 1):
        record = await run_plan(url, plan, bed)
        record["caller"] = 0
        print(f"[{number}/{len(plans)}] {trial_note(record)}", flush=True)
        records.append(record)
    if concurrent:
        async def caller_loop(index: int, mine: list[Plan]) -> list[dict[str, Any]]:
            await asyncio.sleep(index * 0.37)  # callers do not start in the same frame
            out = []
            for plan in mine:
                record = await run_plan(url, plan, bed)
                record["caller"] = index
                print(f"[caller {index}] {trial_note(record)}", flush=True)
                out.append(record)
            return out

        groups = await asyncio.gather(*(caller_loop(i, p) for i, p in enumerate(concurrent)))
        records += [r for group in groups for r in group]
    return records


# ---- the figures ------------------------------------------------------------------


def _measured(records: list[dict[str, Any]], scenario: str) -> list[dict[str, Any]]:
    return [r["measures"] for r in records if r["scenario"] == scenario and not r["error"]]


def _rate(trials: list[dict[str, Any]], key: str) -> dict[str, Any]:
    hits = sum(1 for m in trials if m.get(key))
    return {"n": len(trials), "hits": hits,
            "rate": round(hits / len(trials), 3) if trials else None}


def _values(trials: list[dict[str, Any]], key: str) -> list[float]:
    return [float(m[key]) for m in trials if m.get(key) is not None]


def _stops(trials: list[dict[str, Any]]) -> list[float]:
    """Stop times; a trial where the agent never went quiet counts with how long it
    was watched (a lower bound), so it cannot make the median look better."""
    return [float(m["stop_ms"] if m["stop_ms"] is not None else m["observed_ms"])
            for m in trials if not m.get("reply_over_first")]


def summarize_trials(records: list[dict[str, Any]]) -> dict[str, Any]:
    complete = _measured(records, "complete")
    hesitation = _measured(records, "hesitation")
    backchannel = _measured(records, "backchannel")
    interruption = _measured(records, "interruption")
    echo_only = _measured(records, "echo_only")
    echo_interrupt = _measured(records, "echo_interrupt")
    noise = _measured(records, "noise_tv")
    concurrent = _measured(records, "concurrent")
    clean = [m for m in hesitation if not m["cut_off"]]
    minutes = sum(m["minutes"] for m in noise)
    phantoms = sum(m["phantom_replies"] for m in noise)
    return {
        "errors": [f"{r['scenario']} #{r['index']}: {r['error']}" for r in records
                   if r["error"]],
        "complete": {"answered": _rate(complete, "answered"),
                     "v2v_ms": spread(_values(complete, "v2v_ms"))},
        "hesitation": {"cut_off": _rate(hesitation, "cut_off"),
                       "agent_in_pause": _rate(hesitation, "agent_in_pause"),
                       "two_turns": _rate(hesitation, "two_turns"),
                       "answered_once": _rate(hesitation, "answered_once"),
                       "v2v_ms": spread(_values(clean, "v2v_ms"))},
        "backchannel": {"kept_talking": _rate(backchannel, "kept_talking"),
                        "new_turn": _rate(backchannel, "new_turn"),
                        "interrupted": _rate(backchannel, "interrupted"),
                        "longest_gap_ms": spread(_values(backchannel, "longest_gap_ms")),
                        "gap_before_ms": spread(_values(backchannel, "gap_before_ms"))},
        "interruption": {"stop_ms": spread(_stops(interruption)),
                         "reply_over_first": _rate(interruption, "reply_over_first"),
                         "answered": _rate(interruption, "answered")},
        "echo": {"self_interruption": _rate(echo_only, "self_interrupted"),
                 "interrupted": _rate(echo_only, "interrupted"),
                 "own_words_turn": _rate(echo_only, "own_words_turn"),
                 "talking_to_itself": _rate(echo_only, "talking_to_itself"),
                 "longest_cut_ms": spread(_values(echo_only, "longest_cut_ms")),
                 "stop_ms": spread(_stops(echo_interrupt)),
                 # The reply was over (its echo had stopped it) before the interruption.
                 "reply_over_first": _rate(echo_interrupt, "reply_over_first"),
                 "answered": _rate(echo_interrupt, "answered")},
        "noise_tv": {"minutes": round(minutes, 2), "phantom_replies": phantoms,
                     "per_minute": round(phantoms / minutes, 2) if minutes else None},
        "concurrent": {"callers": len({r.get("caller") for r in records
                                       if r["scenario"] == "concurrent"}),
                       "answered": _rate(concurrent, "answered"),
                       "v2v_ms": spread(_values(concurrent, "v2v_ms"))},
    }


def headline(summary: dict[str, Any]) -> dict[str, float | None]:
    """The figures with a target (and a few beside them), flat: history.jsonl's line."""
    s = summary
    return {
        "cut_off_rate": s["hesitation"]["cut_off"]["rate"],
        "hesitation_answered_once_rate": s["hesitation"]["answered_once"]["rate"],
        "v2v_p50": s["complete"]["v2v_ms"]["p50"],
        "v2v_p90": s["complete"]["v2v_ms"]["p90"],
        "complete_answered_rate": s["complete"]["answered"]["rate"],
        "kept_talking_rate": s["backchannel"]["kept_talking"]["rate"],
        "backchannel_new_turn_rate": s["backchannel"]["new_turn"]["rate"],
        "interruption_stop_p50": s["interruption"]["stop_ms"]["p50"],
        "interruption_stop_p90": s["interruption"]["stop_ms"]["p90"],
        "interruption_answered_rate": s["interruption"]["answered"]["rate"],
        "echo_self_interruption_rate": s["echo"]["self_interruption"]["rate"],
        "echo_stop_p50": s["echo"]["stop_ms"]["p50"],
        "phantom_per_min": s["noise_tv"]["per_minute"],
        "concurrent_v2v_p90": s["concurrent"]["v2v_ms"]["p90"],
    }


# (headline key, what it is, target text, passes(value)); rates are shares of 1
TARGETS: list[tuple[str, str, str, Callable[[float], bool] | None]] = [
    ("cut_off_rate", "hesitation: cut-off rate", "<= 5%", lambda v: v <= 0.05),
    ("hesitation_answered_once_rate", "hesitation: answered once", "", None),
    ("v2v_p50", "voice-to-voice p50 (complete)", "<= 450 ms", lambda v: v <= 450),
    ("v2v_p90", "voice-to-voice p90 (complete)", "", None),
    ("complete_answered_rate", "complete: answered", "", None),
    ("kept_talking_rate", "backchannel: kept talking", ">= 90%", lambda v: v >= 0.9),
    ("backchannel_new_turn_rate", "backchannel: made a new turn", "0%", lambda v: v == 0),
    ("interruption_stop_p50", "interruption: stop p50", "<= 300 ms", lambda v: v <= 300),
    ("interruption_stop_p90", "interruption: stop p90", "", None),
    ("interruption_answered_rate", "interruption: answered", ">= 95%", lambda v: v >= 0.95),
    ("echo_self_interruption_rate", "echo: self-interruption", "<= 5%", lambda v: v <= 0.05),
    ("echo_stop_p50", "echo: stop p50", "<= 350 ms", lambda v: v <= 350),
    ("phantom_per_min", "noise/TV: phantom replies per min", "0/min", lambda v: v == 0),
    ("concurrent_v2v_p90", "N-caller voice-to-voice p90", "<= 1200 ms", lambda v: v <= 1200),
]


def show(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key.endswith("_rate"):
        return f"{value * 100:.0f}%"
    if key == "phantom_per_min":
        return f"{value:.2f}/min"
    return f"{value:.0f} ms"


def table(summary: dict[str, Any]) -> list[str]:
    """The rates beside their targets; each rate with its count of trials."""
    figures = headline(summary)
    counts = {
        "cut_off_rate": summary["hesitation"]["cut_off"],
        "hesitation_answered_once_rate": summary["hesitation"]["answered_once"],
        "complete_answered_rate": summary["complete"]["answered"],
        "kept_talking_rate": summary["backchannel"]["kept_talking"],
        "backchannel_new_turn_rate": summary["backchannel"]["new_turn"],
        "interruption_answered_rate": summary["interruption"]["answered"],
        "echo_self_interruption_rate": summary["echo"]["self_interruption"],
    }
    spreads = {"v2v_p50": summary["complete"]["v2v_ms"],
               "interruption_stop_p50": summary["interruption"]["stop_ms"],
               "echo_stop_p50": summary["echo"]["stop_ms"],
               "concurrent_v2v_p90": summary["concurrent"]["v2v_ms"]}
    lines = [f"{'':36s}{'now':>10s}  {'target':10s}  {'':4s}  trials"]
    for key, label, target, passes in TARGETS:
        value = figures[key]
        verdict = "" if passes is None or value is None else ("ok" if passes(value)
                                                               else "MISS")
        if key in counts:
            n = f"{counts[key]['hits']}/{counts[key]['n']}"
        elif key in spreads:
            n = f"n={spreads[key]['n']}"
        else:
            n = ""
        if key == "concurrent_v2v_p90":
            label = f"{summary['concurrent']['callers'] or 'N'}-caller voice-to-voice p90"
        if key == "echo_stop_p50" and summary["echo"]["reply_over_first"]["hits"]:
            n += f" (+{summary['echo']['reply_over_first']['hits']} already stopped by its echo)"
        if key == "phantom_per_min" and value is not None:
            n = f"{summary['noise_tv']['phantom_replies']} in {summary['noise_tv']['minutes']} min"
        lines.append(f"{label:36s}{show(key, value):>10s}  {target:10s}  {verdict:4s}  {n}")
    return lines


def details(summary: dict[str, Any]) -> list[str]:
    s = summary
    h, b, e, i = s["hesitation"], s["backchannel"], s["echo"], s["interruption"]

    def ms3(sp: dict[str, Any]) -> str:
        return "/".join("-" if sp[k] is None else f"{sp[k]:.0f}" for k in ("p50", "p90", "max"))

    return [
        f"hesitation: agent heard in the pause {h['agent_in_pause']['hits']}, first half a "
        f"turn of its own {h['two_turns']['hits']} (of {h['cut_off']['n']}); v2v after the "
        f"second half p50/p90/max {ms3(h['v2v_ms'])} ms (trials not cut off)",
        f"backchannel: longest gap p50/p90/max {ms3(b['longest_gap_ms'])} ms; the reply's "
        f"own before it {ms3(b['gap_before_ms'])} ms; ended as interrupted "
        f"{b['interrupted']['hits']}/{b['interrupted']['n']}",
        f"echo only: interrupted {e['interrupted']['hits']}, own words as a turn "
        f"{e['own_words_turn']['hits']}, talking to itself {e['talking_to_itself']['hits']} "
        f"(of {e['self_interruption']['n']}); longest cut p50/p90/max "
        f"{ms3(e['longest_cut_ms'])} ms",
        f"echo + interruption: answered {e['answered']['hits']}/{e['answered']['n']}, the "
        f"reply already stopped by its echo {e['reply_over_first']['hits']} (no stop time); "
        f"interruption: the reply over before it {i['reply_over_first']['hits']}"
        f"/{i['reply_over_first']['n']}",
    ]


def trend_lines(line: dict[str, Any], earlier: list[dict[str, Any]]) -> list[str]:
    """The change from the last run of this bench with the same label (and --quick or
    not: one trial each is no baseline for a full run)."""
    mine = [e for e in earlier if isinstance(e.get("figures"), dict)
            and bool(e.get("quick")) == bool(line.get("quick"))]
    if not mine:
        return ["bench-turns: no earlier run with this label (and --quick or not) to "
                "compare with"]
    last = mine[-1]
    out = [f"bench-turns: against the last run labelled {line['label']!r} ({last['when']})"]
    for key, now in line["figures"].items():
        before = last["figures"].get(key)
        if now is None or before is None:
            continue
        if key.endswith("_rate"):
            change = f"{(now - before) * 100:+.0f} points"
        elif key == "phantom_per_min":
            change = f"{now - before:+.2f}"
        else:
            change = f"{(now - before) / before * 100:+.1f}%" if before else ""
        out.append(f"  {key:32s}{show(key, now):>10s}  last {show(key, before):>10s}  {change}")
    return out


# ---- main -------------------------------------------------------------------------


def repeats_for(scenarios: list[str], repeat: int | None, quick: bool) -> dict[str, int]:
    """Trials per scenario; noise_tv is one trial, as long as --noise-s says."""
    if quick:
        return dict.fromkeys(scenarios, 1)
    return {s: 1 if s == "noise_tv" else (repeat or DEFAULT_REPEAT[s]) for s in scenarios}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="bench a running server instead of starting one")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated, from: " + ", ".join([*SCENARIOS, *GROUPS]))
    parser.add_argument("--repeat", type=int, help="trials per scenario (default: about 10 "
                        "minutes in all); noise_tv runs once, --noise-s long")
    parser.add_argument("--callers", type=int, default=1,
                        help="N > 1: also N concurrent callers asking complete questions")
    parser.add_argument("--quick", action="store_true",
                        help="one trial of each scenario, 20 s of noise_tv")
    parser.add_argument("--noise-s", type=float, help="noise_tv's length (60; 20 --quick)")
    parser.add_argument("--seed", type=int, default=0, help="another set of texts and voices")
    parser.add_argument("--label", default="embedded-default", help="backend set, for the log")
    parser.add_argument("--jitter-frames", type=int, default=2, metavar="N",
                        help="the caller's receive buffer in 20 ms frames (as tools/bench)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("server_args", nargs="*",
                        help="extra `avatar-rtc serve` flags after --, e.g. -- --llm-n-threads 1")
    args = parser.parse_args()
    try:
        scenarios = parse_scenarios(args.scenarios)
    except ValueError as exc:
        parser.error(str(exc))
    if (args.repeat is not None and args.repeat < 1) or args.callers < 1:
        parser.error("--repeat and --callers must be >= 1")
    missing = espeak_missing()
    if missing:
        raise SystemExit(f"bench-turns: {missing}; tools/bench-turns installs it")
    set_audio_prefetch(args.jitter_frames)
    restrict_host_addresses(["127.0.0.1"])

    noise_s = args.noise_s or (20.0 if args.quick else 60.0)
    repeats = repeats_for(scenarios, args.repeat, args.quick)
    plans = [p for s in scenarios for p in scenario_plans(s, repeats[s], noise_s, args.seed)]
    concurrent: list[list[Plan]] = []
    if args.callers > 1:
        per_caller = 1 if args.quick else (args.repeat or CONCURRENT_REPEAT)
        concurrent = [scenario_plans("concurrent", per_caller, noise_s, args.seed + i * 3)
                      for i in range(args.callers)]
    print(f"bench-turns: {len(plans)} trials ({', '.join(f'{s} {n}' for s, n in repeats.items())})"
          + (f", then {args.callers} concurrent callers" if concurrent else ""), flush=True)
    bed = noise_bed(noise_s, TV_LINES, args.seed) if "noise_tv" in scenarios else silence(0)

    server = None
    data_dir = tempfile.mkdtemp(prefix="avatar-bench-turns-")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    url = args.url
    if url is None:
        server, url = start_server(args.server_args, args.callers + 4, data_dir)
    try:
        health = wait_ready(url)
        print(f"bench-turns: {url} ready; backends {health.get('backends')}", flush=True)
        stats = ProcessStats(server.pid) if server else None
        cpu0, host0, started = (stats.cpu_s() if stats else 0.0), cpu_times(), time.monotonic()
        records = asyncio.run(run_all(url, plans, concurrent, bed))
        wall = time.monotonic() - started
        resources: dict[str, Any] = {"wall_s": round(wall, 1), **host_shares(host0, cpu_times())}
        if stats:
            resources["server_cpu_core"] = round((stats.cpu_s() - cpu0) / wall, 3)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)

    summary = summarize_trials(records)
    print(f"\n== turn-taking, {args.label} ({resources['wall_s']:.0f} s, host steal "
          f"{resources['host_steal_share']}, idle {resources['host_idle_share']})")
    print("\n".join(table(summary)))
    print("\n".join(details(summary)))
    for error in summary["errors"]:
        print(f"  error: {error}")
    record = {"when": stamp, "kind": KIND, "label": args.label,
              "backends": health.get("backends"), "server_args": args.server_args,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "repeats": repeats, "callers": args.callers, "quick": args.quick,
              "noise_s": noise_s, "seed": args.seed, "resources": resources,
              "summary": summary, "trials": records}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"turns-{stamp}.json"
    path.write_text(json.dumps(record, indent=1))
    history = args.out / "history.jsonl"
    earlier = previous_runs(history, args.label, KIND)
    line = {"when": stamp, "kind": KIND, "label": args.label, "quick": args.quick,
            "callers": args.callers, "figures": headline(summary),
            "host_steal_share": resources["host_steal_share"],
            "host_idle_share": resources["host_idle_share"]}
    with history.open("a") as out:
        out.write(json.dumps(line) + "\n")
    print()
    print("\n".join(trend_lines(line, earlier)))
    print(f"\nbench-turns: results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
