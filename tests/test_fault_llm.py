"""A real llama.cpp server (OpenAI-compatible) killed mid-reply, then restarted: the
call goes on, the caller hears a short apology and gets an error event, and the next
turn is answered once the server is back. And a dead base URL falls back to the next."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import pytest

from avatar_rtc.backends.base import ChatMessage
from avatar_rtc.backends.llm_openai import OpenAiLlm, Resilience
from avatar_rtc.backends.registry import Backends
from avatar_rtc.caller import Caller
from avatar_rtc.conversation.pipeline import APOLOGY
from tests.conftest import LiveServer, free_port
from tests.llama_server import LlamaServer
from tests.speech import speak, with_silence

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

# A busy test machine may keep the server's tokens apart for seconds.
PATIENT = Resilience(first_token_timeout_s=60, token_timeout_s=60, retries=1)


@pytest.fixture
def llama() -> Iterator[LlamaServer]:
    server = LlamaServer(free_port())
    server.start()
    yield server
    server.stop()


async def test_a_dead_base_url_falls_back_to_a_real_server(llama: LlamaServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    llm = OpenAiLlm(dead, fallback_base_urls=[llama.url], max_tokens=16, temperature=0.0,
                    resilience=PATIENT)
    try:
        text = "".join([d async for d in llm.stream([ChatMessage("user", "Hi!")])])
    finally:
        await llm.aclose()
    assert text.strip()


async def test_the_llm_server_killed_mid_reply_then_restarted(
    llama: LlamaServer, real_backends: Backends, start_server: Callable[..., LiveServer]
) -> None:
    # A long story, spoken as fast as it comes: the kill lands while tokens stream.
    server = start_server(llm__max_sentences=0, tts__speak_ahead_s=0.0,
                          llm__system_prompt="You are a storyteller. Always answer with a "
                          "long story of at least ten sentences.")
    server.state.backends = replace(real_backends, llm=OpenAiLlm(
        llama.url, max_tokens=400, temperature=0.0,
        resilience=PATIENT))
    async with Caller(server.url) as caller:
        said = caller.say(with_silence(speak("Tell me a story about a dragon."), 48000,
                                       0.4, 0.0), 48000)
        await said.done.wait()
        assert said.speech_end_at is not None
        await caller.wait_agent_audio(after=said.speech_end_at, timeout_s=60)
        llama.kill()
        error = await caller.wait_event("error", timeout_s=60)
        first = await caller.wait_event("turn_end", turn=0, timeout_s=60)
        texts = [e["text"] for _, e in caller.events if e.get("type") == "agent_text"]
        assert caller.ended is None  # the call goes on

        await asyncio.to_thread(llama.start)  # back, on the same port
        errors_before = len([e for _, e in caller.events if e.get("type") == "error"])
        again = caller.say(with_silence(speak("How many legs does a spider have?"), 48000,
                                        0.6, 0.0), 48000)
        await again.done.wait()
        # Answered: the story's first words are enough (it would go on for minutes).
        second = await caller.wait_event("agent_text", turn=1, timeout_s=120)
        errors_after = len([e for _, e in caller.events if e.get("type") == "error"])
    for _ in range(200):  # the server's side of the hang-up stores the turn in flight
        if not server.state.calls:
            break
        await asyncio.sleep(0.1)
    assert error["message"].startswith("llm: the stream broke: ")
    assert APOLOGY in texts  # spoken after what was said of the story
    assert first["spoken_text"].endswith(APOLOGY)
    assert second["text"].strip() and errors_after == errors_before
    assert np.abs(caller.agent_audio()).max() > 1000
    stored = server.turns(caller.session_id)
    assert [t["index"] for t in stored] == [0, 1]
    assert stored[0]["reply_text"].strip()  # what the model said before it died
