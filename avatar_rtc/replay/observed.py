"""Backends that say when they are working: the fast replay skips time only when idle."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence

from avatar_rtc.backends.base import (
    ChatMessage,
    LanguageModel,
    Pcm,
    SpeechToText,
    TextToSpeech,
    ToolSpec,
    Transcript,
    Voice,
)
from avatar_rtc.backends.cpu_gate import CpuGate
from avatar_rtc.backends.priority import Priority
from avatar_rtc.backends.registry import Backends


class Activity:
    """How many backend calls are computing right now (the fast driver's idle test)."""

    def __init__(self) -> None:
        self.working = 0


class _ObservedStt:
    def __init__(self, inner: SpeechToText, activity: Activity) -> None:
        self._inner, self._activity, self.name = inner, activity, inner.name

    async def transcribe(self, pcm: Pcm, sample_rate: int, *, partial: bool = False,
                         priority: Priority | None = None) -> Transcript:
        self._activity.working += 1
        try:
            return await self._inner.transcribe(pcm, sample_rate, partial=partial,
                                                priority=priority)
        finally:
            self._activity.working -= 1

    async def warmup(self) -> None:
        await self._inner.warmup()

    async def aclose(self) -> None:
        pass  # the caller owns the real backend


class _ObservedLlm:
    """Working from the request until the stream ends: a local model keeps generating on
    its own thread while the conversation synthesizes or holds audio."""

    def __init__(self, inner: LanguageModel, activity: Activity) -> None:
        self._inner, self._activity, self.name = inner, activity, inner.name

    async def stream(self, messages: list[ChatMessage], gate: CpuGate | None = None, *,
                     session: str = "", priority: Priority | None = None,
                     tools: Sequence[ToolSpec] = ()) -> AsyncIterator[str]:
        self._activity.working += 1
        extra = {"tools": tools} if tools else {}  # an inner model may not take them
        tokens = self._inner.stream(messages, gate, session=session, priority=priority,
                                    **extra)
        try:
            async for token in tokens:
                yield token
        finally:
            self._activity.working -= 1
            await tokens.aclose()  # type: ignore[attr-defined]

    async def prefill(self, context: list[ChatMessage], user_prefix: str = "", *,
                      session: str = "") -> None:
        await self._inner.prefill(context, user_prefix, session=session)

    def release(self, session: str) -> None:
        self._inner.release(session)

    async def warmup(self, system_prompt: str = "") -> None:
        await self._inner.warmup(system_prompt)

    async def aclose(self) -> None:
        pass


class _ObservedTts:
    """Working only while a piece is being produced: between pieces a speculative turn
    may hold its audio for the end of the user's turn, and that wait is idle time."""

    def __init__(self, inner: TextToSpeech, activity: Activity) -> None:
        self._inner, self._activity = inner, activity
        self.name, self.sample_rate = inner.name, inner.sample_rate

    async def synthesize(self, text: str, voice: Voice, *,
                         priority: Priority | None = None) -> AsyncIterator[Pcm]:
        audio = self._inner.synthesize(text, voice, priority=priority)
        try:
            while True:
                self._activity.working += 1
                try:
                    pcm = await audio.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    self._activity.working -= 1
                yield pcm
        finally:
            await audio.aclose()  # type: ignore[attr-defined]

    def voices(self) -> list[str]:
        return self._inner.voices()

    def default_voice(self) -> Voice:
        return self._inner.default_voice()

    async def warmup(self) -> None:
        await self._inner.warmup()

    async def aclose(self) -> None:
        pass


def observed(backends: Backends, activity: Activity) -> Backends:
    return dataclasses.replace(backends, stt=_ObservedStt(backends.stt, activity),
                               llm=_ObservedLlm(backends.llm, activity),
                               tts=_ObservedTts(backends.tts, activity))
