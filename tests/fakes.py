"""Small deterministic backends for unit tests of the conversation logic.

The real models are tested in the integration tests; these only make timing and
content predictable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from avatar_rtc.backends.base import (
    CUT_SHORT,
    BackendError,
    ChatMessage,
    Pcm,
    Transcript,
    Voice,
)
from avatar_rtc.backends.cpu_gate import CpuGate
from avatar_rtc.backends.live_calls import LiveCalls
from avatar_rtc.backends.priority import Priority
from avatar_rtc.backends.registry import Backends

RATE = 16000

# A reply long enough to talk over, with no sentence said twice (a repeated sentence
# ends a reply: see Conversation._say).
LONG_REPLY = " ".join(f"Here is sentence number {i} of a long reply." for i in range(20))


def tone(seconds: float, rate: int = RATE, freq: float = 300.0, amp: float = 0.3) -> Pcm:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * amp * 32767).astype(np.int16)


def silence(seconds: float, rate: int = RATE) -> Pcm:
    return np.zeros(int(seconds * rate), dtype=np.int16)


class EnergyVadStream:
    """Speech = loud frame. Exact on synthetic tones and silence."""

    frame_samples = 512

    def probability(self, frame: npt.NDArray[np.float32]) -> float:
        return 1.0 if float(np.sqrt(np.mean(frame**2))) > 0.02 else 0.0

    def reset(self) -> None:
        pass


class EnergyVad:
    name = "energy"
    sample_rate = RATE
    frame_samples = 512

    def stream(self) -> EnergyVadStream:
        return EnergyVadStream()


@dataclass
class FakeStt:
    text: str = "Hello there"
    language: str = "en"  # as Whisper names what it heard
    delay_s: float = 0.02
    no_speech_prob: float = 0.0  # Whisper's confidence, as the transcripts report it
    avg_logprob: float = 0.0
    calls: list[int] = field(default_factory=list)  # samples of each final transcript
    partials: list[int] = field(default_factory=list)  # ... of each partial one
    priorities: list[Priority | None] = field(default_factory=list)  # of each final one
    name: str = "fake-stt"

    async def transcribe(self, pcm: Pcm, sample_rate: int, *, partial: bool = False,
                         priority: Priority | None = None) -> Transcript:
        (self.partials if partial else self.calls).append(len(pcm))
        if not partial:
            self.priorities.append(priority)
        await asyncio.sleep(self.delay_s)
        return Transcript(self.text, self.language, len(pcm) / sample_rate, self.no_speech_prob,
                          self.avg_logprob)

    async def warmup(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


@dataclass
class FakeLlm:
    reply: str = "The first sentence is here. And here is a second one."
    token_delay_s: float = 0.005
    fail: bool = False
    cut_short: bool = False  # the reply hits the token limit: CUT_SHORT comes last
    requests: list[list[ChatMessage]] = field(default_factory=list)
    prefills: list[list[ChatMessage]] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)  # the user_prefix of each prefill
    sessions: list[str] = field(default_factory=list)  # of each request and prefill
    priorities: list[Priority | None] = field(default_factory=list)  # of each request
    released: list[str] = field(default_factory=list)
    cancelled: int = 0
    completed: int = 0
    held_waits: int = 0  # times generation waited at the turn's gate
    held_s: float = 0.0  # and how long in all
    name: str = "fake-llm"

    async def stream(
        self, messages: list[ChatMessage], gate: CpuGate | None = None, *, session: str = "",
        priority: Priority | None = None,
    ) -> AsyncIterator[str]:
        """Generates in a background task, as llama.cpp does on its own thread: tokens
        keep coming whether or not the conversation is reading them."""
        self.requests.append(list(messages))
        self.sessions.append(session)
        self.priorities.append(priority)
        if self.fail:
            raise BackendError("llm", "model crashed")
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        async def produce() -> None:
            for word in self.reply.split(" "):
                await asyncio.sleep(self.token_delay_s)
                if gate is not None and not gate.is_open():
                    self.held_waits += 1
                    since = time.monotonic()
                    while not gate.is_open():  # noqa: ASYNC110 - read as llama.cpp does
                        await asyncio.sleep(0.001)
                    self.held_s += time.monotonic() - since
                queue.put_nowait(word + " ")
            if self.cut_short:
                queue.put_nowait(CUT_SHORT)
            queue.put_nowait(None)

        producer = asyncio.create_task(produce())
        finished = False
        try:
            while (token := await queue.get()) is not None:
                yield token
            finished = True
            self.completed += 1
        finally:
            producer.cancel()
            if not finished:
                self.cancelled += 1

    async def prefill(self, context: list[ChatMessage], user_prefix: str = "", *,
                      session: str = "") -> None:
        self.sessions.append(session)
        self.prefills.append(list(context))
        self.prefixes.append(user_prefix)

    def release(self, session: str) -> None:
        self.released.append(session)

    async def warmup(self, system_prompt: str = "") -> None:
        pass

    async def aclose(self) -> None:
        pass


@dataclass
class FakeTts:
    """Speaks `seconds_per_char` of a tone per character, in one piece per chunk."""

    sample_rate: int = 24000
    seconds_per_char: float = 0.04
    texts: list[str] = field(default_factory=list)
    priorities: list[Priority | None] = field(default_factory=list)  # of each text
    name: str = "fake-tts"

    delay_s: float = 0.005
    on_text: Callable[[str], None] | None = None  # called as each synthesis starts

    async def synthesize(self, text: str, voice: Voice, *,
                         priority: Priority | None = None) -> AsyncIterator[Pcm]:
        self.texts.append(text)
        self.priorities.append(priority)
        if self.on_text is not None:
            self.on_text(text)
        await asyncio.sleep(self.delay_s)
        yield tone(len(text) * self.seconds_per_char, self.sample_rate, freq=200.0)

    def voices(self) -> list[str]:
        return ["fake"]

    def default_voice(self) -> Voice:
        return Voice(backend="fake", name="fake")

    async def warmup(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def fake_backends(**kwargs: object) -> Backends:
    """`live_calls`: shared by several calls' backends, they count each other."""
    return Backends(
        vad=kwargs.get("vad", EnergyVad()),  # type: ignore[arg-type]
        stt=kwargs.get("stt", FakeStt()),  # type: ignore[arg-type]
        llm=kwargs.get("llm", FakeLlm()),  # type: ignore[arg-type]
        tts=kwargs.get("tts", FakeTts()),  # type: ignore[arg-type]
        live_calls=kwargs.get("live_calls", LiveCalls()),  # type: ignore[arg-type]
        turn=kwargs.get("turn"),  # type: ignore[arg-type]
    )
