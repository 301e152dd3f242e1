"""One call's llama.cpp context, and how much of a new prompt its KV cache already holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Fewer tokens than this are evaluated again rather than moved up in the KV cache.
MIN_SHIFTED = 32


@dataclass(eq=False)
class KvContext:
    """One call's llama.cpp context: its KV cache holds that call's conversation."""

    llama: Any
    busy: bool = False
    last_used: float = 0.0
    session: str = ""  # whose conversation its KV cache holds

    def shared_with(self, tokens: list[int]) -> int:
        """How many of `tokens` its KV cache already holds, from the start."""
        return shared_prefix(self.llama.input_ids[: self.llama.n_tokens].tolist(), tokens)

    def reusable(self, tokens: list[int]) -> int:
        """How many of `tokens` its KV cache holds, from the start, once `reuse` cut out
        the block the prompt no longer has (the oldest exchanges the history dropped)."""
        shared, _, kept = self._plan(tokens)
        return shared + kept

    def reuse(self, tokens: list[int]) -> int:
        """Cuts that block out of the KV cache and moves what follows it up (llama.cpp
        shifts the cached keys' positions), so a history that drops its oldest exchange
        costs one new turn, not the whole conversation evaluated again. Returns how
        many of `tokens` the cache now holds."""
        shared, cut, kept = self._plan(tokens)
        if kept:
            llama = self.llama
            ids = llama.input_ids
            end = shared + cut + kept
            llama._ctx.kv_cache_seq_rm(0, shared, shared + cut)
            llama._ctx.kv_cache_seq_shift(0, shared + cut, end, -cut)
            llama._ctx.kv_cache_seq_rm(0, shared + kept, -1)
            ids[shared:shared + kept] = ids[shared + cut:end].copy()
            llama.n_tokens = shared + kept
            llama._requires_eval = True  # the last logits are not of the new last token
        return shared + kept

    def _plan(self, tokens: list[int]) -> tuple[int, int, int]:
        """(shared, cut, kept): the cache and the prompt agree on `shared` tokens; after
        `cut` more cached tokens, on `kept` more (0 if not worth a shift)."""
        held = self.llama.input_ids[: self.llama.n_tokens].tolist()
        shared = shared_prefix(held, tokens)
        rest = tokens[shared:]
        if len(rest) < MIN_SHIFTED or len(held) - shared < MIN_SHIFTED:
            return shared, 0, 0
        best = (0, 0)  # (kept, -cut): the most kept, then the least cut
        for start in np.flatnonzero(self.llama.input_ids[shared + 1:len(held)] == rest[0]):
            start += shared + 1
            kept = shared_prefix(held[start:], rest)
            best = max(best, (kept, shared - int(start)))
        kept, cut = best[0], -best[1]
        return (shared, cut, kept) if kept >= MIN_SHIFTED else (shared, 0, 0)


def shared_prefix(a: Sequence[Any], b: Sequence[Any]) -> int:
    """How many leading items two sequences (messages, tokens) have in common."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count
