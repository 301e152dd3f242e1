"""STT or TTS raises in the middle of a call (the real models, wrapped to fail once):
the caller hears a short apology and gets an error event, the call goes on, and the
next turn is answered."""

from __future__ import annotations

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

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


class FailingStt:
    """The real STT, but its final transcripts raise while `failing` (a tentative turn
    that fails and is then dropped would hide a single failure)."""

    def __init__(self, inner: Any) -> None:
        self._inner, self.failing = inner, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def transcribe(self, pcm: Pcm, sample_rate: int, *, partial: bool = False,
                         priority: Priority | None = None) -> Transcript:
        if not partial and self.failing:
            raise BackendError("stt", "injected failure")
        result: Transcript = await self._inner.transcribe(pcm, sample_rate, partial=partial,
                                                          priority=priority)
        return result


class FailingTts:
    """The real TTS, but while `failing` each reply's synthesis raises after its first
    audio (the apology's excepted)."""

    def __init__(self, inner: Any) -> None:
        self._inner, self.failing = inner, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def synthesize(self, text: str, voice: Voice, *,
                         priority: Priority | None = None) -> AsyncIterator[Pcm]:
        failing = self.failing and text != APOLOGY
        async for pcm in self._inner.synthesize(text, voice, priority=priority):
            yield pcm
            if failing:
                raise BackendError("tts", "injected failure")


async def _two_turns(server: LiveServer, faulty: FailingStt | FailingTts
                     ) -> tuple[Caller, list[dict[str, Any]]]:
    """A failing first turn, then a question; returns the events but vad."""
    async with Caller(server.url) as caller:
        said = caller.say(with_silence(speak("Hello, who are you?"), 48000, 0.4, 0.0), 48000)
        await said.done.wait()
        # Sent as the turn ends: the apology has played out by then.
        await caller.wait_event("error", timeout_s=90)
        faulty.failing = False
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
    stt = FailingStt(real_backends.stt)
    server.state.backends = replace(real_backends, stt=stt)
    _, events = await _two_turns(server, stt)
    errors = [e["message"] for e in events if e["type"] == "error"]
    assert errors == ["stt: injected failure"]
    assert APOLOGY in [e.get("text") for e in events if e["type"] == "agent_text"]
    last = _last_turn_end(events)
    assert "spider" in str(last).lower() or last["reply_text"].strip()
    assert not last["interrupted"]


async def test_tts_raises_mid_reply_then_the_call_goes_on(
    real_backends: Backends, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server()
    tts = FailingTts(real_backends.tts)
    server.state.backends = replace(real_backends, tts=tts)
    caller, events = await _two_turns(server, tts)
    errors = [e["message"] for e in events if e["type"] == "error"]
    assert errors == ["tts: injected failure"]
    first = next(e for e in events if e["type"] == "turn_end")
    # Heard: the chunk up to where its audio stopped, then the apology.
    assert first["spoken_text"].strip()
    assert APOLOGY in [e.get("text") for e in events if e["type"] == "agent_text"]
    assert _last_turn_end(events)["reply_text"].strip()
    stored = server.turns(caller.session_id)
    assert len(stored) == 2 and stored[1]["reply_text"].strip()
