"""Talk over the agent's reply, heard out: a backchannel, or an interruption?

"mm-hmm", "yeah", "okay", a laugh or a cough over a reply mean "go on"; "wait", "no",
a question mean "stop". The agent pauses at the first sound of the user (so a real
interruption silences it at once), then quick transcripts of the overlap decide:

- a word that stops a speaker ("wait", "stop", "no", "what", "can"...): an interruption;
- only backchannels or nothing heard, or other words once the user paused: the reply
  resumes (ducked while the user still talks), and the overlap stays under watch;
- other words while the user still talks: the reply stays paused;
- talk longer than `long_ms` with words that are not backchannels, or longer than
  `max_ms` whatever its words: an interruption;
- the overlap over before that: a backchannel, an event and not a turn.

Only a stop word interrupts a short overlap because Whisper mishears a quarter second
of a backchannel as often as not (tiny.en heard "Mm-hmm" as "in a man", "right" as
"write", "I see" as "I say"), while it hears "wait", "stop" and "no" reliably from
their first 250 ms. A quick transcript of that much speech costs tiny.en ~30-50 ms of
one idle core: the reply resumes ~250 ms after it paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from avatar_rtc.backends.base import Pcm, SpeechToText
from avatar_rtc.backends.priority import Priority
from avatar_rtc.conversation.endpointing import FRAME_MS, SAMPLE_RATE

log = logging.getLogger(__name__)

# Words that tell the speaker to go on, and the sounds Whisper writes for a laugh or a
# cough on its own ("(laughs)", "[coughing]" are dropped with their brackets).
_GOES_ON = frozenset(re.findall(r"\S+", """
    mm mmm mhm mm-hmm mmhmm hmm hm uh-huh uhhuh uh-uh uh huh um umm ah aha oh ooh wow
    yeah yea yes yep yup ya okay ok alright all right sure right i see got it gotcha
    cool nice great good fine true exactly indeed interesting really totally absolutely
    definitely of course thank thanks you and so
"""))
# Words that open an interruption: the agent stops for them at once.
_STOPS = frozenset(re.findall(r"\S+", """
    wait stop no nope hold hang sorry excuse pardon hey listen actually but however
    what what's why how who where when which can could would will tell let let's please
    cancel enough quiet shut hello hi
