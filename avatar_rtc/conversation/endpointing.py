"""Turn segmentation over per-frame VAD probabilities: pure, clock passed in.

    IDLE --speech--> PENDING --min_speech--> SPEAKING --silence--> PAUSED --end_silence--> IDLE
                        |                       ^                     |
                        +--short blip--> IDLE   +------speech---------+

PAUSED is where speculation happens: the utterance so far is final unless the user
speaks again, so the pipeline may start on it (SpeechPaused) and is thrown away on
SpeechResumed. EndOfTurn carries exactly the audio SpeechPaused carried.

How long a pause must last to end the turn: end_silence_ms, unless a verdict on the
pause comes (`decides`: an end-of-turn model and the pause's words, turn_end.py). Then
the pause waits for it, up to incomplete_end_silence_ms: "complete" ends the turn at
once, "unsure" after end_silence_ms, "incomplete" after incomplete_end_silence_ms.

The end of speech is dated to the arrival of the last voiced sample, not to the frame
where the VAD noticed silence (two or three 32 ms frames later): every latency the
server reports starts where the caller stopped talking.
"""

from __future__ import annotations

import collections
import enum
import math
from dataclasses import dataclass

import numpy as np

from avatar_rtc.backends.base import Pcm
from avatar_rtc.conversation.turn_end import Verdict
from avatar_rtc.settings import TurnSettings, VadSettings

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512
FRAME_MS = FRAME_SAMPLES * 1000 / SAMPLE_RATE  # 32 ms

# A pending onset that stays quiet this long was a blip, not the start of speech.
# Long enough to bridge the comma in "Wait, stop" (Piper pauses 530 ms there): its
# speech on both sides counts together, and an agent paused for it does not resume
# in between. A cough pauses the agent for about this long.
_BLIP_GAP_MS = 800.0
# A sample is voiced above this share of the speech's recent peak (-26 dB) and this floor:
# well above a microphone's noise, below the fading end of a word.
_VOICED_SHARE = 0.05
_VOICED_FLOOR = 200
# How far back from the first silent frame the last voiced sample is looked for:
# Silero goes on saying "speech" for a few frames after it ends.
_LOOKBACK_FRAMES = 8


@dataclass(frozen=True)
class EndpointConfig:
    threshold: float = 0.5
    neg_threshold: float = 0.35
    min_speech_ms: float = 200.0
    end_silence_ms: float = 320.0
    max_utterance_s: float = 20.0
    preroll_ms: float = 200.0
    pause_after_ms: float = 96.0  # 0: never emit SpeechProbable
    # Someone who just interrupted the agent often pauses mid-thought ("Stop, ... let
    # me ask something else"): their turn ends only after this much silence.
    barge_in_end_silence_ms: float = 800.0
    # A verdict comes for every pause (`Endpointer.verdict`); until then it waits.
    decides: bool = False
    incomplete_end_silence_ms: float = 2000.0

    @classmethod
    def from_settings(cls, vad: VadSettings, turn: TurnSettings | None = None,
                      *, decides: bool = False) -> EndpointConfig:
        turn = turn or TurnSettings()
        return cls(
            threshold=vad.threshold,
            neg_threshold=vad.neg_threshold,
            min_speech_ms=vad.min_speech_ms,
            end_silence_ms=vad.end_silence_ms,
            max_utterance_s=vad.max_utterance_s,
            preroll_ms=vad.preroll_ms,
            pause_after_ms=vad.barge_in_pause_ms,
            barge_in_end_silence_ms=vad.barge_in_end_silence_ms,
            decides=decides,
            incomplete_end_silence_ms=turn.incomplete_end_silence_ms,
        )


@dataclass(frozen=True)
class SpeechProbable:
    """Some speech, not yet enough to count: the agent may hold its audio."""

    at: float


@dataclass(frozen=True)
class SpeechFalseStart:
    """The onset died out before min_speech: a cough or a "mhm"."""

    at: float


@dataclass(frozen=True)
class SpeechStarted:
    at: float


@dataclass(frozen=True)
class SpeechPaused:
    audio: Pcm
    at: float  # receipt time of the first silent frame
    speech_end_at: float  # receipt time of the last voiced sample
    pause: int = 0  # names this pause to `Endpointer.verdict`


