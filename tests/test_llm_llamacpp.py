"""The in-process llama.cpp backend with the packaged SmolLM2: one KV cache per
conversation, and calls served token by token, most urgent first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from avatar_rtc.backends import smollm2
from avatar_rtc.backends.base import CUT_SHORT, BackendError, ChatMessage
from avatar_rtc.backends.cpu_gate import CpuGate
from avatar_rtc.backends.llm_llamacpp import PREFILL_SLICE, LlamaCppLlm
from avatar_rtc.backends.smollm2 import packaged_model
from avatar_rtc.backends.thread_choice import ThreadChoice
from avatar_rtc.conversation.chunker import SentenceChunker
from avatar_rtc.settings import DEFAULT_SYSTEM_PROMPT

SYSTEM = ChatMessage("system", "You are a helpful assistant.")


def _ask(question: str, history: list[ChatMessage] | None = None) -> list[ChatMessage]:
    return [SYSTEM, *(history or []), ChatMessage("user", question)]


async def _reply(llm: LlamaCppLlm, messages: list[ChatMessage], session: str = "") -> str:
    return "".join([d async for d in llm.stream(messages, session=session)])


@pytest.fixture
async def llm():  # type: ignore[no-untyped-def]
    model = LlamaCppLlm(max_tokens=24, temperature=0.0, max_contexts=2)
    yield model
    await model.aclose()


async def test_each_conversation_keeps_its_own_cache(llm: LlamaCppLlm) -> None:
    a1 = _ask("What is the capital of France?")
    b1 = _ask("Name a large animal.")
    reply_a = await _reply(llm, a1, "a")
    reply_b = await _reply(llm, b1, "b")
    # The second conversation got a context of its own instead of evicting the first.
    assert len(llm.contexts) == 2
    def holds(messages: list[ChatMessage]) -> list[int]:
        """The contexts whose KV cache holds this prompt."""
        prompt = llm.prompt(messages)
        return [i for i, c in enumerate(llm.contexts) if c.shared_with(prompt) == len(prompt)]

    assert len(holds(a1)) == 1 and len(holds(b1)) == 1 and holds(a1) != holds(b1)
    # A's next turn goes back to the context that holds A.
    a2 = _ask("And of Spain?", [a1[-1], ChatMessage("assistant", reply_a.strip())])
    await _reply(llm, a2, "a")
    assert holds(a2) == holds(a1)
    assert reply_b


async def test_a_reply_at_the_token_limit_ends_with_cut_short(llm: LlamaCppLlm) -> None:
    cut = [d async for d in llm.stream(_ask("Write a long story about a dragon."))]
    assert cut[-1] is CUT_SHORT and "".join(cut[:-1]).strip()
    # A reply that ends on its own (end of sequence within 24 tokens) is not cut short.
    done = [d async for d in llm.stream(_ask("Hi!"))]
    assert not any(d is CUT_SHORT for d in done) and "".join(done).strip()


class _ScriptedChoice(ThreadChoice):
    """Picks 1, 2, 1, 2...; keeps what the model reports."""

    def __init__(self) -> None:
        super().__init__(2)
        self.picks: list[int] = []
        self.steps: list[tuple[int, float]] = []

    def pick(self) -> int:
        self.picks.append(1 + len(self.picks) % 2)
        return self.picks[-1]

    def record(self, threads: int, seconds: float, work: float = 1.0) -> None:
        self.steps.append((threads, seconds))


async def test_each_token_runs_on_the_thread_count_picked_and_is_timed() -> None:
    choice = _ScriptedChoice()
    model = LlamaCppLlm(max_tokens=6, temperature=0.0, max_contexts=1, thread_choice=choice)
    applied: list[tuple[int, int]] = []
    ctx = model.contexts[0].llama._ctx
    original = ctx.set_n_threads

    def set_n_threads(n: int, n_batch: int) -> None:
        applied.append((n, n_batch))
        original(n, n_batch)

    ctx.set_n_threads = set_n_threads
    try:
        reply = await _reply(model, _ask("Write a long story about a dragon."))
    finally:
        await model.aclose()
    assert reply.strip()
    # Before the prompt and before each next token: one thread, then both, in turn.
    assert len(choice.picks) >= 6 and applied == [(1, 1), (2, 2)] * (len(choice.picks) // 2) \
        + [(1, 1)] * (len(choice.picks) % 2)
    # Every step but the first (the prompt) was timed, on the count it ran on.
    assert [t for t, _ in choice.steps] == choice.picks[1:len(choice.steps) + 1]
    assert len(choice.steps) >= 5 and all(0 < s < 5 for _, s in choice.steps)


async def test_a_new_question_does_not_wait_for_a_long_reply(llm: LlamaCppLlm) -> None:
    long_llm = LlamaCppLlm(max_tokens=200, temperature=0.0, max_contexts=2)
    try:
        order: list[str] = []

        async def run(name: str, messages: list[ChatMessage]) -> None:
            async for _ in long_llm.stream(messages):
                order.append(name)

        story = asyncio.create_task(run("story", _ask("Tell me a very long story.")))
        while len(order) < 5:  # noqa: ASYNC110 - tokens arrive from the model thread
            await asyncio.sleep(0.01)
        await run("question", _ask("What is the capital of France?"))  # a short reply
        story_done = story.done()
        await story
    finally:
        await long_llm.aclose()
    # The question was answered while the story was still being told.
    assert not story_done
    first_q = order.index("question")
    assert "story" in order[first_q:], order


async def test_a_held_gate_pauses_only_its_own_reply(llm: LlamaCppLlm) -> None:
    gate = CpuGate()
    gate.hold()
    order: list[str] = []

    async def run(name: str, messages: list[ChatMessage], gate: CpuGate | None) -> None:
        async for _ in llm.stream(messages, gate):
            order.append(name)

    task = asyncio.create_task(run("held", _ask("Count to five."), gate))
    await run("other", _ask("Say hello."), None)
    # Served while the gated reply waited (the gate gives way after MAX_WAIT_S anyway,
    # so on a slow machine the held reply may start before the other one ends).
    assert order and order[0] == "other", order
    gate.release()
    await asyncio.wait_for(task, 60)
    assert "held" in order


async def test_a_missing_model_file_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BackendError, match="GGUF model not found"):
        LlamaCppLlm(str(tmp_path / "nope.gguf"))


async def test_the_packaged_model_converted_to_q8_0_answers_as_shipped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    q8 = LlamaCppLlm(max_tokens=12, temperature=0.0, max_contexts=1, cache_dir=tmp_path)
    q4 = LlamaCppLlm(max_tokens=12, temperature=0.0, max_contexts=1, weights="q4_1")
    try:
        assert q8.contexts[0].llama.metadata["general.file_type"] == "7"  # LLAMA_FTYPE_MOSTLY_Q8_0
        assert q4.contexts[0].llama.metadata["general.file_type"] == "3"  # Q4_1, as shipped
        assert q8.name.endswith("Q8_0") and q4.name.endswith("Q4_1")
        # Greedy replies open with the same words. (Converted to Q4_0 alike, the
        # model says "The weather usually likes in spring." and "A spider's legs are
        # four legs".)
        for question in ("What is the weather usually like in spring?",
                         "How many legs does a spider have?",
                         "What is the largest ocean on Earth?",
                         "What do bees make?"):
            messages = [ChatMessage("system", DEFAULT_SYSTEM_PROMPT), ChatMessage("user", question)]
            said = [(await _reply(llm, messages)).split()[:6] for llm in (q8, q4)]
            assert said[0] == said[1], question
    finally:
        await q8.aclose()
        await q4.aclose()


def test_the_conversion_is_made_once_and_again_for_a_new_package(  # type: ignore[no-untyped-def]
        tmp_path, monkeypatch) -> None:
    first = packaged_model("q8_0", tmp_path)
    made = first.stat().st_mtime_ns
    assert packaged_model("q8_0", tmp_path) == first and first.stat().st_mtime_ns == made
    # Another version of the package (here: the same file, touched) is converted again
    # and the copy of the old one goes.
    shipped = tmp_path / "shipped" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    shipped.parent.mkdir()
    shipped.write_bytes(smollm2.packaged_model_path().read_bytes())
    monkeypatch.setattr(smollm2, "packaged_model_path", lambda: shipped)
    second = packaged_model("q8_0", tmp_path)
    assert second != first and second.is_file() and not first.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([second.name, "shipped"])


def test_weights_that_cannot_be_made_are_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(BackendError, match=r"cannot write the q8_0 weights.*llm\.weights=q4_1"):
        LlamaCppLlm(cache_dir=blocked / "models")
    with pytest.raises(BackendError, match=r"llm\.weights: one of q8_0, q4_1"):
        LlamaCppLlm(weights="q2")


def _count_evaluated(llm: LlamaCppLlm) -> list[int]:
    """Records how many tokens each llama.cpp eval call of every context takes."""
    counts: list[int] = []
    for context in llm.contexts:
        original = context.llama.eval

        def counting(tokens, original=original):  # type: ignore[no-untyped-def]
            counts.append(len(tokens))
            return original(tokens)

        context.llama.eval = counting
    return counts


async def test_prefill_leaves_only_the_users_words_for_the_turn(llm: LlamaCppLlm) -> None:
    first = _ask("What is the capital of France?")
    reply = (await _reply(llm, first)).strip()
    context = [*first, ChatMessage("assistant", reply)]
    question = "And what is the capital of Spain?"
    tail = f"{question}<|im_end|>\n<|im_start|>assistant\n"  # SmolLM2's ChatML
    turn_tokens = len(llm.contexts[0].llama.tokenize(tail.encode(), add_bos=False,
                                                      special=True))
    counts = _count_evaluated(llm)

    await llm.prefill(context)  # while the user speaks
    prefilled = sum(counts)
    counts.clear()
    second = await _reply(llm, [*context, ChatMessage("user", question)])

    # The prefill evaluated the end of the reply and the user header; the turn itself
    # evaluates only the user's words and the assistant header, then one token at a time.
    assert prefilled >= 4
    assert counts[0] == turn_tokens, counts
    assert second


async def test_prefill_of_the_first_words_heard_leaves_only_the_rest(
    llm: LlamaCppLlm,
) -> None:
    context = _ask("Hello")[:-1]
    heard, question = "How many legs does", "How many legs does a spider have?"
    rest = " a spider have?<|im_end|>\n<|im_start|>assistant\n"
    rest_tokens = len(llm.contexts[0].llama.tokenize(rest.encode(), add_bos=False,
                                                      special=True))
    counts = _count_evaluated(llm)

    await llm.prefill(context)  # the user started speaking
    await llm.prefill(context, heard)  # a partial transcript came in
    counts.clear()
    reply = await _reply(llm, [*context, ChatMessage("user", question)])

    # The words heard ahead are in the KV cache, tokenized as in the whole prompt.
    assert counts[0] == rest_tokens, counts
    assert reply
    # Words the final transcript does not confirm are replaced, not kept.
    counts.clear()
    await llm.prefill(context, "How many eggs")
    assert sum(counts) == len(llm.contexts[0].llama.tokenize(b" eggs", add_bos=False))


async def test_a_prefill_that_is_no_longer_needed_is_dropped(llm: LlamaCppLlm) -> None:
    counts = _count_evaluated(llm)
    task = asyncio.create_task(llm.prefill(_ask("Hello")[:-1]))
    task.cancel()  # the user's turn started before the model thread got to it
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    assert counts == []


async def test_a_prefill_ends_and_frees_its_context_when_it_is_the_only_one() -> None:
    """A one-call server has one context: the prefill holding it must still finish
    (it waited for a free context to take its last step: its own)."""
    single = LlamaCppLlm(max_tokens=8, temperature=0.0, max_contexts=1)
    try:
        await asyncio.wait_for(single.prefill(_ask("Hello")[:-1], "How many"), 30)
        assert not single.contexts[0].busy
        assert await asyncio.wait_for(_reply(single, _ask("How many legs has a cat?")), 30)
    finally:
        await single.aclose()


async def test_calls_that_began_alike_keep_their_own_contexts() -> None:
    """Two calls ask the same first question and get the same reply. Had the second
    taken the first's context (it shares the most), from then on each call's turn
    would evaluate the other's exchanges away and its own again."""
    llm = LlamaCppLlm(max_tokens=16, temperature=0.0, max_contexts=3)
    try:
        calls = {"a": [SYSTEM, ChatMessage("user", "What is the capital of France?")],
                 "b": [SYSTEM, ChatMessage("user", "What is the capital of France?")]}
        questions = {"a": ["And of Spain?", "And of Italy?"],
                     "b": ["Name a large animal.", "Name a small one."]}
        counts = _count_evaluated(llm)
        evaluated: dict[str, list[int]] = {"a": [], "b": []}
        new_tokens: dict[str, list[int]] = {"a": [], "b": []}
        for turn in range(3):
            for session, messages in calls.items():
                counts.clear()
                before = len(llm.prompt([*messages[:-1], ChatMessage("user", "")]))
                reply = await _reply(llm, messages, session)
                evaluated[session].append(counts[0])
                new_tokens[session].append(len(llm.prompt(messages)) - before)
                if turn < 2:
                    messages += [ChatMessage("assistant", reply.strip()),
                                 ChatMessage("user", questions[session][turn])]
        owners = [c.session for c in llm.contexts]
        assert sorted(o for o in owners if o) == ["a", "b"], owners
        # From the second turn on, a turn evaluates little more than its new question
        # (the end of the reply before it is re-tokenized as the history has it).
        for session in calls:
            for turn in (1, 2):
                assert evaluated[session][turn] <= new_tokens[session][turn] + 24, (
                    session, evaluated, new_tokens)
    finally:
        await llm.aclose()


