"""The caller or the room, judged on real audio through the embedded Whisper (tiny.en).

The caller: Piper (steady: the same audio every run) or espeak-ng voices, close to
the microphone, at -20 to -26 dBFS RMS while talking. The room: its steady noise at
-45 dBFS, coughs and bursts, and a TV across it at -30 dBFS, dull and reverberant
(tests/room_audio.py). The audio is what the endpointer hands over: the utterance
with a little of the room on both sides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from avatar_rtc.backends.base import Pcm
from avatar_rtc.backends.stt_whisper import WhisperStt
from avatar_rtc.conversation.listen_ahead import as_said
from avatar_rtc.conversation.noise import Decision, NoiseConfig, NoiseFilter, Utterance
from tests.room_audio import (
    RATE,
    at_level,
    brown_noise,
    cough,
    distant,
    mix,
    pink_noise,
    room_noise,
)
from tests.speech import ESPEAK_MISSING, espeak, speak

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "Can you recommend a good book?",
    "How tall is Mount Everest?",
    "What time does the bakery open tomorrow?",
    "Tell me a joke about cats.",
    "How do I boil an egg?",
    "Why is the sky blue?",
    "What's the weather like in London today?",
    "Who wrote Romeo and Juliet?",
    "How many days are there in a leap year?",
    "Can you help me plan a trip to Spain?",
    "What should I cook for dinner tonight?",
]
TV_LINES = [
    "And now, the weather forecast for the weekend ahead.",
    "Police say the suspect fled the scene in a blue car.",
    "Stay tuned for more after these messages.",
    "The home team scored twice in the second half.",
    "Shares fell sharply on Wall Street this afternoon.",
    "I never want to see you again, she said.",
    "Scientists have discovered a new species of frog in the rainforest.",
    "Coming up next, our special report on housing prices.",
    "The minister will speak to reporters later today.",
    "Heavy rain is expected across the north tonight.",
    "Buy one, get one free, this week only at your local store.",
    "Welcome back to the show, everyone.",
    "Where were you last night?",
    "The game is tied at the end of the third quarter.",
]
# espeak-ng voice+variant: accents and timbres that are not Piper's.
ESPEAK_VOICES = ["en-us", "en-gb+f3", "en-us+m3", "en-gb-scotland+f2", "en-029+m7",
                 "en-gb-x-rp+f4"]
NORMAL_DBFS = (-20.0, -26.0)  # a close talker, RMS while talking
TV_DBFS = -30.0
# Two TVs: a speaker heard directly (the direct sound outweighs the reflections) and
# one further off, duller and more reverberant.
ROOMS: dict[str, Callable[[Pcm, int], Pcm]] = {
    "near": lambda pcm, seed: distant(pcm, TV_DBFS, seed=seed),
    "far": lambda pcm, seed: distant(pcm, TV_DBFS, cutoff_hz=3000.0, direct=0.3, seed=seed),
}


@pytest.fixture(scope="module")
def stt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WhisperStt]:
    whisper = WhisperStt("tiny.en", cache_dir=tmp_path_factory.mktemp("models"))
    yield whisper
    asyncio.run(whisper.aclose())


def in_the_room(voice: Pcm, seed: int = 0, room_dbfs: float = -45.0) -> Pcm:
    """The utterance as the endpointer hands it over: its preroll and the silence
    that ended it, with the room's noise under all of it."""
    body = np.concatenate([np.zeros(int(0.2 * RATE), np.int16), voice,
                           np.zeros(int(0.35 * RATE), np.int16)])
    return mix(body, room_noise(len(body) / RATE, room_dbfs, seed=100 + seed))


async def judged(stt: WhisperStt, judge: NoiseFilter, pcm: Pcm) -> Decision:
    """As the reply pipeline judges a turn's audio."""
    transcript = await stt.transcribe(pcm, RATE)
    return judge.judge(Utterance.heard(as_said(transcript.text), pcm, transcript))


def caller(text: str, dbfs: float = -20.0, seed: int = 0) -> Pcm:
    return in_the_room(at_level(speak(text, RATE, steady=True), dbfs), seed)


def tv(text: str, room: str = "near", seed: int = 0) -> Pcm:
    return in_the_room(ROOMS[room](speak(text, RATE, steady=True), seed), seed)


def row(kind: str, text: str, d: Decision) -> str:
    u = d.utterance
    return (f"{kind:<12} {d.reason or 'accepted':<13} {u.level_dbfs:6.1f} dBFS "
            f"no_speech={u.no_speech_prob:.2f} logprob={u.avg_logprob:5.2f} "
            f"{text!r} -> {u.text!r}")


@pytest.mark.parametrize("dbfs", NORMAL_DBFS)
async def test_a_question_at_a_normal_level_is_the_caller(stt: WhisperStt, dbfs: float) -> None:
    decision = await judged(stt, NoiseFilter(NoiseConfig()),
                            caller("What is the capital of France?", dbfs))
    assert decision.accepted, decision.figures()
    assert "capital" in decision.utterance.text.lower()


async def test_a_loud_clear_yes_is_the_caller(stt: WhisperStt) -> None:
    decision = await judged(stt, NoiseFilter(NoiseConfig()), caller("Yes.", -20.0))
    assert decision.accepted and not decision.marginal, decision.figures()