@dataclass(frozen=True)
class SpeechResumed:
    at: float


@dataclass(frozen=True)
class EndOfTurn:
    audio: Pcm
    speech_end_at: float
    at: float
    forced: bool  # max utterance length reached, no pause before it


Event = SpeechProbable | SpeechFalseStart | SpeechStarted | SpeechPaused | SpeechResumed | EndOfTurn


class _State(enum.Enum):
    IDLE = "idle"
    PENDING = "pending"
    SPEAKING = "speaking"
    PAUSED = "paused"


def _frames(ms: float) -> int:
    return max(1, math.ceil(ms / FRAME_MS - 1e-9))


class Endpointer:
    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self._min_speech = _frames(config.min_speech_ms)
        self._end_silence = _frames(config.end_silence_ms)
        self._barge_in_end_silence = max(self._end_silence,
                                         _frames(config.barge_in_end_silence_ms))
        self._incomplete_end_silence = max(self._barge_in_end_silence,
                                           _frames(config.incomplete_end_silence_ms))
        self._pauses = 0
        self._pause_after = _frames(config.pause_after_ms) if config.pause_after_ms > 0 else 0
        self._blip_gap = _frames(_BLIP_GAP_MS)
        self._max_frames = _frames(config.max_utterance_s * 1000)
        self._preroll: collections.deque[Pcm] = collections.deque(
            maxlen=max(0, round(config.preroll_ms / FRAME_MS))
        )
        self._reset()

    def _reset(self) -> None:
        self._state = _State.IDLE
        self._utterance: list[Pcm] = []
        self._arrivals: list[float] = []  # receipt time of each utterance frame
        self._last_speech = 0  # index of the last frame at or above threshold
        self._speech_frames = 0
        self._gap = 0
        self._silence = 0
        self._pause_index = 0
        self._speech_end_at = 0.0
        self._probable_sent = False
        self._end_silence_now = self._end_silence  # this utterance's usual one
        self._pause_limit = self._end_silence  # the pause in progress's

    @property
    def in_speech(self) -> bool:
        """True from a confirmed start until the turn ends (pauses included)."""
        return self._state in (_State.SPEAKING, _State.PAUSED)

    def hold_turn_open(self) -> None:
        """This utterance interrupted the agent: it ends only after
        barge_in_end_silence_ms of silence (the next one is back to end_silence_ms)."""
        self._end_silence_now = self._barge_in_end_silence

    @property
    def hearing_speech(self) -> bool:
        """True while speech is coming in (a pending onset or a confirmed one, not a pause)."""
        return self._state in (_State.PENDING, _State.SPEAKING)

    @property
    def speaking_frames(self) -> int:
        """Frames of the utterance so far while the user is speaking (not paused), else 0."""
        return len(self._utterance) if self._state is _State.SPEAKING else 0

    def utterance_audio(self) -> Pcm:
        """The utterance so far (preroll included), for a transcript ahead of its end."""
        return self._audio(len(self._utterance))

    def feed(self, frame: Pcm, probability: float, now: float) -> list[Event]:
        if frame.shape != (FRAME_SAMPLES,):
            raise ValueError(f"endpointing frames are {FRAME_SAMPLES} samples")
        speech = probability >= self.config.threshold
        silent = probability < self.config.neg_threshold
        events: list[Event] = []
        state = self._state

        if state is _State.IDLE:
            if not speech:
                self._preroll.append(frame)
                return events
            self._state = _State.PENDING
            self._utterance = [*self._preroll, frame]
            # Preroll frames arrived one frame apart, before this one.
            self._arrivals = [now - (len(self._preroll) - i) * FRAME_MS / 1000
                              for i in range(len(self._preroll))] + [now]
            self._last_speech = len(self._utterance) - 1
            self._preroll.clear()
            self._speech_frames, self._gap = 1, 0
            self._check_pending(events, now)
            return events

        self._utterance.append(frame)
        self._arrivals.append(now)
        if speech:
            self._last_speech = len(self._utterance) - 1
        if len(self._utterance) >= self._max_frames:
            return self._too_long(events, now)
        if state is _State.PENDING:
            if speech:
                self._speech_frames += 1
                self._gap = 0
            elif silent:
                self._gap += 1
            if self._gap >= self._blip_gap:
                if self._probable_sent:
                    events.append(SpeechFalseStart(now))
                tail = self._utterance[-self._preroll.maxlen :] if self._preroll.maxlen else []
                self._reset()
                self._preroll.extend(tail)
                return events
            self._check_pending(events, now)
        elif state is _State.SPEAKING:
            if silent:
                self._state = _State.PAUSED
                self._silence = 1
                self._pause_index = len(self._utterance) - 1  # the silent frame is excluded
                self._speech_end_at = self._last_voiced_at()
                self._pauses += 1
                self._pause_limit = (self._incomplete_end_silence if self.config.decides
                                     else self._end_silence_now)
                events.append(SpeechPaused(self._audio(self._pause_index), now,
                                           self._speech_end_at, self._pauses))
        elif state is _State.PAUSED:
            if speech:
                self._state = _State.SPEAKING
                events.append(SpeechResumed(now))
            else:
                self._silence += 1
                if self._silence >= self._pause_limit:
                    self._end_turn(events, now)
        return events

    def verdict(self, pause: int, verdict: Verdict, now: float) -> list[Event]:
        """The verdict on pause `pause` (from its SpeechPaused): ignored once the user
        spoke on or the turn ended."""
        events: list[Event] = []
        if self._state is not _State.PAUSED or pause != self._pauses:
            return events
        if verdict is Verdict.COMPLETE:
            self._pause_limit = 0
        elif verdict is Verdict.UNSURE:
            self._pause_limit = self._end_silence_now
        else:
            self._pause_limit = self._incomplete_end_silence
        if self._silence >= self._pause_limit:
            self._end_turn(events, now)
        return events

    def _end_turn(self, events: list[Event], now: float) -> None:
        audio = self._audio(self._pause_index)
        events.append(EndOfTurn(audio, self._speech_end_at, now, forced=False))
        self._reset()

    def _too_long(self, events: list[Event], now: float) -> list[Event]:
        """The utterance reached max_utterance_s, whatever the probabilities do."""
        state = self._state
        if state is _State.PENDING:
            # Never confirmed as speech (e.g. stuck between the thresholds): drop it.
            if self._probable_sent:
                events.append(SpeechFalseStart(now))
        elif state is _State.PAUSED:
            # The pause is the end: the speculative turn's audio is the turn's audio.
            audio = self._audio(self._pause_index)
            events.append(EndOfTurn(audio, self._speech_end_at, now, forced=False))
        else:
            audio = self._audio(len(self._utterance))
            events.append(EndOfTurn(audio, now, now, forced=True))
        self._reset()
        return events

    def _check_pending(self, events: list[Event], now: float) -> None:
        due = self._pause_after and self._speech_frames >= self._pause_after
        if due and not self._probable_sent:
            self._probable_sent = True
            events.append(SpeechProbable(now))
        if self._speech_frames >= self._min_speech:
            self._state = _State.SPEAKING
            events.append(SpeechStarted(now))

    def _last_voiced_at(self) -> float:
        """When the last voiced sample before the pause arrived: the last loud sample
        of the frames before it, else the end of the last speech frame."""
        first = max(0, self._pause_index - _LOOKBACK_FRAMES)
        recent = self._utterance[first : self._pause_index]
        peak = max((int(np.abs(f.astype(np.int32)).max(initial=0)) for f in recent), default=0)
        level = max(_VOICED_FLOOR, _VOICED_SHARE * peak)
        for index in range(self._pause_index - 1, first - 1, -1):
            loud = np.flatnonzero(np.abs(self._utterance[index].astype(np.int32)) >= level)
            if loud.size:
                after = FRAME_SAMPLES - 1 - int(loud[-1])
                return self._arrivals[index] - after / SAMPLE_RATE
        return self._arrivals[self._last_speech]

    def _audio(self, frames: int) -> Pcm:
        if frames <= 0:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._utterance[:frames])

    def reset(self) -> None:
        self._reset()
        self._preroll.clear()