async def test_a_long_prefill_runs_in_slices_that_urgent_work_goes_between(
    llm: LlamaCppLlm,
) -> None:
    context = [SYSTEM, ChatMessage("user", "Tell me about the sea."),
               ChatMessage("assistant", " ".join(["The sea is wide and deep and blue."] * 30))]
    evals: list[tuple[int, int]] = []  # (context, tokens)
    for index, ctx in enumerate(llm.contexts):
        original = ctx.llama.eval

        def tagged(tokens, original=original, index=index):  # type: ignore[no-untyped-def]
            evals.append((index, len(tokens)))
            return original(tokens)

        ctx.llama.eval = tagged
    prefill = asyncio.create_task(llm.prefill(context, session="a"))
    while not evals:  # noqa: ASYNC110 - the model thread evaluates
        await asyncio.sleep(0.005)
    prefilling = evals[0][0]
    reply = await _reply(llm, _ask("Say yes."), "b")
    await prefill
    slices = [n for i, n in evals if i == prefilling]
    expected = llm.prefill_prompt(context)
    assert sum(slices) == len(expected) and max(slices) <= PREFILL_SLICE
    # The reply's prompt went in before the prefill's last slice.
    first_reply_eval = next(k for k, (i, _) in enumerate(evals) if i != prefilling)
    last_slice = max(k for k, (i, _) in enumerate(evals) if i == prefilling)
    assert reply and first_reply_eval < last_slice, evals