@pytest.mark.parametrize("room", ROOMS)
async def test_a_distant_tv_is_not_the_caller_at_call_start(stt: WhisperStt, room: str) -> None:
    decision = await judged(stt, NoiseFilter(NoiseConfig()),
                            tv("Coming up next, our special report on housing prices.", room))
    assert decision.reason == "too_quiet", decision.figures()
    # Whisper heard the words: only the level tells the TV from the caller here.
    assert "report" in decision.utterance.text.lower()


async def test_a_distant_tv_is_not_the_caller_after_the_caller_spoke(stt: WhisperStt) -> None:
    judge = NoiseFilter(NoiseConfig())
    assert (await judged(stt, judge, caller("Can you recommend a good book?"))).accepted
    decision = await judged(stt, judge, tv("Welcome back to the show, everyone."))
    assert not decision.accepted and decision.caller_dbfs is not None, decision.figures()


async def test_a_louder_tv_is_not_a_loud_caller(stt: WhisperStt) -> None:
    """A TV above the floor is still far below a caller who speaks up."""
    judge = NoiseFilter(NoiseConfig())
    assert (await judged(stt, judge, caller("How tall is Mount Everest?", -12.0))).accepted
    line = speak("Stay tuned for more after these messages.", RATE, steady=True)
    loud_tv = in_the_room(distant(line, -25.0))
    decision = await judged(stt, judge, loud_tv)
    assert decision.reason == "below_caller", decision.figures()


NOISES: dict[str, Callable[[int], Pcm]] = {
    "a noisy room": lambda seed: room_noise(2.0, -35.0, seed),
    "a cough": lambda seed: in_the_room(cough(-20.0, seed), seed),
    "two coughs": lambda seed: in_the_room(np.concatenate(
        [cough(-15.0, seed), np.zeros(RATE // 3, np.int16), cough(-18.0, seed + 1)]), seed),
    "a pink noise burst": lambda seed: in_the_room(pink_noise(0.6, -25.0, seed), seed),
    "a brown noise burst": lambda seed: in_the_room(brown_noise(0.8, -20.0, seed), seed),
}


@pytest.mark.parametrize("noise", NOISES)
async def test_noise_is_not_the_caller(stt: WhisperStt, noise: str) -> None:
    """tiny.en often writes words for noise ("I'm gonna get it."), but is sure there
    was no speech and unsure of the words; at call start and once the caller spoke."""
    for seed in range(2):
        for caller_spoke in (False, True):
            judge = NoiseFilter(NoiseConfig())
            if caller_spoke:
                judge.judge(Utterance("Why is the sky blue?", -18.0, 0.1, -0.2))
            decision = await judged(stt, judge, NOISES[noise](seed + 10 * caller_spoke))
            assert not decision.accepted, decision.figures()


async def heard(stt: WhisperStt, pcm: Pcm) -> Utterance:
    transcript = await stt.transcribe(pcm, RATE)
    return Utterance.heard(as_said(transcript.text), pcm, transcript)


async def measure(stt: WhisperStt, callers: list[tuple[str, Pcm]],
                  tvs: list[tuple[str, Pcm]]) -> None:
    """Every question is the caller and every TV line is not: at call start, and after
    the caller asked something else."""
    asked = [(label, await heard(stt, pcm)) for label, pcm in callers]
    said = [(label, await heard(stt, pcm)) for label, pcm in tvs]
    rows, wrong = [], []
    for when in ("start", "later"):
        for kind, utterances, expected in (("caller", asked, True), ("tv", said, False)):
            for i, (label, utterance) in enumerate(utterances):
                judge = NoiseFilter(NoiseConfig())
                if when == "later":  # the caller asked something else first
                    assert judge.judge(asked[(i + 1) % len(asked)][1]).accepted
                decision = judge.judge(utterance)
                rows.append(line := row(f"{kind} {when}", label, decision))
                if decision.accepted != expected:
                    wrong.append(line)
    print("", *rows, sep="\n")
    assert not wrong, "\n".join(wrong)


async def test_questions_are_the_caller_and_tv_lines_are_not(stt: WhisperStt) -> None:
    """The measured set: 12 questions at -20 and -26 dBFS, 14 TV lines in two rooms."""
    callers = [(f"{text} ({dbfs:.0f})", caller(text, dbfs, seed=i))
               for i, text in enumerate(QUESTIONS) for dbfs in NORMAL_DBFS]
    tvs = [(f"{text} ({room})", tv(text, room, seed=i))
           for i, text in enumerate(TV_LINES) for room in ROOMS]
    await measure(stt, callers, tvs)


@pytest.mark.skipif(ESPEAK_MISSING, reason="espeak-ng is not installed")
async def test_in_other_voices_too(stt: WhisperStt) -> None:
    """The same in espeak-ng's voices: accents and timbres that are not Piper's."""
    def voice(i: int) -> str:
        return ESPEAK_VOICES[i % len(ESPEAK_VOICES)]

    callers = [(f"{text} ({voice(i)}, {dbfs:.0f})",
                in_the_room(at_level(espeak(text, voice(i), RATE), dbfs), i))
               for i, text in enumerate(QUESTIONS) for dbfs in NORMAL_DBFS]
    tvs = [(f"{text} ({voice(i + 1)}, {room})",
            in_the_room(ROOMS[room](espeak(text, voice(i + 1), RATE), i), i))
           for i, text in enumerate(TV_LINES) for room in ROOMS]
    await measure(stt, callers, tvs)
