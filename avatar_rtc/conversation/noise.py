"""Is a finished utterance the caller talking to the agent, or the room? Pure.

The VAD hears any voice: a TV across the room, a radio, people talking nearby. Once
Whisper has transcribed the utterance, four things tell the caller from the room:

- level: the caller is close to the microphone. An utterance far below the caller's
  own speech level, learned from this call's accepted turns, is someone else; before
  the caller has spoken, an absolute floor stands in for it;
- Whisper's own confidence: its no-speech probability, and the mean log probability
  of the words it wrote;
- Whisper's stock phrases on noise and silence ("Thank you.", "Thanks for watching!",
  "[Music]", subtitle credits), learned from the video subtitles it was trained on;
- words: an utterance that is marginal on level or confidence must say more than a
  word or two to count ("Yes." said clearly counts).

A rejected utterance gets no reply and no turn; the decision says why, for the log
and a counter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

import numpy as np

from avatar_rtc.backends.base import Pcm, Transcript
from avatar_rtc.settings import NoiseSettings

_FRAME = 320  # 20 ms at 16 kHz: a syllable spans several
# The voiced part: frames within this of the loudest ones (as ITU-T P.56's active
# speech level counts what is within ~16 dB of the speech) ...
_ACTIVE_RANGE_DB = 16.0
# ... and this far above the quietest ones, the room between words: a quiet voice
# over noise is measured on its voice, not on the noise.
_ABOVE_ROOM_DB = 6.0
_SILENT_DBFS = -100.0  # the level of digital silence


def speech_level_dbfs(pcm: Pcm) -> float:
    """The RMS level of the utterance's voiced part, dBFS (a full-scale sine: -3)."""
    usable = len(pcm) - len(pcm) % _FRAME
    if usable == 0:
        return _SILENT_DBFS
    frames = pcm[:usable].astype(np.float32).reshape(-1, _FRAME)
    # On the event loop: one pass, no float64 copy (~1 ms for 20 s).
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / (_FRAME * 32768.0**2)
    # Percentiles, not the extremes: one click must not set the scale.
    top, room = (float(p) for p in np.percentile(power, [95, 10]))
    if top <= 10 ** (_SILENT_DBFS / 10):
        return _SILENT_DBFS
    threshold = max(top * 10 ** (-_ACTIVE_RANGE_DB / 10), room * 10 ** (_ABOVE_ROOM_DB / 10))
    active = power[power >= min(threshold, top)]
    return 10 * math.log10(float(np.mean(active)))