async def test_a_history_that_drops_its_oldest_exchange_is_not_evaluated_again(
    llm: LlamaCppLlm,
) -> None:
    questions = ["What is the capital of France?", "Name a large animal.",
                 "What colour is the sky?", "How many legs has a cat?"]
    history: list[ChatMessage] = []
    for question in questions[:3]:
        asked = [*history, ChatMessage("user", question)]
        reply = (await _reply(llm, [SYSTEM, *asked], "a")).strip()
        history = [*asked, ChatMessage("assistant", reply)]
    counts = _count_evaluated(llm)
    # The history keeps its last two exchanges: the first is gone from the prompt.
    trimmed = [SYSTEM, *history[2:], ChatMessage("user", questions[3])]
    reply = await _reply(llm, trimmed, "a")
    prompt = llm.prompt(trimmed)
    kept = llm.prompt([SYSTEM, *history[2:], ChatMessage("user", "")])
    # Only the new question (and the end of the reply before it) is evaluated: the two
    # exchanges kept moved up in the KV cache.
    assert counts[0] <= len(prompt) - len(kept) + 24, (counts, len(prompt))
    assert len(prompt) > 60 and reply.strip()
    context = next(c for c in llm.contexts if c.session == "a")
    assert context.shared_with(prompt) == len(prompt)


