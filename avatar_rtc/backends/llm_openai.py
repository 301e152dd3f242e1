"""Any OpenAI-compatible streaming chat endpoint: `vllm serve`, llama.cpp's server, ...

Cancelling a reply closes the HTTP stream; vLLM and llama.cpp's server abort the
request when the client disconnects, so generation stops on the backend too.

The transport is resilient: a request that fails before its first token (refused,
reset, a 5xx, no token in time) is tried on each base URL in order, then again after
a backoff with jitter. Once a token was yielded it may already be spoken, so a failure
after it ends the reply instead (the conversation apologizes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2  # openai's HTTP client: a broken stream raises its errors, not openai's
import openai

from avatar_rtc.backends.base import (
    CUT_SHORT,
    BackendError,
    ChatMessage,
    ToolCall,
    ToolCalls,
    ToolSpec,
    backend_errors,
)
from avatar_rtc.backends.cpu_gate import CpuGate
from avatar_rtc.backends.priority import Priority
from avatar_rtc.backends.tool_text import ToolCallText, new_call_id

log = logging.getLogger(__name__)

# 408 timeout, 409 busy, 429 overloaded, 5xx: another try (or server) may succeed.
_RETRY_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True)
class Resilience:
    """Timeouts and retries of the transport (settings llm.*, see LlmSettings)."""

    connect_timeout_s: float = 3.0
    first_token_timeout_s: float = 15.0
    token_timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.25

    def backoff(self, attempt: int) -> float:
        """The wait before retry ``attempt`` (1, 2, ...): doubling, with full jitter
        on its upper half so clients that failed together do not retry together."""
        base: float = self.backoff_s * 2 ** (attempt - 1)
        return base / 2 + random.uniform(0, base / 2)


class _Retryable(Exception):
    """A failure before the first token: the same request may be sent again."""


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500 or exc.status_code in _RETRY_STATUS
    return isinstance(exc, openai.APIConnectionError | httpx2.TransportError | TimeoutError
                      | OSError)


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, _Retryable) else f"{type(exc).__name__}: {exc}"


class _Endpoint:
    """One base URL: its client and the model it serves."""

    def __init__(self, base_url: str, model: str, api_key: str, timeout: openai.Timeout
                 ) -> None:
        self.base_url = base_url
        self.model = model
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "none",
                                         timeout=timeout, max_retries=0)

    async def resolve_model(self) -> str:
        if not self.model:
            models = await self.client.models.list()
            if not models.data:
                raise BackendError("llm", f"{self.base_url} lists no models; set llm.model")
            self.model = models.data[0].id
        return self.model


class OpenAiLlm:
    def __init__(
        self,
        base_url: str,
        *,
        model: str = "",
        api_key: str = "none",
        max_tokens: int = 120,
        temperature: float = 0.2,
        seed: int = 0,
        timeout_s: float = 30.0,
        fallback_base_urls: Sequence[str] = (),
        resilience: Resilience | None = None,
    ) -> None:
        self._resilience = resilience or Resilience()
        # The socket's own limits stay above ours: a stalled stream ends with our
        # clearer "no token in N s", and a slow connect with its own error.
        timeout = openai.Timeout(timeout_s, connect=self._resilience.connect_timeout_s)
        self._endpoints = [_Endpoint(url, model, api_key, timeout)
                           for url in (base_url, *fallback_base_urls)]
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._seed = seed
        self.name = f"openai-compatible {base_url} {model}".strip()

    @property
    def model(self) -> str:
        """The model requests name: llm.model, or the server's first (once resolved)."""
        return self._endpoints[0].model

    @property
    def base_urls(self) -> list[str]:
        return [e.base_url for e in self._endpoints]

    async def stream(
        self, messages: list[ChatMessage], gate: CpuGate | None = None, *, session: str = "",
        priority: Priority | None = None, tools: Sequence[ToolSpec] = (),
    ) -> AsyncIterator[str]:
        # The model runs on another machine: our CPU gate and priority have nothing to
        # hold or reorder, and the server finds each conversation's cached prefix itself.
        resilience = self._resilience
        failures: list[str] = []
        for attempt in range(resilience.retries + 1):
            if attempt:
                await asyncio.sleep(resilience.backoff(attempt))
            for endpoint in self._endpoints:
                started = False
                try:
                    # Closed at once when the reply is cancelled: the server stops too.
                    async with contextlib.aclosing(
                            self._stream_from(endpoint, messages, tools)) as deltas:
                        async for delta in deltas:
                            started = True
                            yield delta
                    return
                except Exception as exc:
                    if started:  # the caller may have heard it: never sent again
                        if isinstance(exc, BackendError):
                            raise
                        raise BackendError("llm", f"the stream broke: {_describe(exc)}"
                                           ) from exc
                    if not (isinstance(exc, _Retryable) or _retryable(exc)):
                        with backend_errors("llm", "", catch=openai.OpenAIError):
                            raise
                    failures.append(f"{endpoint.base_url}: {_describe(exc)}")
                    log.warning("llm request failed before its first token (try %d of %d): "
                                "%s", attempt + 1, resilience.retries + 1, failures[-1])
        raise BackendError("llm", f"{len(failures)} tries failed; the last: {failures[-1]}")

    async def _stream_from(self, endpoint: _Endpoint, messages: list[ChatMessage],
                           tools: Sequence[ToolSpec]) -> AsyncGenerator[str, None]:
        """One request to one server; raises _Retryable when no token came in time."""
        resilience = self._resilience
        offer: dict[str, Any] = {}
        if tools:
            # "auto" said outright: llama-cpp-python's function-calling formats ignore
            # tools without it.
            offer = {"tools": [_tool_json(t) for t in tools], "tool_choice": "auto"}
        loop = asyncio.get_running_loop()
        first_by = loop.time() + resilience.first_token_timeout_s
        try:
            async with asyncio.timeout_at(first_by):
                model = await endpoint.resolve_model()
                response: Any = await endpoint.client.chat.completions.create(
                    model=model,
                    messages=[_message_json(m) for m in messages],
                    stream=True,
                    max_tokens=self._max_tokens,
                    temperature=self._temperature,
                    seed=self._seed,
                    **offer,
                )
        except TimeoutError:
            raise _Retryable(f"no answer in {resilience.first_token_timeout_s:g} s") from None
        chunks = aiter(response)
        got_token = False
        # Calls come as structured deltas (vLLM with --enable-auto-tool-choice,
        # llama.cpp's server with --jinja), or as text (tool_text.py).
        calls = _ToolCallDeltas()
        text = ToolCallText() if tools else None
        try:
            while True:
                wait = (resilience.token_timeout_s if got_token
                        else max(0.0, first_by - loop.time()))
                try:
                    async with asyncio.timeout(wait):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    limit, what = ((resilience.token_timeout_s, "between two tokens")
                                   if got_token else (resilience.first_token_timeout_s,
                                                      "before the first token"))
                    raise _Retryable(f"no token in {limit:g} s {what}") from None
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                for delta in choice.delta.tool_calls or ():
                    got_token = True
                    calls.add(delta)
                if choice.delta.content:
                    got_token = True
                    said = choice.delta.content if text is None else text.push(
                        choice.delta.content)
                    if said:
                        yield said
                if choice.finish_reason == "length":
                    yield CUT_SHORT
        finally:
            await response.close()  # disconnect: the server aborts generation
        written: tuple[ToolCall, ...] = ()
        if text is not None:
            rest, written = text.finish()
            if rest:
                yield rest
        if found := calls.calls() or written:
            yield ToolCalls(found)

    async def prefill(self, context: list[ChatMessage], user_prefix: str = "", *,
                      session: str = "") -> None:
        """Nothing to do here: vLLM and llama.cpp's server cache prompt prefixes."""

    def release(self, session: str) -> None:
        """Nothing is kept per session here."""

    async def warmup(self, system_prompt: str = "") -> None:
        messages = [ChatMessage("user", "Hello")]
        if system_prompt:
            messages.insert(0, ChatMessage("system", system_prompt))
        async for _ in self.stream(messages):
            pass

    async def aclose(self) -> None:
        for endpoint in self._endpoints:
            await endpoint.client.close()


def _tool_json(tool: ToolSpec) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool.name, "description": tool.description,
                                             "parameters": tool.parameters}}


def _message_json(message: ChatMessage) -> Any:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        wire["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls]
    if message.role == "tool":
        wire["tool_call_id"] = message.tool_call_id
    return wire


class _ToolCallDeltas:
    """Streamed tool-call pieces, joined by their index: the id and name come first,
    the arguments' JSON text in fragments."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[str, str]] = {}

    def add(self, delta: Any) -> None:
        part = self._parts.setdefault(int(delta.index or 0),
                                      {"id": "", "name": "", "arguments": ""})
        if delta.id:
            part["id"] = delta.id
        function = delta.function
        if function is not None:
            # The name comes whole, once (some servers repeat it in every piece).
            if function.name and not part["name"]:
                part["name"] = function.name
            part["arguments"] += function.arguments or ""

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(id=part["id"] or new_call_id(), name=part["name"],
                              arguments=part["arguments"] or "{}")
                     for _, part in sorted(self._parts.items()) if part["name"])
