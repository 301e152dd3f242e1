"""The small interfaces every backend implements (httpx-style: inject, don't import).

The conversation only ever sees these; tests hand it fakes, the server hands it the
real models built by `avatar_rtc.backends.registry`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]
"""Mono signed 16-bit PCM; the sample rate travels beside it."""


class BackendError(RuntimeError):
    """A backend failed; `stage` says which (vad, stt, llm, tts)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage


@dataclass(frozen=True)
class Voice:
    """What a TTS backend needs to speak as a voice profile.

    Piper picks an installed voice by `name`; cloning backends use the reference clip.
    """

    backend: str = "piper"
    name: str = ""
    speed: float = 1.0
    profile_id: str | None = None
    reference_audio: str | None = None
    reference_text: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    audio_s: float


class VadStream(Protocol):
    """Per-call VAD state over a shared model."""

    frame_samples: int

    def probability(self, frame: npt.NDArray[np.float32]) -> float: ...

    def reset(self) -> None: ...


class VoiceActivityModel(Protocol):
    name: str
    sample_rate: int
    frame_samples: int

    def stream(self) -> VadStream: ...


class SpeechToText(Protocol):
    name: str

    async def transcribe(self, pcm: Pcm, sample_rate: int) -> Transcript: ...

    async def warmup(self) -> None: ...

    async def aclose(self) -> None: ...


class LanguageModel(Protocol):
    name: str

    def stream(self, messages: list[ChatMessage]) -> AsyncIterator[str]:
        """Yields text deltas. Closing the iterator early (aclose or task cancellation)
        must stop generation on the backend."""
        ...

    async def warmup(self, system_prompt: str = "") -> None:
        """Loads weights and fills the KV cache with the system prompt."""
        ...

    async def aclose(self) -> None: ...


class TextToSpeech(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str, voice: Voice) -> AsyncIterator[Pcm]:
        """Yields audio pieces as they are produced; closing early stops synthesis."""
        ...

    def voices(self) -> list[str]: ...

    def default_voice(self) -> Voice: ...

    async def warmup(self) -> None: ...

    async def aclose(self) -> None: ...