async def test_a_conversation_longer_than_the_context_window_drops_its_oldest_exchanges(
) -> None:
    small = LlamaCppLlm(max_tokens=24, temperature=0.0, max_contexts=1, n_ctx=512)
    try:
        history: list[ChatMessage] = []
        for i in range(12):
            history += [ChatMessage("user", f"Question {i}: what is the number {i} good for?"),
                        ChatMessage("assistant", "People use it every day for counting things "
                                                 "and for measuring them, at home and at work.")]
        messages = [SYSTEM, *history, ChatMessage("user", "And the number 13?")]
        assert len(small.prompt(messages)) > 512  # llama.cpp would refuse it whole
        assert (await _reply(small, messages, "a")).strip()
        # The reply had room: the prompt kept leaves max_tokens free.
        assert small.contexts[0].llama.n_tokens <= 512
        await small.prefill([SYSTEM, *history], "And the", session="a")  # fits the same way
        too_long = [SYSTEM, ChatMessage("user", "word " * 600)]
        with pytest.raises(BackendError, match="no room for a reply"):
            await _reply(small, too_long, "a")
    finally:
        await small.aclose()


async def test_smollm2_s_speaker_tag_is_dropped_before_speech(llm: LlamaCppLlm) -> None:
    """SmolLM2-135M opens some replies with a speaker tag; the chunker keeps it out of
    the audio. (With the default prompt at temperature 0, the capital of France is
    answered "L'Alma: Paris, France".)"""
    messages = [ChatMessage("system", DEFAULT_SYSTEM_PROMPT),
                ChatMessage("user", "What is the capital of France?")]
    chunker = SentenceChunker()
    raw, chunks = "", []
    async for delta in llm.stream(messages):
        if isinstance(delta, str):
            raw += delta
            chunks += chunker.push(delta)
    chunks += chunker.flush()
    if not raw.startswith("L'Alma:"):
        pytest.skip(f"this model build no longer opens with a tag: {raw!r}")
    assert chunks and "Alma" not in " ".join(chunks), chunks
    assert chunks[0].startswith("Paris"), chunks


