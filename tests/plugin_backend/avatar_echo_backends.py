"""Backends another package adds to avatar_rtc: it hears one sentence, says back what
it was told, and speaks a tone per character. Each factory takes the settings and
what the process's backends share, as the built-in ones do."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from avatar_rtc.backends.base import (
    ChatMessage,
    LanguageModel,
    Pcm,
    SpeechToText,
    TextToSpeech,
    Transcript,
    Voice,
)
from avatar_rtc.backends.cpu_gate import CpuGate
from avatar_rtc.backends.factories import Shared
from avatar_rtc.backends.priority import Priority
from avatar_rtc.settings import Settings

HEARD = "What is the capital of France?"


class EchoStt:
    name = "echo-stt"

    async def transcribe(self, pcm: Pcm, sample_rate: int, *, partial: bool = False,
                         priority: Priority | None = None) -> Transcript:
        return Transcript(HEARD, "en", len(pcm) / sample_rate)

    async def warmup(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class EchoLlm:
    name = "echo-llm"

    async def stream(self, messages: list[ChatMessage], gate: CpuGate | None = None, *,
                     session: str = "", priority: Priority | None = None
                     ) -> AsyncIterator[str]:
        for word in f"You asked: {messages[-1].content}".split(" "):
            yield word + " "

    async def prefill(self, context: list[ChatMessage], user_prefix: str = "", *,
                      session: str = "") -> None:
        pass

    def release(self, session: str) -> None:
        pass

    async def warmup(self, system_prompt: str = "") -> None:
        pass

    async def aclose(self) -> None:
        pass


class ToneTts:
    name = "tone-tts"
    sample_rate = 16000

    def __init__(self, speed: float) -> None:
        self.speed = speed

    async def synthesize(self, text: str, voice: Voice, *,
                         priority: Priority | None = None) -> AsyncIterator[Pcm]:
        t = np.arange(int(len(text) * 0.02 / self.speed * self.sample_rate)) / self.sample_rate
        yield (np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16)

    def voices(self) -> list[str]:
        return ["tone"]

    def default_voice(self) -> Voice:
        return Voice(backend="tone-tts", name="tone", speed=self.speed)

    async def warmup(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def build_stt(settings: Settings, shared: Shared) -> SpeechToText:
    return EchoStt()


def build_llm(settings: Settings, shared: Shared) -> LanguageModel:
    return EchoLlm()


def build_tts(settings: Settings, shared: Shared) -> TextToSpeech:
    return ToneTts(settings.tts.speed)

