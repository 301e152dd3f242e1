"""Endpointer: the turn state machine on synthetic probabilities, then on real speech
through the real Silero VAD."""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import pytest

from avatar_rtc.backends.vad_silero import SileroVad
from avatar_rtc.conversation.endpointing import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    EndOfTurn,
    EndpointConfig,
    Endpointer,
    Event,
    SpeechFalseStart,
    SpeechPaused,
    SpeechProbable,
    SpeechResumed,
    SpeechStarted,
)
from avatar_rtc.conversation.turn_end import Verdict
from avatar_rtc.settings import TurnSettings, VadSettings
from tests.speech import speak, with_silence

pytestmark = pytest.mark.timeout(60)

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE  # 32 ms
Pcm = npt.NDArray[np.int16]

# Default config in frames: min_speech 200 ms -> 7, end_silence 320 ms -> 10,
# pause_after 96 ms -> 3, blip gap 800 ms -> 25, preroll 200 ms -> 6 frames.
MIN_SPEECH = 7
END_SILENCE = 10
PAUSE_AFTER = 3
BLIP_GAP = 25
PREROLL = 6


class Driver:
    """Feeds an Endpointer one frame per probability on a fake clock.

    Frame k holds the constant value k + 1 (never zero), so the audio an event
    carries says exactly which frames it is made of. Frame k arrives at
    (k + 1) * 32 ms: the receipt time of its last sample.
    """

    def __init__(self, config: EndpointConfig | None = None) -> None:
        self.ep = Endpointer(config or EndpointConfig())
        self.count = 0
        self.events: list[tuple[int, Event]] = []

    @staticmethod
    def frame(k: int) -> Pcm:
        return np.full(FRAME_SAMPLES, k + 1, dtype=np.int16)

    @staticmethod
    def time(k: int) -> float:
        return (k + 1) * FRAME_S

    def feed(self, probabilities: Iterable[float]) -> list[tuple[int, Event]]:
        new: list[tuple[int, Event]] = []
        for p in probabilities:
            k = self.count
            self.count += 1
            new.extend((k, e) for e in self.ep.feed(self.frame(k), p, self.time(k)))
        self.events.extend(new)
        return new

    def of(self, kind: type[Event]) -> list[tuple[int, Event]]:
        return [(k, e) for k, e in self.events if isinstance(e, kind)]


def frame_ids(audio: Pcm) -> list[int]:
    """Which frames (by index) an event's audio is made of."""
    assert audio.size % FRAME_SAMPLES == 0
    blocks = audio.reshape(-1, FRAME_SAMPLES)
    assert (blocks == blocks[:, :1]).all()
    return [int(v) - 1 for v in blocks[:, 0]]


def kinds(events: list[tuple[int, Event]]) -> list[str]:
    return [type(e).__name__ for _, e in events]


# -- pure state machine ------------------------------------------------------------


def test_speech_started_only_after_min_speech() -> None:
    d = Driver()
    d.feed([0.0] * 3)
    d.feed([1.0] * (MIN_SPEECH - 1))
    assert d.of(SpeechStarted) == []
    assert not d.ep.in_speech
    new = d.feed([1.0])
    assert [type(e) for _, e in new] == [SpeechStarted]
    k, started = new[0]
    assert started.at == d.time(k) == d.time(3 + MIN_SPEECH - 1)
    assert d.ep.in_speech
    # SpeechProbable came earlier, after pause_after_ms of speech, exactly once.
    probable = d.of(SpeechProbable)
    assert [k for k, _ in probable] == [3 + PAUSE_AFTER - 1]
    d.feed([1.0] * 20)
    assert len(d.of(SpeechStarted)) == 1
    assert len(d.of(SpeechProbable)) == 1


def test_the_speech_so_far_is_offered_only_while_the_user_speaks() -> None:
    d = Driver()
    d.feed([0.0] * 8 + [1.0] * (MIN_SPEECH - 1))
    assert d.ep.speaking_frames == 0  # not yet a turn
    d.feed([1.0] * 5)
    assert d.ep.speaking_frames == PREROLL + MIN_SPEECH + 4
    assert frame_ids(d.ep.utterance_audio()) == list(range(8 - PREROLL, d.count))
    d.feed([0.0])
    assert d.ep.speaking_frames == 0  # paused: the speculative turn transcribes it
    d.feed([1.0])
    assert d.ep.speaking_frames == PREROLL + MIN_SPEECH + 6