async def test_smollm2_s_speaker_tag_stays_out_of_the_history(llm: LlamaCppLlm) -> None:
    """Through a conversation with the real model: neither the audio nor the history
    (what the model reads next turn) holds the tag it wrote."""
    import dataclasses

    import numpy as np

    from tests.conversation_helpers import CONFIG, harness
    from tests.fakes import FakeStt, FakeTts, silence, tone

    written: list[str] = []
    stream = llm.stream

    async def recorded(*args: Any, **kwargs: Any) -> AsyncIterator[str]:
        async for delta in stream(*args, **kwargs):
            written.append(delta)
            yield delta

    llm.stream = recorded  # type: ignore[method-assign]
    config = dataclasses.replace(CONFIG, system_prompt=DEFAULT_SYSTEM_PROMPT)
    stt, tts = FakeStt(text="What is the capital of France?"), FakeTts()
    async with harness(config, stt=stt, llm=llm, tts=tts) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await h.wait_for("turn_end", limit_s=30)
        agent = h.conversation.history.exchanges[0].agent
    raw = "".join(d for d in written if isinstance(d, str))
    if not raw.startswith("L'Alma:"):
        pytest.skip(f"this model build no longer opens with a tag: {raw!r}")
    assert " ".join(tts.texts).startswith("Paris"), tts.texts
    assert agent.startswith("Paris") and "Alma" not in agent, agent
