"""Any OpenAI-compatible streaming chat endpoint: `vllm serve`, llama.cpp's server, ...

Cancelling a reply closes the HTTP stream; vLLM and llama.cpp's server abort the
request when the client disconnects, so generation stops on the backend too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

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
    ) -> None:
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=0
        )
        self._model = model
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._seed = seed
        self.name = f"openai-compatible {base_url} {model}".strip()

    @property
    def model(self) -> str:
        """The model requests name: llm.model, or the server's first (once resolved)."""
        return self._model

    async def _resolve_model(self) -> str:
        if not self._model:
            models = await self._client.models.list()
            if not models.data:
                raise BackendError("llm", "the server lists no models; set llm.model")
            self._model = models.data[0].id
        return self._model

    async def stream(
        self, messages: list[ChatMessage], gate: CpuGate | None = None, *, session: str = "",
        priority: Priority | None = None, tools: Sequence[ToolSpec] = (),
    ) -> AsyncIterator[str]:
        # The model runs on another machine: our CPU gate and priority have nothing to
        # hold or reorder, and the server finds each conversation's cached prefix itself.
        offer: dict[str, Any] = {}
        if tools:
            # "auto" said outright: llama-cpp-python's function-calling formats ignore
            # tools without it.
            offer = {"tools": [_tool_json(t) for t in tools], "tool_choice": "auto"}
        with backend_errors("llm", "", catch=openai.OpenAIError):
            model = await self._resolve_model()
            response: Any = await self._client.chat.completions.create(
                model=model,
                messages=[_message_json(m) for m in messages],
                stream=True,
                max_tokens=self._max_tokens,
                temperature=self._temperature,
                seed=self._seed,
                **offer,
            )
        # Calls come as structured deltas (vLLM with --enable-auto-tool-choice,
        # llama.cpp's server with --jinja), or as text (tool_text.py).
        calls = _ToolCallDeltas()
        text = ToolCallText() if tools else None
        try:
            with backend_errors("llm", "", catch=openai.OpenAIError):
                async for chunk in response:
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    for delta in choice.delta.tool_calls or ():
                        calls.add(delta)
                    if choice.delta.content:
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
        await self._client.close()


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
