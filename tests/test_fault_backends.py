"""STT or TTS raises in the middle of a call (the real models, wrapped to fail once):
the caller hears a short apology and gets an error event, the call goes on, and the
next turn is answered."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from avatar_rtc.backends.base import BackendError, Pcm, Transcript, Voice
from avatar_rtc.backends.priority import Priority
from avatar_rtc.backends.registry import Backends
from avatar_rtc.caller import Caller
from avatar_rtc.conversation.pipeline import APOLOGY
from tests.conftest import LiveServer
from tests.speech import speak, with_silence

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


class FailingStt:
    """The real STT, but its `fail_on`-th final transcript raises."""

    def __init__(self, inner: Any, fail_on: int) -> None:
        self._inner, self._fail_on, self.finals = inner, fail_on, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def transcribe(self, pcm: Pcm, sample_rate: int, *, partial: bool = False,
                         priority: Priority | None = None) -> Transcript:
        if not partial:
            self.finals += 1
            if self.finals == self._fail_on:
                raise BackendError("stt", "injected failure")
        result: Transcript = await self._inner.transcribe(pcm, sample_rate, partial=partial,
                                                          priority=priority)
        return result


class FailingTts:
    """The real TTS, but its `fail_on`-th synthesis raises after its first audio."""

    def __init__(self, inner: Any, fail_on: int) -> None:
        self._inner, self._fail_on, self.calls = inner, fail_on, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def synthesize(self, text: str, voice: Voice, *,
                         priority: Priority | None = None) -> AsyncIterator[Pcm]:
        self.calls += 1
        failing = self.calls == self._fail_on
        async for pcm in self._inner.synthesize(text, voice, priority=priority):
            yield pcm
            if failing:
                raise BackendError("tts", "injected failure")


async def _two_turns(server: LiveServer) -> tuple[Caller, list[dict[str, Any]]]:
    """A failing first turn, then a question; returns the events but vad."""
    async with Caller(server.url) as caller:
        said = caller.say(with_silence(speak("Hello, who are you?"), 48000, 0.4, 0.0), 48000)
        await said.done.wait()
        await caller.wait_event("error", timeout_s=60)
        await caller.wait_event("agent_text", text=APOLOGY, timeout_s=60)
        await caller.wait_event("state", state="listening", after=time.monotonic(),
                                timeout_s=60)  # the apology played out
        again = caller.say(with_silence(speak("How many legs does a spider have?"), 48000,
                                        0.6, 0.0), 48000)
        await again.done.wait()
        await caller.wait_event("turn_end", after=again.speech_end_at or 0.0, timeout_s=90)
        assert caller.ended is None
    return caller, [e for _, e in caller.events if e.get("type") != "vad"]


def _last_turn_end(events: list[dict[str, Any]]) -> dict[str, Any]:
    return [e for e in events if e["type"] == "turn_end"][-1]


async def test_stt_raises_once_then_the_call_goes_on(
    real_backends: Backends, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server()
    stt = FailingStt(real_backends.stt, fail_on=1)
    server.state.backends = replace(real_backends, stt=stt)
    _, events = await _two_turns(server)
    errors = [e["message"] for e in events if e["type"] == "error"]
    assert errors == ["stt: injected failure"]
    last = _last_turn_end(events)
    assert "spider" in str(last).lower() or last["reply_text"].strip()
    assert not last["interrupted"]


async def test_tts_raises_mid_reply_then_the_call_goes_on(
    real_backends: Backends, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server()
    tts = FailingTts(real_backends.tts, fail_on=1)
    server.state.backends = replace(real_backends, tts=tts)
    caller, events = await _two_turns(server)
    errors = [e["message"] for e in events if e["type"] == "error"]
    assert errors == ["tts: injected failure"]
    first = next(e for e in events if e["type"] == "turn_end")
    assert first["spoken_text"].endswith(APOLOGY)
    assert _last_turn_end(events)["reply_text"].strip()
    stored = server.turns(caller.session_id)
    assert len(stored) == 2 and stored[1]["reply_text"].strip()