@dataclass(frozen=True)
class NoiseConfig:
    enabled: bool = True
    # Measured on synthetic rooms (tests/test_noise_whisper.py): a caller at -26 dBFS
    # RMS while talking, the quiet end of normal, measures -23.7 to -25.5 here; a TV
    # across the room at -30, -28.3 to -29.5 (reverberation fills its pauses).
    floor_dbfs: float = -27.0
    below_caller_db: float = 12.0  # a caller's own turns vary by a few dB
    marginal_db: float = 3.0
    # Whisper's own rule: no speech where it says so (above max_no_speech_prob) and it
    # is unsure of the words it wrote (here: the utterance is marginal). tiny.en gives
    # room noise and bursts 0.73-0.96 at -1.5 to -2.6; a clear "Yes." up to 0.7, but
    # at -0.7 to -0.9.
    max_no_speech_prob: float = 0.6
    # Below Whisper's -1.0 (where it would decode again): tiny.en writes real questions
    # in accents it knows less at -1.0 to -1.3.
    min_avg_logprob: float = -1.5
    marginal_avg_logprob: float = -1.0
    min_words: int = 1  # "Yes." said clearly is a turn
    marginal_min_words: int = 3

    @classmethod
    def from_settings(cls, noise: NoiseSettings) -> NoiseConfig:
        return cls(**{f.name: getattr(noise, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class Utterance:
    """What the decision reads of an utterance."""

    text: str
    level_dbfs: float  # speech_level_dbfs of its audio
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0

    @classmethod
    def heard(cls, text: str, audio: Pcm, transcript: Transcript) -> Utterance:
        """`text`: the transcript's words as the conversation takes them."""
        return cls(text, speech_level_dbfs(audio), transcript.no_speech_prob,
                   transcript.avg_logprob)


@dataclass(frozen=True)
class Decision:
    utterance: Utterance
    # Why it is not the caller, one word for a counter's label: empty, hallucination,
    # too_quiet, below_caller, no_speech, low_confidence, too_few_words; "" if it is.
    reason: str
    limit_dbfs: float  # the level it had to reach
    caller_dbfs: float | None  # the caller's level before it, once known
    marginal: bool  # quiet or unsure: it needs marginal_min_words

    @property
    def accepted(self) -> bool:
        return not self.reason

    def figures(self) -> str:
        """For the log line."""
        u = self.utterance
        caller = "-" if self.caller_dbfs is None else f"{self.caller_dbfs:.1f}"
        return (f"level={u.level_dbfs:.1f} dBFS limit={self.limit_dbfs:.1f} caller={caller} "
                f"no_speech={u.no_speech_prob:.2f} logprob={u.avg_logprob:.2f} "
                f"marginal={self.marginal}")


def _normalized(text: str) -> str:
    # Letters of every script: a Chinese utterance is words too.
    return " ".join(re.sub(r"[^\w' ]+|_", " ", text.lower()).split())


_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+")


def word_count(text: str) -> int:
    """Words, where Chinese or Japanese (written without spaces) counts a word for
    every two characters, about a word's worth of speech."""
    normalized = _normalized(text)
    cjk = sum(len(run) for run in _CJK_RUN.findall(normalized))
    rest = _CJK_RUN.sub(" ", normalized).split()
    return len(rest) + (max(1, cjk // 2) if cjk else 0)


# Whisper's phrases on noise, music and silence: the sign-offs and credits of the
# subtitled videos it learned from, and fillers. A caller who really says "Thank you."
# or "Bye." needs no reply either. Matched against the whole utterance, normalized.
_STOCK_PHRASES = frozenset(_normalized(p) for p in (
    "you", "Thank you.", "Thank you very much.", "Thank you so much.", "Thanks.",
    "Thank you for watching.", "Thanks for watching!", "Thank you for watching!",
    "Thanks for watching and see you next time.", "Thank you for listening.",
    "Please subscribe.", "Please subscribe to my channel.", "Subscribe to my channel.",
    "Like and subscribe.", "Don't forget to like and subscribe.",
    "See you next time.", "See you in the next video.", "Bye.", "Bye bye.", "Bye-bye.",
    "Goodbye.", "Oh.", "Hmm.", "Mm.", "Uh.", "Um.", "Ah.", "So.", "The end.",
))
# Credits, alone or tacked on: "Subtitles by the Amara.org community".
_CREDITS = re.compile(
    r"\b(subtitles?|captions?|transcription|transcribed|translated|translation)\s+by\b"
    r"|amara\.org|castingwords|\bwww\.", re.IGNORECASE)
# Sound tags rather than words: "[Music]", "(upbeat music)", "*applause*", "♪".
_TAGS = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪")


def is_stock_phrase(text: str) -> bool:
    """Whisper's words for an utterance that held none."""
    if _CREDITS.search(text):
        return True
    words = _normalized(_TAGS.sub(" ", text))
    return not words or words in _STOCK_PHRASES


class NoiseFilter:
    """One call's judge: it learns the caller's level from the utterances it accepts."""

    def __init__(self, config: NoiseConfig) -> None:
        self._config = config
        self.caller_dbfs: float | None = None

    def judge(self, utterance: Utterance) -> Decision:
        c = self._config
        limit = c.floor_dbfs
        if self.caller_dbfs is not None:
            limit = max(limit, self.caller_dbfs - c.below_caller_db)
        marginal = (utterance.level_dbfs < limit + c.marginal_db
                    or utterance.avg_logprob < c.marginal_avg_logprob)
        decision = Decision(utterance, self._reason(utterance, limit, marginal), limit,
                            self.caller_dbfs, marginal)
        if decision.accepted:
            self._learn(utterance.level_dbfs)
        return decision

    def _reason(self, u: Utterance, limit: float, marginal: bool) -> str:
        c = self._config
        if not u.text.strip():
            return "empty"
        if not c.enabled:
            return ""
        if is_stock_phrase(u.text):  # "...", "♪" too: no words at all
            return "hallucination"
        if u.level_dbfs < limit:
            return "too_quiet" if limit == c.floor_dbfs else "below_caller"
        if u.no_speech_prob > c.max_no_speech_prob and marginal:
            return "no_speech"
        if u.avg_logprob < c.min_avg_logprob:
            return "low_confidence"
        words = word_count(u.text)
        if words < (c.marginal_min_words if marginal else c.min_words):
            return "too_few_words"
        return ""

    def _learn(self, level: float) -> None:
        """Up fast, down slowly: a quiet aside, or a loud TV heard before the caller
        spoke, moves the caller's level little once the caller's voice was heard."""
        if self.caller_dbfs is None:
            self.caller_dbfs = level
        else:
            rate = 0.5 if level > self.caller_dbfs else 0.2
            self.caller_dbfs += rate * (level - self.caller_dbfs)
