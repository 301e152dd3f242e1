"""The small interfaces every backend implements (httpx-style: inject, don't import).

The conversation only ever sees these; tests hand it fakes, the server hands it the
real models built by `avatar_rtc.backends.registry`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from avatar_rtc.backends.cpu_gate import CpuGate
from avatar_rtc.backends.priority import Priority
from avatar_rtc.errors import AvatarError

Pcm = npt.NDArray[np.int16]
"""Mono signed 16-bit PCM; the sample rate travels beside it."""


class BackendError(AvatarError):
    """A backend failed; `stage` says which (vad, stt, llm, tts)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage


@contextlib.contextmanager
def backend_errors(stage: str, prefix: str | None = None, *,
                   catch: type[Exception] | tuple[type[Exception], ...] = Exception,
                   ) -> Iterator[None]:
    """A failure inside leaves as a BackendError of `stage`, so the conversation can
    tell the user which stage failed; a BackendError passes unchanged.

    The message is the error's own, or with a `prefix` "<prefix><type>: <message>"
    (a library's bare message, such as a key, says little on its own). `catch`: the
    errors to wrap (a remote client's own); anything else passes.
    """
    try:
        yield
    except BackendError:
        raise
    except catch as exc:
        message = str(exc) if prefix is None else f"{prefix}{type(exc).__name__}: {exc}"
        raise BackendError(stage, message) from exc


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
class ToolSpec:
    """A function the model may call: its name, what it does, and its arguments as a
    JSON schema (an object)."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """The model asked for a tool; `arguments` is JSON text as the model wrote it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant message that called tools
    tool_call_id: str = ""  # a tool message: the result of this call


class CutShort(str):
    """The type of CUT_SHORT."""


class ToolCalls(str):
    """Yielded last, as an empty delta, by a LanguageModel asked with `tools` whose
    reply calls them: `calls`, in order. Text before it was said before the calls."""

    calls: tuple[ToolCall, ...]

    def __new__(cls, calls: tuple[ToolCall, ...]) -> ToolCalls:
        marker = super().__new__(cls, "")
        marker.calls = calls
        return marker


CUT_SHORT = CutShort()
"""Yielded last, as an empty delta, by a LanguageModel whose reply hit its token
limit: what follows the reply's last finished sentence is a fragment."""


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    audio_s: float
    # Whisper's own confidence, for telling speech from noise; a backend without it
    # leaves the defaults (sure speech).
    no_speech_prob: float = 0.0  # the chance that the audio holds no speech at all
    avg_logprob: float = 0.0  # mean log probability of the text's tokens (0: certain)
    # How sure the language detection was (1.0: not detected, stt.language given).
    language_probability: float = 1.0


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


class EndOfTurnModel(Protocol):
    """Judges from the sound of an utterance whether its speaker has finished."""

    name: str

    async def probability(self, pcm: Pcm, sample_rate: int, *,
                          priority: Priority | None = None) -> float:
        """How likely the utterance is finished, 0..1."""
        ...

    async def warmup(self) -> None: ...

    async def aclose(self) -> None: ...


class SpeechToText(Protocol):
    name: str

    async def transcribe(self, pcm: Pcm, sample_rate: int, *, partial: bool = False,
                         priority: Priority | None = None) -> Transcript:
        """`partial`: speech still going on, transcribed ahead of its end. Cheap and
        best effort: it waits behind every final transcript, unless its `priority` is
        urgent. `priority`: how a model thread shared with other calls ranks this
        transcript."""
        ...

    async def warmup(self) -> None: ...

    async def aclose(self) -> None: ...


class LanguageModel(Protocol):
    name: str

    def stream(
        self, messages: list[ChatMessage], gate: CpuGate | None = None, *, session: str = "",
        priority: Priority | None = None, tools: Sequence[ToolSpec] = (),
    ) -> AsyncIterator[str]:
        """Yields text deltas, then CUT_SHORT if the reply hit the token limit, or
        ToolCalls if it called some of `tools` (passed only when there are any: a model
        without tool support need not take the argument). Closing
        the iterator early (aclose or task cancellation) must stop generation on the
        backend. A local model waits at `gate` between tokens while it is held.
        `session` names the conversation (the call): a local model keeps each one's
        KV cache where it finds it next turn. `priority`: how a model thread shared
        with other calls ranks the reply (its first tokens are urgent anyway)."""
        ...

    async def prefill(self, context: list[ChatMessage], user_prefix: str = "", *,
                      session: str = "") -> None:
        """A hint that a user message will follow `context`, starting with `user_prefix`
        (the words heard so far): a local model evaluates the prompt up to there now,
        while the user speaks. Work no longer needed is dropped when the task awaiting
        this is cancelled. May do nothing."""
        ...

    def release(self, session: str) -> None:
        """The session's call ended: what a local model keeps for it may go."""
        ...

    async def warmup(self, system_prompt: str = "") -> None:
        """Loads weights and fills the KV cache with the system prompt."""
        ...

    async def aclose(self) -> None: ...


class TextToSpeech(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str, voice: Voice, *,
                   priority: Priority | None = None) -> AsyncIterator[Pcm]:
        """Yields audio pieces as they are produced; closing early stops synthesis.
        `priority`: how a model thread shared with other calls ranks this text."""
        ...

    def voices(self) -> list[str]: ...

    def default_voice(self) -> Voice: ...

    async def warmup(self) -> None: ...

    async def aclose(self) -> None: ...


def speaks(tts: TextToSpeech, voice: Voice) -> frozenset[str]:
    """The languages (Whisper's codes) `voice` speaks on `tts`. A backend without a
    `languages(voice)` method (a plugin, a test's fake) is taken to speak English only:
    it is never handed text of a script it may not read."""
    languages = getattr(tts, "languages", None)
    if languages is None:
        return frozenset({"en"})
    found: frozenset[str] = languages(voice)
    return found