def test_a_turn_held_open_ends_after_the_longer_silence_once() -> None:
    d = Driver()
    d.feed([1.0] * (MIN_SPEECH + 2))
    d.ep.hold_turn_open()  # this speech interrupted the agent: 800 ms -> 25 frames
    d.feed([0.0] * (BLIP_GAP - 1))
    assert d.of(EndOfTurn) == []
    assert kinds(d.feed([0.0])) == ["EndOfTurn"]
    d.feed([1.0] * (MIN_SPEECH + 2))
    d.feed([0.0] * (END_SILENCE - 1))
    assert len(d.of(EndOfTurn)) == 1
    assert kinds(d.feed([0.0])) == ["EndOfTurn"]


def test_min_speech_counts_non_consecutive_speech_frames() -> None:
    # Gaps shorter than the blip gap do not reset the onset count.
    d = Driver()
    d.feed([1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    assert d.of(SpeechStarted) == []
    d.feed([1.0])
    assert [k for k, _ in d.of(SpeechStarted)] == [9]


def test_short_blip_is_a_false_start_and_no_turn() -> None:
    d = Driver()
    d.feed([0.0] * 2 + [1.0] * 4)
    assert kinds(d.events) == ["SpeechProbable"]
    d.feed([0.0] * (BLIP_GAP - 1))
    assert kinds(d.events) == ["SpeechProbable"]
    new = d.feed([0.0])
    assert kinds(new) == ["SpeechFalseStart"]
    k, false_start = new[0]
    assert isinstance(false_start, SpeechFalseStart)
    assert false_start.at == d.time(k) == d.time(2 + 4 + BLIP_GAP - 1)
    d.feed([0.0] * 50)
    assert kinds(d.events) == ["SpeechProbable", "SpeechFalseStart"]
    assert not d.ep.in_speech


def test_tiny_blip_below_pause_after_is_silent() -> None:
    d = Driver()
    d.feed([1.0] * (PAUSE_AFTER - 1) + [0.0] * 40)
    assert d.events == []


def test_pause_after_zero_never_sends_probable() -> None:
    d = Driver(EndpointConfig(pause_after_ms=0))
    d.feed([1.0] * 4 + [0.0] * 10 + [1.0] * MIN_SPEECH)
    assert kinds(d.events) == ["SpeechStarted"]


def test_pause_then_resume_when_shorter_than_end_silence() -> None:
    d = Driver()
    d.feed([1.0] * 10)
    new = d.feed([0.0])
    assert kinds(new) == ["SpeechPaused"]
    pause_k, paused = new[0]
    assert isinstance(paused, SpeechPaused)
    assert paused.at == d.time(pause_k)
    assert d.ep.in_speech  # a pause is still inside the turn
    d.feed([0.0] * (END_SILENCE - 2))  # one frame short of the end of the turn
    new = d.feed([1.0])
    assert kinds(new) == ["SpeechResumed"]
    assert new[0][1].at == d.time(new[0][0])
    assert d.of(EndOfTurn) == []
    assert d.ep.in_speech
    # The silence count starts over after a resume.
    d.feed([1.0] * 3 + [0.0] * (END_SILENCE - 1))
    assert d.of(EndOfTurn) == []
    assert kinds(d.feed([0.0])) == ["EndOfTurn"]


def test_end_of_turn_after_end_silence_carries_the_paused_audio() -> None:
    d = Driver()
    d.feed([0.0] * 2 + [1.0] * 12)
    d.feed([0.0] * (END_SILENCE - 1))
    (_, paused), = d.of(SpeechPaused)
    assert d.of(EndOfTurn) == []
    new = d.feed([0.0])
    assert kinds(new) == ["EndOfTurn"]
    k, eot = new[0]
    assert isinstance(eot, EndOfTurn) and isinstance(paused, SpeechPaused)
    assert eot.forced is False
    assert np.array_equal(eot.audio, paused.audio)
    assert eot.audio.dtype == np.int16
    assert paused.at == d.time(14)  # decided at the first silent frame
    # Speech ended with the last speech frame (these frames are too quiet to say more).
    assert eot.speech_end_at == paused.speech_end_at == d.time(13)
    assert eot.at == d.time(k) == d.time(14 + END_SILENCE - 1)
    # Preroll (frames 0-1) and the speech (2-13); no silent frame of the pause.
    assert frame_ids(eot.audio) == list(range(14))
    assert not d.ep.in_speech
    d.feed([0.0] * 40)
    assert len(d.of(EndOfTurn)) == 1


def test_end_of_turn_after_resume_carries_the_last_pause() -> None:
    d = Driver()
    d.feed([1.0] * 8 + [0.0] * 4 + [1.0] * 5 + [0.0] * END_SILENCE)
    assert kinds(d.events) == [
        "SpeechProbable", "SpeechStarted", "SpeechPaused", "SpeechResumed", "SpeechPaused",
        "EndOfTurn",
    ]
    pauses = [e for _, e in d.of(SpeechPaused)]
    (_, eot), = d.of(EndOfTurn)
    assert isinstance(eot, EndOfTurn)
    assert isinstance(pauses[1], SpeechPaused)
    assert np.array_equal(eot.audio, pauses[1].audio)
    assert pauses[1].at == d.time(17)
    assert eot.speech_end_at == pauses[1].speech_end_at == d.time(16)
    # The first pause's silence is part of the turn; the final silence is not.
    assert frame_ids(eot.audio) == list(range(17))
    assert frame_ids(pauses[0].audio) == list(range(8))


def test_max_utterance_forces_end_of_turn() -> None:
    config = EndpointConfig(max_utterance_s=1.0)  # 1000 / 32 -> 32 frames
    d = Driver(config)
    d.feed([1.0] * 31)
    assert d.of(EndOfTurn) == []
    new = d.feed([1.0])
    assert kinds(new) == ["EndOfTurn"]
    k, eot = new[0]
    assert isinstance(eot, EndOfTurn)
    assert eot.forced is True
    assert eot.at == eot.speech_end_at == d.time(k) == d.time(31)
    assert frame_ids(eot.audio) == list(range(32))
    assert not d.ep.in_speech
    # Speech that goes on starts a new turn, which needs min_speech again.
    d.feed([1.0] * (MIN_SPEECH - 1))
    assert len(d.of(SpeechStarted)) == 1
    d.feed([1.0])
    assert len(d.of(SpeechStarted)) == 2


def test_max_utterance_counts_from_the_preroll() -> None:
    d = Driver(EndpointConfig(max_utterance_s=1.0))
    d.feed([0.0] * 10 + [1.0] * (32 - PREROLL))
    (_, eot), = d.of(EndOfTurn)
    assert isinstance(eot, EndOfTurn)
    assert eot.forced
    assert frame_ids(eot.audio) == list(range(10 - PREROLL, 10 + 32 - PREROLL))


def test_preroll_frames_start_the_utterance() -> None:
    d = Driver()
    d.feed([0.0] * 10 + [1.0] * 10 + [0.0] * END_SILENCE)
    (_, eot), = d.of(EndOfTurn)
    assert isinstance(eot, EndOfTurn)
    # The last 6 silent frames (192 ms of the 200 ms preroll) come first.
    assert frame_ids(eot.audio) == list(range(10 - PREROLL, 20))


def test_preroll_shorter_than_available_and_disabled() -> None:
    d = Driver()
    d.feed([0.0] * 2 + [1.0] * 8 + [0.0] * END_SILENCE)
    (_, eot), = d.of(EndOfTurn)
    assert isinstance(eot, EndOfTurn)
    assert frame_ids(eot.audio) == list(range(10))

    d = Driver(EndpointConfig(preroll_ms=0))
    d.feed([0.0] * 10 + [1.0] * 8 + [0.0] * END_SILENCE)
    (_, eot), = d.of(EndOfTurn)
    assert isinstance(eot, EndOfTurn)
    assert frame_ids(eot.audio) == list(range(10, 18))


def test_preroll_after_false_start_keeps_the_latest_frames() -> None:
    d = Driver()
    d.feed([0.0] * 3 + [1.0] * 3 + [0.0] * BLIP_GAP)  # the blip's gap ends at frame 30
    assert kinds(d.events) == ["SpeechProbable", "SpeechFalseStart"]
    first = 6 + BLIP_GAP + 2
    d.feed([0.0] * 2 + [1.0] * 8 + [0.0] * END_SILENCE)  # speech from frame 33, 8 frames
    (_, eot), = d.of(EndOfTurn)
    assert isinstance(eot, EndOfTurn)
    assert frame_ids(eot.audio) == list(range(first - PREROLL, first + 8))


def test_hysteresis_between_thresholds() -> None:
    between = 0.42  # neg_threshold 0.35 <= p < threshold 0.5
    d = Driver()
    d.feed([between] * 50)
    assert d.events == []  # never starts
    d.feed([1.0] * MIN_SPEECH)
    assert kinds(d.events) == ["SpeechProbable", "SpeechStarted"]
    d.feed([between] * 50)
    assert kinds(d.events) == ["SpeechProbable", "SpeechStarted"]  # never ends
    assert d.ep.in_speech
    d.feed([0.0])
    assert kinds(d.events)[-1] == "SpeechPaused"


def test_hysteresis_in_pending_neither_counts_nor_gaps() -> None:
    d = Driver()
    d.feed([1.0] * 3 + [0.4] * 20)
    assert kinds(d.events) == ["SpeechProbable"]  # no false start: 0.4 is no gap
    d.feed([1.0] * (MIN_SPEECH - 4))
    assert kinds(d.events) == ["SpeechProbable"]  # 0.4 was no speech either
    d.feed([1.0])
    assert kinds(d.events) == ["SpeechProbable", "SpeechStarted"]


def test_threshold_edges() -> None:
    d = Driver()
    d.feed([0.5] * MIN_SPEECH)  # >= threshold is speech
    assert kinds(d.events)[-1] == "SpeechStarted"
    d.feed([0.35] * 30)  # == neg_threshold is not silence
    assert kinds(d.events)[-1] == "SpeechStarted"
    d.feed([0.3499])
    assert kinds(d.events)[-1] == "SpeechPaused"


def test_between_thresholds_in_a_pause_counts_as_silence() -> None:
    # In a pause, a between-thresholds frame counts as silence (no resume).
    d = Driver()
    d.feed([1.0] * 10 + [0.0] + [0.45] * (END_SILENCE - 1))
    assert kinds(d.events)[-2:] == ["SpeechPaused", "EndOfTurn"]


def test_frame_size_is_checked() -> None:
    ep = Endpointer(EndpointConfig())
    with pytest.raises(ValueError, match="512"):
        ep.feed(np.zeros(480, np.int16), 1.0, 0.0)


def test_reset_drops_a_turn_in_progress() -> None:
    d = Driver()
    d.feed([0.0] * 5 + [1.0] * 10)
    assert d.ep.in_speech
    d.ep.reset()
    assert not d.ep.in_speech
    d.feed([0.0] * 30)
    assert d.of(EndOfTurn) == []
    d.feed([1.0] * 8 + [0.0] * END_SILENCE)
    (_, eot), = d.of(EndOfTurn)
    assert isinstance(eot, EndOfTurn)
    assert frame_ids(eot.audio) == list(range(45 - PREROLL, 53))


def test_config_from_settings() -> None:
    vad = VadSettings(threshold=0.6, neg_threshold=0.4, min_speech_ms=100, end_silence_ms=500,
                      max_utterance_s=9.0, preroll_ms=64, barge_in_pause_ms=0)
    config = EndpointConfig.from_settings(vad)
    assert config == EndpointConfig(threshold=0.6, neg_threshold=0.4, min_speech_ms=100,
                                    end_silence_ms=500, max_utterance_s=9.0, preroll_ms=64,
                                    pause_after_ms=0)
    assert EndpointConfig.from_settings(VadSettings()) == EndpointConfig()
    decided = EndpointConfig.from_settings(VadSettings(), TurnSettings(
        incomplete_end_silence_ms=1500), decides=True)
    assert decided.decides and decided.incomplete_end_silence_ms == 1500


# -- verdicts on pauses ----------------------------------------------------------------

INCOMPLETE_SILENCE = 63  # 2000 ms


def paused(d: Driver) -> SpeechPaused:
    (_, pause), = d.feed([1.0] * (MIN_SPEECH + 2) + [0.0])[-1:]
    assert isinstance(pause, SpeechPaused)
    return pause


def test_a_pause_waits_for_its_verdict_then_complete_ends_the_turn_at_once() -> None:
    d = Driver(EndpointConfig(decides=True))
    pause = paused(d)
    d.feed([0.0] * (END_SILENCE + 5))  # past the usual silence: no verdict yet
    assert d.of(EndOfTurn) == []
    events = d.ep.verdict(pause.pause, Verdict.COMPLETE, 1.0)
    assert kinds([(0, e) for e in events]) == ["EndOfTurn"]
    assert isinstance(events[0], EndOfTurn) and np.array_equal(events[0].audio, pause.audio)


def test_complete_can_end_a_turn_sooner_than_the_usual_silence() -> None:
    d = Driver(EndpointConfig(decides=True))
    pause = paused(d)
    d.feed([0.0] * 2)
    assert kinds([(0, e) for e in d.ep.verdict(pause.pause, Verdict.COMPLETE, 1.0)]) == [
        "EndOfTurn"]


def test_unsure_ends_after_the_usual_silence() -> None:
    d = Driver(EndpointConfig(decides=True))
    pause = paused(d)
    d.feed([0.0] * 3)
    assert d.ep.verdict(pause.pause, Verdict.UNSURE, 1.0) == []
    d.feed([0.0] * (END_SILENCE - 5))
    assert d.of(EndOfTurn) == []
    assert kinds(d.feed([0.0])) == ["EndOfTurn"]


def test_unsure_after_the_usual_silence_ends_at_once() -> None:
    d = Driver(EndpointConfig(decides=True))
    pause = paused(d)
    d.feed([0.0] * END_SILENCE)
    assert kinds([(0, e) for e in d.ep.verdict(pause.pause, Verdict.UNSURE, 1.0)]) == [
        "EndOfTurn"]


def test_incomplete_holds_the_turn_through_a_long_pause() -> None:
    d = Driver(EndpointConfig(decides=True))
    pause = paused(d)
    assert d.ep.verdict(pause.pause, Verdict.INCOMPLETE, 1.0) == []
    d.feed([0.0] * (INCOMPLETE_SILENCE - 2))
    assert d.of(EndOfTurn) == []
    d.feed([1.0] * 3)  # the second half of the sentence
    assert kinds(d.events[-1:]) == ["SpeechResumed"]
    second = d.feed([0.0])[0][1]
    assert isinstance(second, SpeechPaused) and second.pause == pause.pause + 1
    # A late verdict on the first pause is moot.
    assert d.ep.verdict(pause.pause, Verdict.COMPLETE, 2.0) == []
    events = d.ep.verdict(second.pause, Verdict.COMPLETE, 2.0)
    assert isinstance(events[0], EndOfTurn)
    assert len(events[0].audio) > len(pause.audio)


def test_without_a_verdict_the_long_silence_ends_the_turn() -> None:
    d = Driver(EndpointConfig(decides=True))
    paused(d)
    d.feed([0.0] * (INCOMPLETE_SILENCE - 2))
    assert d.of(EndOfTurn) == []
    assert kinds(d.feed([0.0])) == ["EndOfTurn"]


def test_max_utterance_with_frame_by_frame_dips() -> None:
    d = Driver(EndpointConfig(max_utterance_s=1.0))  # 32 frames
    d.feed([1.0] * 8 + [0.0, 1.0] * 100)
    ends = [e for _, e in d.of(EndOfTurn) if isinstance(e, EndOfTurn)]
    assert ends, f"no end of turn; utterance has grown to {d.count} frames"
    # Ended at the limit (as a forced end, or at the pause it reached the limit in).
    assert all(e.audio.size <= 32 * FRAME_SAMPLES for e in ends)


def test_pending_onset_cannot_outgrow_max_utterance() -> None:
    d = Driver()  # max 20 s = 625 frames
    d.feed([1.0] + [0.4] * 1000 + [1.0] * 10 + [0.0] * END_SILENCE)
    longest = max((e.audio.size for _, e in d.events if isinstance(e, SpeechPaused | EndOfTurn)),
                  default=0)
    assert longest <= 625 * FRAME_SAMPLES


# -- real speech through the real Silero VAD ------------------------------------------

RATE = SAMPLE_RATE


@functools.cache
def spoken(text: str) -> Pcm:
    pcm: Pcm = speak(text, RATE)
    return pcm


def trimmed(pcm: Pcm) -> Pcm:
    """Piper pads its output with near-silence; cut to the voiced span."""
    first, last = voiced_span(pcm)
    return pcm[first : last + 1]


def voiced_span(pcm: Pcm) -> tuple[int, int]:
    """First and last sample above 2% of the peak."""
    level = np.abs(pcm.astype(np.int32))
    idx = np.flatnonzero(level > 0.02 * level.max())
    assert idx.size
    return int(idx[0]), int(idx[-1])


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad()


def endpoint(vad: SileroVad, pcm: Pcm) -> list[Event]:
    """The whole signal through Silero and a default Endpointer; clock = samples / 16 kHz
    at the end of each frame."""
    stream = vad.stream()
    ep = Endpointer(EndpointConfig())
    events: list[Event] = []
    for k in range(pcm.size // FRAME_SAMPLES):
        frame = pcm[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES]
        p = stream.probability(frame.astype(np.float32) / 32768)
        events.extend(ep.feed(frame, p, (k + 1) * FRAME_SAMPLES / RATE))
    return events


def offset_in(signal: Pcm, audio: Pcm) -> int:
    """Sample offset of `audio` in `signal` (it is a frame-aligned slice of it)."""
    for k in range(signal.size // FRAME_SAMPLES):
        start = k * FRAME_SAMPLES
        if np.array_equal(signal[start : start + audio.size], audio):
            return start
    raise AssertionError("end-of-turn audio is not a slice of the input")


def names(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


@pytest.mark.slow
@pytest.mark.parametrize("text", ["Could you tell me the weather in Paris tomorrow?",
                                  "Hello there."])
def test_real_utterance_is_one_turn_covering_the_speech(vad: SileroVad, text: str) -> None:
    pcm = with_silence(spoken(text), RATE, 1.0, 1.5)
    first, last = voiced_span(pcm)
    events = endpoint(vad, pcm)
    turns = [e for e in events if isinstance(e, EndOfTurn)]
    assert len(turns) == 1, names(events)
    assert len([e for e in events if isinstance(e, SpeechStarted)]) == 1
    eot = turns[0]
    assert not eot.forced
    start = offset_in(pcm, eot.audio)
    assert start <= first, f"turn starts {(start - first) / RATE:.3f}s after the speech"
    span_s = (last - first) / RATE
    assert abs(eot.audio.size / RATE - span_s) < 0.4, (eot.audio.size / RATE, span_s)
    # It covers the speech up to (near) its last voiced sample.
    assert start + eot.audio.size >= last - int(0.1 * RATE)
    # The end of speech is dated to the last voiced sample (to a few ms), and the
    # turn ends end_silence after the VAD noticed the silence (2-3 frames later).
    assert abs(eot.speech_end_at - last / RATE) < 0.04, (eot.speech_end_at, last / RATE)
    assert 9 * FRAME_S < eot.at - eot.speech_end_at < 13 * FRAME_S


@pytest.mark.slow
def test_real_sentences_apart_are_two_turns(vad: SileroVad) -> None:
    one, two = spoken("Hello there."), spoken("How are you today?")
    pcm = np.concatenate([with_silence(one, RATE, 1.0, 1.5), with_silence(two, RATE, 0.0, 1.5)])
    events = endpoint(vad, pcm)
    turns = [e for e in events if isinstance(e, EndOfTurn)]
    assert len(turns) == 2, names(events)
    first_start = offset_in(pcm, turns[0].audio)
    first_end = first_start + turns[0].audio.size
    second_start = offset_in(pcm, turns[1].audio)
    second_end = second_start + turns[1].audio.size
    # Each turn holds one whole sentence: the split lies in the 1.5 s of silence.
    one_first, one_last = voiced_span(one)
    two_first, two_last = voiced_span(two)
    two_at = RATE + one.size + int(1.5 * RATE)
    assert first_start <= RATE + one_first
    assert RATE + one_last - int(0.1 * RATE) <= first_end <= RATE + one.size + int(0.5 * RATE)
    assert RATE + one.size <= second_start <= two_at + two_first
    assert second_end >= two_at + two_last - int(0.1 * RATE)


@pytest.mark.slow
def test_real_phrases_150ms_apart_are_one_turn(vad: SileroVad) -> None:
    one, two = trimmed(spoken("I would like a coffee")), trimmed(spoken("and a croissant please."))
    gap = np.zeros(int(0.150 * RATE), np.int16)
    pcm = with_silence(np.concatenate([one, gap, two]), RATE, 1.0, 1.5)
    events = endpoint(vad, pcm)
    assert names(events).count("EndOfTurn") == 1, names(events)
    assert names(events).count("SpeechStarted") == 1, names(events)
    # Any pause inside the turn was followed by a resume.
    seq = [n for n in names(events) if n in ("SpeechPaused", "SpeechResumed", "EndOfTurn")]
    assert seq[-2:] == ["SpeechPaused", "EndOfTurn"]
    assert seq[:-2] == ["SpeechPaused", "SpeechResumed"] * ((len(seq) - 2) // 2)
    eot = next(e for e in events if isinstance(e, EndOfTurn))
    first, last = voiced_span(pcm)
    start = offset_in(pcm, eot.audio)
    assert start <= first
    assert start + eot.audio.size >= last - int(0.1 * RATE)  # both phrases


@pytest.mark.slow
def test_real_silence_and_low_noise_never_start(vad: SileroVad) -> None:
    silence = np.zeros(3 * RATE, np.int16)
    assert endpoint(vad, silence) == []
    noise = np.random.default_rng(0).normal(0.0, 100.0, 3 * RATE)
    events = endpoint(vad, np.clip(noise, -32768, 32767).astype(np.int16))
    assert not any(isinstance(e, SpeechStarted | EndOfTurn) for e in events), names(events)


@pytest.mark.slow
def test_real_speech_in_low_noise_is_still_found(vad: SileroVad) -> None:
    # The noise case above must not pass just because the VAD never fires.
    speech = with_silence(spoken("Hello there."), RATE, 1.0, 1.5)
    noise = np.random.default_rng(0).normal(0.0, 100.0, speech.size)
    pcm = np.clip(speech + noise, -32768, 32767).astype(np.int16)
    assert names(endpoint(vad, pcm)).count("EndOfTurn") == 1


@pytest.mark.slow
def test_real_resumed_event_type(vad: SileroVad) -> None:
    # A mid-turn pause is a SpeechPaused then a SpeechResumed, never an EndOfTurn.
    one, two = trimmed(spoken("Yes")), trimmed(spoken("I think so."))
    gap = np.zeros(int(0.150 * RATE), np.int16)
    events = endpoint(vad, with_silence(np.concatenate([one, gap, two]), RATE, 1.0, 1.5))
    assert names(events).count("EndOfTurn") == 1, names(events)
    resumed = [e for e in events if isinstance(e, SpeechResumed)]
    paused = [e for e in events if isinstance(e, SpeechPaused)]
    assert len(paused) == len(resumed) + 1


def test_the_end_of_speech_is_the_last_loud_sample_not_the_silent_frame() -> None:
    """Speech fades out inside frame 12; the VAD still says speech for frame 13 (its lag),
    hesitates on 14 and hears silence at 15."""
    ep = Endpointer(EndpointConfig())
    probabilities = [1.0] * 14 + [0.4] + [0.0] * END_SILENCE
    events: list[Event] = []
    for k, p in enumerate(probabilities):
        frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        if k < 12:
            frame[:] = 8000
        elif k == 12:
            frame[:300] = 8000  # the last voiced sample is the 300th of frame 12
            frame[300:] = 30  # line noise, far below the speech
        events.extend(ep.feed(frame, p, (k + 1) * FRAME_S))
    paused = next(e for e in events if isinstance(e, SpeechPaused))
    eot = next(e for e in events if isinstance(e, EndOfTurn))
    assert paused.at == pytest.approx(16 * FRAME_S)
    last_voiced_arrival = 12 * FRAME_S + 300 / SAMPLE_RATE
    assert paused.speech_end_at == pytest.approx(last_voiced_arrival)
    assert eot.speech_end_at == paused.speech_end_at
