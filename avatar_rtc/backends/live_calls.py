"""The calls this process serves now: one object, built with the backends and handed
to every model that picks its thread count by it."""

from __future__ import annotations

import threading
import weakref


class LiveCalls:
    """How many calls this process is serving now (each Conversation counts itself).

    With two or more, every model step runs on one thread. Two threads are faster
    only on cores nobody else wants: beside four calls' audio on the 2-core VM, llama.cpp
    took p50 48-51 ms per token on two threads against 41-45 ms on one, for twice the
    CPU, and that CPU is what the other calls' media and models wait for. (ThreadChoice
    alone kept two: one thread never won by its margin.)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Weak: a call dropped without hanging up (its setup failed) stops counting
        # once collected, instead of crowding every later call for good.
        self._calls: weakref.WeakSet[object] = weakref.WeakSet()

    def enter(self, call: object) -> None:
        with self._lock:
            self._calls.add(call)

    def leave(self, call: object) -> None:
        with self._lock:
            self._calls.discard(call)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._calls)

    @property
    def crowded(self) -> bool:
        return self.count > 1
