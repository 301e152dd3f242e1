"""First-token latency over a long call, once the history is full and drops its oldest
exchange every turn.

Plays a fixed 20-question conversation through the packaged SmolLM2 (llama.cpp) the way
the server does (History keeps the last 12 exchanges), twice: as the server runs it,
with the dropped exchange cut out of the KV cache and the rest moved up, and without
that (every turn after the 12th evaluates the whole history again). Prints the first
token's p50/p90 for the turns before and after the history filled, and the host's steal
share beside each run.

    .venv/bin/python tools/bench_long_call.py
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cpu_times, steal_share  # tools/bench.py, beside this script

from avatar_rtc.backends import kv_context
from avatar_rtc.backends.llm_llamacpp import LlamaCppLlm
from avatar_rtc.conversation.history import History
from avatar_rtc.replay.summary import percentile
from avatar_rtc.settings import DEFAULT_SYSTEM_PROMPT

QUESTIONS = [
    "What is the capital of France?", "How many legs does a spider have?",
    "Can you recommend a good book?", "What is the weather usually like in spring?",
    "Tell me something interesting about the moon.", "What should I cook for dinner?",
    "How far away is the sun?", "Why is the sky blue?", "What is your favourite colour?",
    "How do birds fly?", "What is the tallest mountain?", "Tell me a joke.",
    "What time is it in Tokyo?", "How do I make tea?", "What is a black hole?",
    "Name a fruit.", "Why do cats purr?", "How deep is the ocean?",
    "What is the speed of light?", "Say goodbye.",
]
HISTORY_TURNS = 12


async def _conversation(max_tokens: int) -> list[float]:
    """First-token milliseconds of each turn."""
    llm = LlamaCppLlm(max_tokens=max_tokens, temperature=0.0, max_contexts=1)
    await llm.warmup(DEFAULT_SYSTEM_PROMPT)
    history = History(HISTORY_TURNS)
    firsts: list[float] = []
    try:
        for question in QUESTIONS:
            started = time.perf_counter()
            first: float | None = None
            reply = ""
            async for delta in llm.stream(history.messages(DEFAULT_SYSTEM_PROMPT, question),
                                          session="call"):
                if first is None and delta:
                    first = (time.perf_counter() - started) * 1000
                reply += delta
            firsts.append(first or 0.0)
            history.add(question, reply.strip(), interrupted=False)
    finally:
        await llm.aclose()
    return firsts


def _line(name: str, values: list[float]) -> str:
    return (f"{name:28s} p50 {percentile(values, 50):7.0f} ms   "
            f"p90 {percentile(values, 90):7.0f} ms   n {len(values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tokens", type=int, default=60)
    args = parser.parse_args()
    for shifted in (True, False):
        # Without the shift, a prompt that lost its oldest exchange shares only the
        # system prompt with the KV cache.
        kv_context.MIN_SHIFTED = 32 if shifted else 10**9
        host = cpu_times()
        firsts = asyncio.run(_conversation(args.max_tokens))
        name = "KV cache shifted" if shifted else "whole history evaluated"
        steal = steal_share(host, cpu_times())
        print(f"== {name} (host steal {'n/a' if steal is None else f'{steal:.1%}'})")
        print(_line("turns 2-12 (history fills)", firsts[1:HISTORY_TURNS]))
        print(_line("turns 13-20 (history full)", firsts[HISTORY_TURNS:]))


if __name__ == "__main__":
    main()
