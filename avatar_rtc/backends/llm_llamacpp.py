"""llama.cpp in-process (llama-cpp-python), streaming tokens from the model's thread.

llama-cpp-python keeps the KV cache of the previous prompt and re-evaluates only the
tokens after the longest common prefix, so the system prompt and earlier turns cost
nothing on later turns of a call. Each call's conversation therefore keeps its own
context (KV cache) from a small pool; the weights are memory-mapped once. One model
thread interleaves the calls token by token, most urgent reply first (see model_thread).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from avatar_rtc.backends.base import (
    CUT_SHORT,
    BackendError,
    ChatMessage,
    ToolCalls,
    ToolSpec,
    backend_errors,
)
from avatar_rtc.backends.chat_prompt import ChatPrompt, Conversation, conversation_of
from avatar_rtc.backends.cpu_gate import CpuGate
from avatar_rtc.backends.cpu_turns import CpuTurns
from avatar_rtc.backends.kv_context import KvContext
from avatar_rtc.backends.llm_packages import model_file, packaged
from avatar_rtc.backends.model_thread import ModelThread
from avatar_rtc.backends.priority import Priority
from avatar_rtc.backends.thread_choice import ThreadChoice
from avatar_rtc.backends.tool_text import ToolCallText

log = logging.getLogger(__name__)


# A reply is urgent until its first chunk is likely out: about 12 tokens.
URGENT_TOKENS = 12
# A prefill evaluates this many tokens per step: ~100 ms on 2 cores (a token of a
# prompt costs ~6 ms), so an urgent token never waits for a whole long prompt.
PREFILL_SLICE = 16
# A context unused this long (no turn, no prefill) is free for another call, even if its
# call was never released.
STALE_S = 120.0

async def _drain(stream: AsyncIterator[str]) -> None:
    async for _ in stream:
        pass


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
        max_contexts: int = 4,
        cpu: CpuTurns | None = None,
        weights: str = "q8_0",
        cache_dir: Path | None = None,
        thread_choice: ThreadChoice | None = None,
        model: str = "",
    ) -> None:
        """`model_path`: a GGUF; empty: the packaged `model` (see llm_packages; "": the
        default), made in `cache_dir` when needed; SmolLM2 with `weights` (one of
        smollm2.PACKAGED_WEIGHTS). `thread_choice`: picks each step's thread count, up
        to `n_threads` (none given: one that counts no live calls)."""
        package = None if model_path else packaged(model)
        path = Path(model_path) if model_path else model_file(model, weights, cache_dir)
        if not path.is_file():
            raise BackendError("llm", f"GGUF model not found: {path}")
        self._path = path
        self._params: dict[str, Any] = {"n_ctx": n_ctx, "n_threads": n_threads,
                                        "n_threads_batch": n_batch_threads, "seed": seed}
        started = time.perf_counter()
        # All contexts up front: a context made mid-call would cost that call its load
        # and a cold prompt. The weights are memory-mapped once and shared.
        self._contexts = tuple(KvContext(self._load()) for _ in range(max(1, max_contexts)))
        log.info("llama.cpp %s loaded in %.2fs (%d contexts)", path.name,
                 time.perf_counter() - started, len(self._contexts))
        if package is None:
            self.name = f"llama.cpp {path.stem}"
        elif package.name == "smollm2-135m":
            self.name = f"llama.cpp {package.title}.{weights.upper()}"
        else:
            self.name = f"llama.cpp {package.title}"
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._seed = seed
        self._vocab = self._contexts[0].llama  # tokenizes for every context
        self._prompter = ChatPrompt(self._vocab)
        self._threads = thread_choice or ThreadChoice(n_threads)
        self._thread = ModelThread("llm", urgent_items=URGENT_TOKENS, cpu=cpu)
        self._lock = threading.Lock()
        self._ended: set[str] = set()  # sessions released (their calls ended)
        self._offered: dict[str, tuple[ToolSpec, ...]] = {}  # session -> its tools
        self._told_no_tools = False

    @property
    def contexts(self) -> tuple[KvContext, ...]:
        """Its contexts (the KV caches of the calls in flight), for inspection: they
        are used on the model thread only."""
        return self._contexts

    def prompt(self, messages: list[ChatMessage]) -> list[int]:
        """The tokens of the prompt for the reply to `messages`, as `stream` renders it."""
        return self._prompter.render(self._vocab, conversation_of(messages))[0]

    def prompt_text(self, messages: list[ChatMessage],
                      tools: Sequence[ToolSpec] = ()) -> str:
        """The prompt for the reply to `messages`, as text (for inspection)."""
        tokens = self._prompter.render(self._vocab, conversation_of(messages), tools)[0]
        return str(self._vocab.detokenize(tokens, special=True).decode("utf-8", "replace"))

    def prefill_prompt(self, messages: list[ChatMessage], user_prefix: str = "") -> list[int]:
        """The tokens `prefill` evaluates: the prompt up to the next user message's
        first `user_prefix`."""
        return self._prompter.open_user(self._vocab, conversation_of(messages), user_prefix)

    def _load(self) -> Any:
        from llama_cpp import Llama

        try:
            return Llama(model_path=str(self._path), verbose=False, **self._params)
        except Exception as exc:
            raise BackendError("llm", f"cannot load {self._path.name}: {exc}") from exc

    # -- contexts: touched only on the model thread --------------------------------

    def _fit(self, conversation: Conversation,
             render: Callable[[Conversation], tuple[list[int], list[str]]],
             last: int) -> tuple[list[int], list[str]]:
        """The rendered prompt, without the oldest exchanges it takes to leave room for
        a whole reply in the context window (llama.cpp refuses a longer prompt, and
        clamps the reply to what is left). `last`: messages that must stay."""
        room = self._params["n_ctx"] - self._max_tokens
        dropped = 0
        while True:
            tokens, stops = render(conversation)
            if len(tokens) <= room:
                break
            first = next((i for i, m in enumerate(conversation) if m.role != "system"),
                         len(conversation))
            if len(conversation) - first < last + 2:
                window = self._params["n_ctx"]
                raise BackendError("llm", f"the prompt ({len(tokens)} tokens) leaves no room "
                                          f"for a reply in the context window ({window} "
                                          "tokens); raise llm.n_ctx")
            # The oldest exchange: its user message up to the next one (the tools it
            # called and their results go with it).
            upto = next((j for j in range(first + 1, len(conversation))
                         if conversation[j].role == "user"), first + 2)
            conversation = conversation[:first] + conversation[upto:]
            dropped += 1
        if dropped:
            log.info("dropped the %d oldest exchanges to fit the context window", dropped)
        return tokens, stops

    def _set_threads(self, context: KvContext) -> int:
        """Before each step: the thread count that has been fastest lately."""
        threads = self._threads.pick()
        # A prompt follows the same choice: on one thread when one is faster now.
        # (Setting them only stores two numbers in the context's parameters.)
        context.llama._ctx.set_n_threads(
            threads, self._params["n_threads_batch"] if threads > 1 else 1)
        return threads

    def _can_start(self) -> bool:
        return any(not c.busy for c in self._contexts)

    def _acquire(self, tokens: list[int], session: str) -> KvContext:
        """The idle context where this prompt costs least to evaluate: the session's
        own, or a free one (its call ended, or it was left alone for STALE_S). Only
        when none is idle, another live call's, counting the tokens overwritten: that
        call evaluates them again next turn. (Taking whichever context shares the most
        made calls that began alike evict each other turn after turn, each evaluating
        hundreds of tokens again.) Among equals, the least recently used."""
        now = time.monotonic()
        with self._lock:
            ended = set(self._ended)

        def cost(context: KvContext) -> tuple[bool, int, float]:
            shared = context.reusable(tokens)
            taken = (context.session != session and context.session not in ended
                     and now - context.last_used <= STALE_S)
            overwritten = context.llama.n_tokens - shared if taken else 0
            return (taken, len(tokens) - shared + overwritten, context.last_used)

        best = min((c for c in self._contexts if not c.busy), key=cost)
        best.busy = True
        best.session = session
        with self._lock:  # only ended sessions that still hold a context matter
            self._ended &= {c.session for c in self._contexts}
        return best

    def _generate(self, messages: list[ChatMessage], session: str, stop: threading.Event,
                  slot: list[KvContext], tools: Sequence[ToolSpec]) -> Iterator[str]:
        conversation = conversation_of(messages)
        tokens, stops = self._fit(
            conversation, lambda c: self._prompter.render(self._vocab, c, tools), last=1)
        # The template asks for calls as text: held back and read at the end.
        calls = ToolCallText() if tools else None
        context = self._acquire(tokens, session)
        slot.append(context)
        threads = self._set_threads(context)
        try:
            context.reuse(tokens)
            # llama-cpp-python evaluates only the tokens after the longest prefix its
            # KV cache already holds (the system prompt, earlier turns, a prefill).
            chunks: Any = context.llama.create_completion(
                prompt=tokens,
                stream=True,
                max_tokens=self._max_tokens,
                temperature=self._temperature,
                seed=self._seed,
                stop=stops,
            )
            resumed: float | None = None  # the first step evaluates the prompt too
            try:
                for chunk in chunks:
                    if resumed is not None:  # one step: the next token
                        self._threads.record(threads, time.perf_counter() - resumed)
                    if stop.is_set():
                        return  # closing the generator ends llama's sampling loop
                    choice = chunk["choices"][0]
                    said = choice["text"] if calls is None else calls.push(choice["text"])
                    if said:
                        yield said
                    if choice.get("finish_reason") == "length":
                        yield CUT_SHORT
                    threads = self._set_threads(context)  # evaluated on resuming
                    resumed = time.perf_counter()
            finally:
                chunks.close()
            if calls is not None:
                rest, found = calls.finish()
                if rest:
                    yield rest
                if found:
                    yield ToolCalls(found)
        finally:
            context.busy = False
            context.last_used = time.monotonic()

    def _prefill(self, messages: list[ChatMessage], user_prefix: str, session: str,
                 slot: list[KvContext]) -> Iterator[None]:
        """Evaluates the prompt up to the next user message's first words, a slice per
        step (it runs in the background: urgent work goes between the slices)."""
        conversation = conversation_of(messages)
        tools = self._offered.get(session, ())  # the prompt starts with them
        tokens, _ = self._fit(
            conversation,
            lambda c: (self._prompter.open_user(self._vocab, c, user_prefix, tools), []),
            last=0)
        context = self._acquire(tokens, session)
        slot.append(context)
        try:
            shared = context.reuse(tokens)
            if shared < len(tokens):
                context.llama.n_tokens = shared  # eval drops the KV cache past this point
            for start in range(shared, len(tokens), PREFILL_SLICE):
                self._set_threads(context)
                context.llama.eval(tokens[start:start + PREFILL_SLICE])
                # Only work done marks the context as this call's: a first turn's
                # prefill of the bare system prompt must not steer its next prefill.
                context.last_used = time.monotonic()
                if start + PREFILL_SLICE < len(tokens):
                    yield None
        finally:
            context.busy = False
        yield None  # the context is free before the stream's last step

    def _ready(self, gate: CpuGate | None, slot: list[KvContext]) -> Callable[[], bool]:
        """Waits for a free context, then steps aside while the turn's gate is shut."""

        def ready() -> bool:
            if not slot and not self._can_start():
                return False
            return gate is None or gate.is_open()

        return ready

    async def stream(
        self, messages: list[ChatMessage], gate: CpuGate | None = None, *, session: str = "",
        priority: Priority | None = None, tools: Sequence[ToolSpec] = (),
    ) -> AsyncIterator[str]:
        slot: list[KvContext] = []  # the context, once the model thread picked one
        if tools and not self._prompter.supports_tools:
            if not self._told_no_tools:
                log.warning("%s: the model's chat template has no tools; they are not "
                            "offered (docs/tools.md)", self.name)
                self._told_no_tools = True
            tools = ()
        if session:  # the session's prefills render the same tools
            self._offered[session] = tuple(tools)
        with backend_errors("llm"):
            async for delta in self._thread.iterate(
                lambda stop: self._generate(messages, session, stop, slot, tools),
                priority=priority, ready=self._ready(gate, slot),
            ):
                yield delta

    async def prefill(self, context: list[ChatMessage], user_prefix: str = "", *,
                      session: str = "") -> None:
        # Background: runs only while the model thread has nothing else to do.
        slot: list[KvContext] = []
        with backend_errors("llm"):
            async for _ in self._thread.iterate(
                lambda _stop: self._prefill(context, user_prefix, session, slot),
                ready=self._ready(None, slot), background=True,
            ):
                pass

    def release(self, session: str) -> None:
        # Read on the model thread when a context is next taken.
        with self._lock:
            self._ended.add(session)
        self._offered.pop(session, None)

    async def warmup(self, system_prompt: str = "") -> None:
        """Runs a first reply in every context, so each holds the system prompt."""
        messages = [ChatMessage("user", "Hello")]
        if system_prompt:
            messages.insert(0, ChatMessage("system", system_prompt))
        replies = [self.stream(messages) for _ in self._contexts]
        # Concurrent streams each take an idle context: every context gets primed.
        await asyncio.gather(*(_drain(reply) for reply in replies))
        for context in self._contexts:
            context.last_used = 0.0  # they hold no call's conversation

    async def aclose(self) -> None:
        self._thread.close()
