"""Listening ahead: the LLM reads the conversation while the user still speaks.

When the user starts speaking, the LLM evaluates (prefills) the conversation so far:
the last reply, or what was heard of an interrupted one. Then, every listen_ahead_ms of
speech, a partial transcript of the utterance so far gives the user's first words, and
the LLM evaluates them too. The end of the turn leaves it only the last words to read.
Both are only a head start: a failure costs the turn time, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable

from avatar_rtc.backends.base import ChatMessage, Pcm
from avatar_rtc.backends.registry import Backends
from avatar_rtc.conversation.endpointing import FRAME_MS, SAMPLE_RATE, Endpointer

log = logging.getLogger(__name__)


def as_said(transcript: str) -> str:
    """Whisper starts some transcripts lower-case, some not, even for the same words:
    the partial and the final one must agree for the LLM's cache to be reused."""
    text = transcript.strip()
    return text[:1].upper() + text[1:]


def heard_before_cut(partial: str) -> str:
    """The words a partial transcript is sure of, as the final one will begin. The
    audio ends inside a word, so the last word goes; Whisper pads a cut-off tail
    with "..." runs, so words stop at the first token without a letter or digit; the
    punctuation after the last kept word is a guess at what comes next, so it goes."""
    tokens = list(itertools.takewhile(lambda t: any(c.isalnum() for c in t), partial.split()))
    kept = " ".join(tokens[:-1]).rstrip(".,;:!?…")
    return as_said(kept)


class ListenAhead:
    """Partial transcripts and LLM prefill of one call, one of each at a time."""

    def __init__(
        self,
        backends: Backends,
        endpointer: Endpointer,
        *,
        session: str,
        context: Callable[[], list[ChatMessage]],
        every_ms: float,
        threshold: float,
    ) -> None:
        self._backends = backends
        self._endpointer = endpointer
        self._session = session
        self._context = context  # the conversation before the user's next words
        self._every = max(0, round(every_ms / FRAME_MS))  # frames; 0: no partials
        self._threshold = threshold
        self._due = 0  # utterance length (frames) of the next partial transcript
        self._words = ""  # the user's words the last prefill evaluated
        self._prefill_task: asyncio.Task[None] | None = None
        self._partial_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """A new utterance: prefill now, its first partial transcript comes
        listen_ahead_ms on."""
        self._stop_partial()
        self._due = self._endpointer.speaking_frames + self._every
        self._words = ""
        self._prefill("")

    def frame(self, probability: float) -> None:
        """Every listen_ahead_ms of speech, while a word is being said (the user is not
        about to pause), transcribes the utterance so far, one partial at a time."""
        frames = self._endpointer.speaking_frames
        if (not self._every or not frames or frames < self._due
                or probability < self._threshold
                or (self._partial_task is not None and not self._partial_task.done())):
            return
        self._due = frames + self._every
        self._partial_task = asyncio.create_task(
            self._transcribe(self._endpointer.utterance_audio()), name="listen-ahead")

    def stop(self) -> None:
        """The turn starts: prefill not started yet is dropped, as its STT needs the CPU."""
        self._stop_partial()
        self._stop_prefill()

    async def aclose(self) -> None:
        tasks = [t for t in (self._prefill_task, self._partial_task) if t is not None]
        self.stop()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _prefill(self, user_words: str) -> None:
        self._stop_prefill()
        self._prefill_task = asyncio.create_task(
            self._run_prefill(self._context(), user_words), name="llm-prefill")

    async def _run_prefill(self, context: list[ChatMessage], user_words: str) -> None:
        try:
            await self._backends.llm.prefill(context, user_words, session=self._session)
        except Exception as exc:  # only a lost head start: the turn evaluates it all
            log.warning("prefill failed: %s", exc)

    async def _transcribe(self, audio: Pcm) -> None:
        try:
            transcript = await self._backends.stt.transcribe(audio, SAMPLE_RATE, partial=True)
        except Exception as exc:  # only a lost head start
            log.warning("partial transcript failed: %s", exc)
            return
        words = heard_before_cut(transcript.text)
        if words and words != self._words:
            self._words = words
            self._prefill(words)

    def _stop_prefill(self) -> None:
        if self._prefill_task is not None:
            self._prefill_task.cancel()
            self._prefill_task = None

    def _stop_partial(self) -> None:
        if self._partial_task is not None:
            self._partial_task.cancel()
            self._partial_task = None
