"""A Conversation on fake backends and a real paced track, as the tests drive it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from avatar_rtc.conversation import events
from avatar_rtc.conversation.agent import Conversation, ConversationConfig
from avatar_rtc.conversation.endpointing import EndpointConfig
from avatar_rtc.conversation.history import History
from avatar_rtc.conversation.turn import Turn
from media import PacedAudioTrack
from tests.fakes import FakeLlm, FakeTts, fake_backends, silence, tone

CONFIG = ConversationConfig(
    endpoint=EndpointConfig(
        min_speech_ms=160, end_silence_ms=256, preroll_ms=96, pause_after_ms=64
    ),
    system_prompt="Be brief.",
)


class Harness:
    def __init__(self, conversation: Conversation, track: PacedAudioTrack) -> None:
        self.conversation = conversation
        self.track = track
        self.events: list[dict[str, Any]] = []
        self.turns: list[Turn] = []
        self.sent_frames: list[np.ndarray] = []
        self.changed = asyncio.Event()

    def record(self, event: events.Event) -> None:
        self.events.append(event.to_dict())  # as the page reads it
        self.changed.set()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def say(self, pcm: np.ndarray, chunk_ms: int = 20) -> None:
        """Feeds 16 kHz audio in real time, like the inbound track does."""
        step = 16 * chunk_ms
        for start in range(0, len(pcm), step):
            self.conversation.feed(pcm[start : start + step])
            await asyncio.sleep(chunk_ms / 1000)

    async def wait_for(self, kind: str, count: int = 1, limit_s: float = 10.0) -> None:
        async with asyncio.timeout(limit_s):
            while len(self.of_type(kind)) < count:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def harness(config: ConversationConfig = CONFIG,
                  **backend_overrides: object) -> AsyncIterator[Harness]:
    track = PacedAudioTrack()
    backends = fake_backends(**backend_overrides)
    holder: dict[str, Harness] = {}
    conversation = Conversation(
        backends,
        config,
        track,
        emit=lambda e: holder["h"].record(e),
        on_turn_finished=lambda t: holder["h"].turns.append(t),
    )
    h = Harness(conversation, track)
    holder["h"] = h
    track.add_tap(lambda pcm: h.sent_frames.append(pcm))

    async def sender() -> None:  # what aiortc's RTP sender does
        while True:
            await track.recv()

    task = asyncio.create_task(sender())
    try:
        yield h
    finally:
        await conversation.aclose()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        track.stop()


async def answer(llm: FakeLlm, config: ConversationConfig = CONFIG
                  ) -> tuple[dict[str, Any], FakeTts, History]:
    """One question and its whole reply: the turn_end event, the TTS that spoke it and
    the history after it."""
    tts = FakeTts()
    async with harness(config, llm=llm, tts=tts) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await h.wait_for("turn_end")
        end = h.of_type("turn_end")[0]
    return end, tts, h.conversation.history