"""))
_BRACKETED = re.compile(r"[\[(*][^\])*]*[\])*]")
_WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")


def content_words(text: str) -> list[str] | None:
    """The words of `text` that ask the agent to stop (not backchannels or fillers);
    None when nothing was heard."""
    words = _WORD.findall(_BRACKETED.sub(" ", text.lower()).replace("’", "'"))
    if not words:
        return None
    return [w for w in words if w not in _GOES_ON]


def stop_words(words: list[str] | None) -> list[str]:
    """The words of `words` (content_words) that open an interruption."""
    return [w for w in words or [] if w in _STOPS]


class OverlapVerdict(enum.Enum):
    GOES_ON = "goes_on"  # heard so far: nothing that stops the agent
    INTERRUPTION = "interruption"
    BACKCHANNEL = "backchannel"  # over, and nothing in it stopped the agent


@dataclass(frozen=True)
class OverlapConfig:
    enabled: bool = True
    # Counted from the agent's pause (after vad.barge_in_pause_ms of speech).
    first_check_ms: float = 64.0  # speech before the first quick transcript
    check_every_ms: float = 128.0
    long_ms: float = 700.0  # longer overlaps interrupt if they say more than backchannels
    max_ms: float = 1100.0  # longer overlaps interrupt whatever they say
    duck_db: float = -10.0


Sink = Callable[[OverlapVerdict, str], None]


class OverlapJudge:
    """One overlap at a time: quick transcripts while it lasts, a last one at its end."""

    def __init__(self, stt: SpeechToText, config: OverlapConfig, on_verdict: Sink,
                 *, agent_words: Callable[[], set[str]] = set) -> None:
        self._stt = stt
        # What the agent said last: heard back in the overlap, they are its own echo.
        self._agent_words = agent_words
        self._config = config
        self._on_verdict = on_verdict
        self._first = max(1, round(config.first_check_ms / FRAME_MS))
        self._every = max(1, round(config.check_every_ms / FRAME_MS))
        self._long = max(1, round(config.long_ms / FRAME_MS))
        self._max = max(self._long, round(config.max_ms / FRAME_MS))
        self._task: asyncio.Task[None] | None = None
        self._active = False
        self._due = 0
        self._frames = 0  # of speech since the overlap started
        self._generation = 0  # a transcript of an older state of the overlap is moot
        self._over = False  # the overlap ended (its silence lasted): the verdict is due
        self._pending = False  # its last transcript is on the way
        self._paused = False  # the user paused in it
        self.text = ""  # the latest transcript

    @property
    def active(self) -> bool:
        return self._active

    def start(self) -> None:
        self.cancel()
        self._active, self._due, self._frames, self.text = True, self._first, 0, ""
        self._over = self._pending = self._paused = False

    def frame(self, audio: Callable[[], Pcm]) -> None:
        """A frame of the overlap while the user speaks (`audio`: all of it so far): a
        quick transcript when one is due and none is running."""
        if not self._active:
            return
        self._frames += 1
        speech_frames = self._frames
        if speech_frames >= self._max and not self._echo_only(self.text):
            # Long talk, unless all it said was the agent's own words (its echo).
            self._decide(OverlapVerdict.INTERRUPTION, self.text)
            return
        running = self._task is not None and not self._task.done()
        if speech_frames >= self._due and not running:
            self._due = speech_frames + self._every
            self._transcribe(audio(), final=False)

    def ended(self, audio: Pcm) -> None:
        """The overlap paused: a transcript of all of it."""
        if self._active:
            self.cancel(keep_active=True)
            self._pending = self._paused = True
            self._transcribe(audio, final=True)

    def resumed(self) -> None:
        """The user spoke on before that transcript came: it is moot."""
        if self._active:
            self._pending = self._paused = False
            self.cancel(keep_active=True)

    def finish(self) -> None:
        """The pause lasted (the endpointer ended the utterance): a backchannel, unless
        the transcript of all of it, when it comes, stops the agent. Deciding only now
        lets "Wait, ... stop" be heard whole."""
        if self._active:
            self._over = True
            if not self._pending:
                self._decide(OverlapVerdict.BACKCHANNEL, self.text)

    def _echo_only(self, text: str) -> bool:
        words = content_words(text) or []
        return bool(words) and set(words) <= self._agent_words()

    def _heard(self, text: str) -> list[str] | None:
        """The words of `text` that are neither backchannels nor the agent's own echo."""
        words = content_words(text)
        if not words:
            return words
        own = self._agent_words()
        return [w for w in words if w not in own]

    def _transcribe(self, audio: Pcm, *, final: bool) -> None:
        self._generation += 1
        self._task = asyncio.create_task(self._hear(audio, final, self._generation),
                                         name="overlap-transcript")

    async def _hear(self, audio: Pcm, final: bool, generation: int) -> None:
        try:
            # The agent is paused until it comes: as urgent as a turn's transcript, and
            # partial (a loop on so little audio is dropped, not decoded again).
            transcript = await self._stt.transcribe(audio, SAMPLE_RATE, partial=True,
                                                    priority=Priority(urgent=True))
            text = transcript.text
        except Exception as exc:  # unheard: the length of the overlap decides
            log.warning("overlap transcript failed: %s", exc)
            text = ""
        if generation != self._generation or not self._active:
            return
        self.text = text
        if final:
            self._pending = False
        heard = self._heard(text)
        if stop_words(heard) or (self._frames >= self._long and heard):
            self._decide(OverlapVerdict.INTERRUPTION, text)
        elif self._over:
            self._decide(OverlapVerdict.BACKCHANNEL, text)
        elif not heard or self._paused:
            # Backchannels, nothing, or a short sound already over: the reply goes on.
            # Other words while the user still talks keep it paused.
            self._on_verdict(OverlapVerdict.GOES_ON, text)

    def _decide(self, verdict: OverlapVerdict, text: str) -> None:
        self._active = False
        self.cancel()
        self._on_verdict(verdict, text)

    def cancel(self, *, keep_active: bool = False) -> None:
        self._generation += 1
        self._active = self._active and keep_active
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None

    async def aclose(self) -> None:
        task = self._task
        self.cancel()
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await task
