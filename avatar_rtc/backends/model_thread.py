"""One thread per model, shared by every call; its policy says which stream steps next.

A plain single-thread executor runs whole jobs in arrival order: with four callers,
a new question waits for every reply queued before it to be generated in full. Here
the thread advances the streams one item (a token, a sentence of audio) at a time
and, under the urgent-first policy, always picks the most urgent ready one: a reply
that has not reached its first audio goes before replies that are already playing and
have seconds of audio queued; those take turns.

On a small CPU the models also take turns with each other (CpuTurns): one step of one
model at a time, the most urgent first, instead of two models' thread pools fighting
over the same cores.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from avatar_rtc.backends.cpu_turns import NOTHING_READY, CpuTurns, Rank
from avatar_rtc.backends.priority import Priority, UserWait

T = TypeVar("T")

log = logging.getLogger(__name__)

_END = object()

# A playing reply's streams turn urgent this long before its queued audio runs out.
DUE_LEAD_S = 1.0


class Policy(enum.Enum):
    """Which ready stream a model thread steps next."""

    # Arrival order: each stream runs to its end before the next (priority ignored).
    FIRST_IN_FIRST_OUT = "first-in-first-out"
    # Urgent streams first, longest waiting first; the rest take turns.
    URGENT_FIRST = "urgent-first"


@dataclass(eq=False)
class _Stream:
    produce: Callable[[threading.Event], Iterator[Any]]
    deliver: Callable[[Any, BaseException | None], None]
    ready: Callable[[], bool]
    urgent: bool
    urgent_items: int
    background: bool
    wait: UserWait | None
    # Monotonic times, comparable across models (CpuTurns ranks every model's streams).
    created: float = field(default_factory=time.monotonic)
    stop: threading.Event = field(default_factory=threading.Event)
    iterator: Iterator[Any] | None = None
    items: int = 0  # delivered
    taken: int = 0  # of those, read by the consumer
    last_step: float = 0.0

    def rank(self, policy: Policy) -> Rank:
        # Background work last, under either policy.
        if self.background:
            return (2, self.created)
        if policy is Policy.FIRST_IN_FIRST_OUT:
            return (1, self.created)
        # Urgent streams first, longest waiting first; the rest take turns (round
        # robin), so a long reply never starves another call's next sentence.
        if self.urgent or self.items < self.urgent_items:
            return (0, self.created if self.wait is None else self.wait.since)
        # Due soon, unless it is ahead of its reader (by more than the item just handed
        # over): a reply's tokens while the chunk before them is still being
        # synthesized would take the CPU that chunk's audio needs.
        due = None if self.wait is None else self.wait.due
        if (due is not None and self.items - self.taken <= 1
                and (urgent_from := due - DUE_LEAD_S) <= time.monotonic()):
            return (0, urgent_from)
        return (1, self.last_step or self.created)


class ModelThread:
    """A model's one thread; `iterate` streams items from a blocking generator.

    `urgent_items`: under URGENT_FIRST a stream counts as urgent until it has produced
    this many items (an LLM reply's first tokens), or for its whole life if its
    priority is urgent. `ready` lets a stream step aside (its turn's CPU gate is held)
    without blocking the thread for the others. `cpu`: the turns this model takes with
    the other local models (none: it steps whenever it has work).
    """

    def __init__(self, name: str, *, policy: Policy = Policy.URGENT_FIRST,
                 urgent_items: int = 0, cpu: CpuTurns | None = None) -> None:
        self.name = name
        self.policy = policy
        self._urgent_items = urgent_items
        self._cpu = cpu
        self._streams: list[_Stream] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"avatar-{name}", daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any, priority: Priority | None = None,
                  background: bool = False) -> T:
        """A single blocking call on the model thread (queued like a one-item stream)."""
        async for result in self.iterate(lambda _stop: iter([fn(*args)]),
                                         priority=priority, background=background):
            return result
        raise RuntimeError("unreachable: a one-item stream ended empty")

    async def iterate(
        self,
        produce: Callable[[threading.Event], Iterator[T]],
        *,
        priority: Priority | None = None,
        ready: Callable[[], bool] | None = None,
        background: bool = False,
    ) -> AsyncIterator[T]:
        """Yields the items `produce(stop)` makes on the model thread.

        `background` work runs only when no other stream is ready.

        Leaving early (break, aclose, cancellation) sets `stop` and closes the
        generator on the model thread before its next step.
        """
        if self._closed:
            raise RuntimeError(f"{self.name} model thread is closed")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()

        def deliver(item: Any, error: BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (item, error))
            except RuntimeError:  # loop closed: nobody is listening any more
                stream.stop.set()

        priority = priority or Priority()
        stream = _Stream(
            produce=produce,
            deliver=deliver,
            ready=ready or (lambda: True),
            urgent=priority.urgent,
            urgent_items=self._urgent_items,
            background=background,
            wait=priority.wait,
        )
        with self._wake:
            self._streams.append(stream)
            self._wake.notify()
        try:
            while True:
                item, error = await queue.get()
                if item is _END:
                    if error is not None:
                        raise error
                    return
                stream.taken += 1
                yield item
        finally:
            stream.stop.set()
            with self._wake:
                self._wake.notify()

    # ---- the model thread ------------------------------------------------------------

    def _rank(self, stream: _Stream) -> Rank:
        return stream.rank(self.policy)

    def _pick(self) -> _Stream | None:
        """The first stream by the policy that may run now; stopped ones are finished
        here."""
        ready: list[_Stream] = []
        for stream in list(self._streams):
            if stream.stop.is_set():
                self._streams.remove(stream)
                self._finish(stream, None)
            elif stream.ready():
                ready.append(stream)
        return min(ready, key=self._rank, default=None)

    def _best_rank(self) -> Rank:
        """The rank of the stream `_pick` would choose now (no side effects)."""
        with self._wake:
            ranks = [self._rank(s) for s in self._streams if not s.stop.is_set() and s.ready()]
        return min(ranks, default=NOTHING_READY)

    def _loop(self) -> None:
        while True:
            with self._wake:
                stream = None if self._closed else self._pick()
                while stream is None:
                    if self._closed:
                        for waiting in self._streams:
                            self._finish(waiting,
                                         RuntimeError(f"{self.name} model thread closed"))
                        self._streams.clear()
                        return
                    # Gated streams are polled: their gate opens on another thread.
                    self._wake.wait(0.01 if self._streams else None)
                    stream = None if self._closed else self._pick()
            if self._cpu is None:
                self._step(stream)
                continue
            with self._cpu.turn(self._best_rank) as keep:
                while True:
                    with self._wake:  # streams came, went or got ready while it waited
                        stream = None if self._closed else self._pick()
                    if stream is None:
                        break
                    self._step(stream)
                    if not keep(self._best_rank()):
                        break

    def _step(self, stream: _Stream) -> None:
        try:
            if stream.iterator is None:
                stream.iterator = stream.produce(stream.stop)
            item = next(stream.iterator)
        except StopIteration:
            self._drop(stream, None)
            return
        except BaseException as exc:
            self._drop(stream, exc)
            return
        stream.items += 1
        stream.last_step = time.monotonic()
        stream.deliver(item, None)

    def _drop(self, stream: _Stream, error: BaseException | None) -> None:
        with self._wake:
            if stream in self._streams:
                self._streams.remove(stream)
        self._finish(stream, error)

    def _finish(self, stream: _Stream, error: BaseException | None) -> None:
        if stream.iterator is not None:
            close = getattr(stream.iterator, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("%s: closing a stream failed", self.name)
        stream.deliver(_END, error)

    def close(self) -> None:
        """Ends the thread after the current step; streams still queued get an error.
        Closing it again does nothing (backends sharing a thread each close it)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
