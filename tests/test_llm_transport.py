"""The openai backend's transport: retries with backoff before the first token, the
fallback URLs, the timeouts, and never a resend once a token was given out. Against a
scripted OpenAI-compatible server on 127.0.0.1 (tests/fake_openai.py)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from avatar_rtc.backends.base import BackendError, ChatMessage
from avatar_rtc.backends.llm_openai import OpenAiLlm, Resilience
from tests.conftest import free_port
from tests.fake_openai import fake_openai

pytestmark = pytest.mark.timeout(30)

HI = [ChatMessage("user", "hi")]
# Roomy first-token limit: the first request of a busy test machine takes a while.
FAST = Resilience(connect_timeout_s=1, first_token_timeout_s=5, token_timeout_s=0.4,
                  retries=2, backoff_s=0.1)


async def _reply(llm: OpenAiLlm, into: list[str] | None = None) -> str:
    deltas = [] if into is None else into
    try:
        async for delta in llm.stream(HI):
            deltas.append(delta)
    finally:
        await llm.aclose()
    return "".join(deltas)


def test_the_backoff_doubles_with_jitter() -> None:
    policy = Resilience(backoff_s=1.0)
    for attempt, base in ((1, 1.0), (2, 2.0), (3, 4.0)):
        waits = [policy.backoff(attempt) for _ in range(50)]
        assert all(base / 2 <= w <= base for w in waits)
        assert len(set(waits)) > 1  # jittered


async def test_failures_before_the_first_token_are_retried_after_a_backoff() -> None:
    async with fake_openai(["status:503", "status:500", "ok"]) as server:
        started = time.monotonic()
        text = await _reply(OpenAiLlm(server.url, model="fake", resilience=FAST))
        elapsed = time.monotonic() - started
    assert text == "word0 word1 word2 "
    assert server.requests == 3
    assert elapsed >= 0.05 + 0.1  # two backoffs: at least half of 0.1 s, then of 0.2 s


async def test_retries_give_up_with_every_failure_counted() -> None:
    async with fake_openai(["status:503"]) as server:
        with pytest.raises(BackendError, match=r"^llm: 3 tries failed; the last: .*503"):
            await _reply(OpenAiLlm(server.url, model="fake", resilience=FAST))
    assert server.requests == 3


async def test_a_client_error_is_not_retried() -> None:
    async with fake_openai(["status:400"]) as server:
        with pytest.raises(BackendError, match=r"^llm: BadRequestError"):
            await _reply(OpenAiLlm(server.url, model="fake", resilience=FAST))
    assert server.requests == 1


async def test_a_dead_base_url_falls_back_to_the_next_one_in_order() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    async with fake_openai(["ok"]) as second, fake_openai(["ok"]) as third:
        llm = OpenAiLlm(dead, model="fake", fallback_base_urls=[second.url, third.url],
                        resilience=FAST)
        assert llm.base_urls == [dead, second.url, third.url]
        started = time.monotonic()
        assert await _reply(llm) == "word0 word1 word2 "
        assert time.monotonic() - started < 1.0  # no backoff: the next URL at once
    assert (second.requests, third.requests) == (1, 0)


async def test_no_first_token_in_time_is_retried_then_a_clear_error() -> None:
    async with fake_openai(["stall"]) as server:
        started = time.monotonic()
        with pytest.raises(BackendError, match=r"no token in 0.5 s before the first token"):
            await _reply(OpenAiLlm(server.url, model="fake",
                                   resilience=replace(FAST, first_token_timeout_s=0.5)))
        elapsed = time.monotonic() - started
    assert server.requests == 3
    assert 1.5 <= elapsed < 4.0  # 3 x 0.5 s, and the backoffs


async def test_a_stream_cut_after_a_token_is_never_sent_again() -> None:
    async with fake_openai(["drop:2", "ok"]) as server:
        deltas: list[str] = []
        with pytest.raises(BackendError, match=r"^llm: the stream broke: "):
            await _reply(OpenAiLlm(server.url, model="fake", resilience=FAST), deltas)
    assert deltas == ["word0 ", "word1 "]  # what the caller may have heard already
    assert server.requests == 1


async def test_a_stall_between_tokens_ends_the_reply_without_a_resend() -> None:
    async with fake_openai(["stall_after:1", "ok"]) as server:
        deltas: list[str] = []
        started = time.monotonic()
        with pytest.raises(BackendError, match=r"no token in 0.4 s between two tokens"):
            await _reply(OpenAiLlm(server.url, model="fake", resilience=FAST), deltas)
        assert time.monotonic() - started < 2.0
    assert deltas == ["word0 "] and server.requests == 1
