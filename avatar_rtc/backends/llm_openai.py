"""Any OpenAI-compatible streaming chat endpoint: `vllm serve`, llama.cpp's server, ...

Cancelling a reply closes the HTTP stream; vLLM and llama.cpp's server abort the
request when the client disconnects, so generation stops on the backend too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai

from avatar_rtc.backends.base import CUT_SHORT, BackendError, ChatMessage, backend_errors
from avatar_rtc.backends.cpu_gate import CpuGate
from avatar_rtc.backends.priority import Priority


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
        priority: Priority | None = None,
    ) -> AsyncIterator[str]:
        # The model runs on another machine: our CPU gate and priority have nothing to
        # hold or reorder, and the server finds each conversation's cached prefix itself.
        with backend_errors("llm", "", catch=openai.OpenAIError):
            model = await self._resolve_model()
            response: Any = await self._client.chat.completions.create(
                model=model,
                messages=[{"role": m.role, "content": m.content} for m in messages],  # type: ignore[misc]
                stream=True,
                max_tokens=self._max_tokens,
                temperature=self._temperature,
                seed=self._seed,
            )
        try:
            with backend_errors("llm", "", catch=openai.OpenAIError):
                async for chunk in response:
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    if choice.delta.content:
                        yield choice.delta.content
                    if choice.finish_reason == "length":
                        yield CUT_SHORT
        finally:
            await response.close()  # disconnect: the server aborts generation

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
