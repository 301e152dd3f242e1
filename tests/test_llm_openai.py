"""The OpenAI-compatible backend against a real server: llama.cpp's own
(`python -m llama_cpp.server`, the same API as `vllm serve`) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import pytest

from avatar_rtc.backends.base import CUT_SHORT, BackendError, ChatMessage
from avatar_rtc.backends.llm_openai import OpenAiLlm
from avatar_rtc.backends.registry import Backends
from avatar_rtc.caller import Caller
from tests.conftest import LiveServer, free_port
from tests.llama_server import llama_server
from tests.speech import speak, with_silence, word_error_rate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

STORY = [ChatMessage("user", "Write a very long story about a dragon, at least forty sentences.")]


@pytest.fixture(scope="module")
def llama_url() -> Iterator[str]:
    with llama_server(free_port()) as url:
        yield url


async def test_streams_tokens_from_a_real_server(llama_url: str) -> None:
    llm = OpenAiLlm(llama_url, max_tokens=24, temperature=0.0)
    deltas = [d async for d in llm.stream([ChatMessage("user", "Hi!")])]
    await llm.aclose()
    assert len(deltas) > 1  # streamed, not one block
    assert "".join(deltas).strip()
    assert llm.model  # resolved from GET /v1/models
    assert not any(d is CUT_SHORT for d in deltas)  # the answer ended on its own


async def test_a_reply_at_the_token_limit_ends_with_cut_short(llama_url: str) -> None:
    llm = OpenAiLlm(llama_url, max_tokens=8, temperature=0.0)
    deltas = [d async for d in llm.stream(STORY)]
    await llm.aclose()
    assert deltas[-1] is CUT_SHORT and "".join(deltas[:-1]).strip()


async def test_cancelling_a_reply_stops_generation_on_the_server(llama_url: str) -> None:
    llm = OpenAiLlm(llama_url, max_tokens=300, temperature=0.0)
    short = [ChatMessage("user", "Say hello.")]
    # How long a full long reply occupies the server.
    started = time.monotonic()
    full = [d async for d in llm.stream(STORY)]
    full_s = time.monotonic() - started
    assert len(full) > 100, "the story must be long for this test to mean anything"
    # Cancel a long reply after a few tokens, then ask again at once: llama.cpp's server
    # runs one generation at a time, so the new request waits unless the old one stopped.
    stream = llm.stream(STORY)
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    started = time.monotonic()
    answer = [d async for d in llm.stream(short)]
    after_cancel_s = time.monotonic() - started
    await llm.aclose()
    assert answer
    assert after_cancel_s < full_s / 2, (after_cancel_s, full_s)


async def test_an_unreachable_server_is_a_clear_llm_error() -> None:
    llm = OpenAiLlm(f"http://127.0.0.1:{free_port()}/v1", model="x", timeout_s=2)
    with pytest.raises(BackendError, match="APIConnectionError"):
        async for _ in llm.stream([ChatMessage("user", "hi")]):
            pass
    await llm.aclose()


async def test_a_call_answered_through_the_openai_compatible_backend(
    llama_url: str, real_backends: Backends, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server()
    server.state.backends = replace(
        real_backends, llm=OpenAiLlm(llama_url, max_tokens=60, temperature=0.0)
    )
    question = "How many legs does a spider have?"
    async with Caller(server.url) as caller:
        said = caller.say(with_silence(speak(question), 48000, 0.4, 0.0), 48000)
        await said.done.wait()
        assert said.speech_end_at is not None
        await caller.wait_agent_audio(after=said.speech_end_at, timeout_s=30)
        transcript = await caller.wait_event("user_transcript")
        end = await caller.wait_event("turn_end", timeout_s=60)
    assert word_error_rate(question, transcript["text"]) <= 0.3
    assert end["reply_text"].strip() and not end["interrupted"]
    heard = caller.agent_audio()
    assert np.abs(heard).max() > 1000
    await asyncio.sleep(0)
