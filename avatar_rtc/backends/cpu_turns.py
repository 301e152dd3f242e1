"""The local models take turns on a small CPU: one step of one model at a time."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator

# (class, time): 0 urgent, 1 playing, 2 background; then the oldest (or longest idle).
Rank = tuple[int, float]
NOTHING_READY: Rank = (3, float("inf"))


class CpuTurns:
    """The local models take turns on the CPU: one step (a token, a sentence of audio,
    a transcript) at a time, the model with the most urgent ready stream first.

    Each model spreads its step over every core. Two at once (a reply's first chunk
    of TTS beside another call's next LLM token) share the cores badly: their thread
    pools spin at barriers while the other holds a core, and the urgent step runs
    several times slower. Shared by the models of one process; remote and GPU models
    don't take part.
    """

    # Waiting models re-rank this often: their streams come, go and get ready.
    RERANK_S = 0.01

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._waiting: dict[int, Callable[[], Rank]] = {}
        self._tickets = itertools.count()

    @contextlib.contextmanager
    def turn(self, rank: Callable[[], Rank]) -> Iterator[Callable[[Rank], bool]]:
        """Waits until no other model waits with a more urgent stream. `rank` is asked
        again while waiting: ranked once, a model waiting with background work would
        hold back the urgent stream that came to it meanwhile.

        Yields `keep(rank)`: after a step, may the model take another without letting
        go? (Let go, a model's next urgent token could lose the CPU to another model's
        sentence in the moment before it asks again.)"""
        ticket = next(self._tickets)
        with self._cond:
            self._waiting[ticket] = rank
            while self._busy or not self._is_next(ticket):
                self._cond.wait(self.RERANK_S)
            del self._waiting[ticket]
            self._busy = True
        try:
            yield self._keep
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _keep(self, rank: Rank) -> bool:
        with self._cond:
            return all(rank <= waiting() for waiting in self._waiting.values())

    def _is_next(self, ticket: int) -> bool:
        return min(self._waiting, key=lambda t: (self._waiting[t](), t)) == ticket
