"""One model thread shared by every call, serving the most urgent stream first.

A plain single-thread executor runs whole jobs in arrival order: with four callers,
a new question waits for every reply queued before it to be generated in full. Here
the thread advances the streams one item (a token, a sentence of audio) at a time
and always picks the most urgent ready one: a reply that has not reached its first
audio goes before replies that are already playing and have seconds of audio queued;
those take turns.

On a small CPU the models also take turns with each other (CpuTurns): one step of one
model at a time, the most urgent first, instead of two models' thread pools fighting
over the same cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
V = TypeVar("V")

log = logging.getLogger(__name__)

_END = object()

# Set by the conversation around work the user is waiting for (a reply's first chunk).
URGENT: contextvars.ContextVar[bool] = contextvars.ContextVar("avatar_urgent", default=False)


@contextlib.contextmanager
def _setting(var: contextvars.ContextVar[V], value: V) -> Iterator[None]:
    """`var` is `value` inside the block (and in tasks and streams started there)."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def urgent(flag: bool = True) -> contextlib.AbstractContextManager[None]:
    return _setting(URGENT, flag)


@dataclass
class UserWait:
    """What the user of one turn is waiting for, in time.monotonic() seconds; every
    stream started for the turn (transcript, reply, each chunk's audio) carries it.

    `since`: when the user began to wait. Urgent streams rank by it, so a turn's STT,
    first tokens and first audio keep the turn's place in line whichever model they
    reach. Ranked by each stream's own start instead, a later turn's transcript would
    overtake an earlier turn's first tokens: every waiting turn finishes late, instead
    of the first early.

    `due`: when the reply audio queued so far runs out (None before the first). Taking
    turns with other replies, the next chunk's tokens and audio could miss it by
    seconds on a busy CPU (four callers on two cores: 5-13 s silences mid-reply).
    DUE_LEAD_S before it, the turn's streams turn urgent, in line as if the user had
    been waiting since then.
    """

    since: float
    due: float | None = None


USER_WAIT: contextvars.ContextVar[UserWait | None] = contextvars.ContextVar(
    "avatar_user_wait", default=None)
DUE_LEAD_S = 1.0


def user_waits(wait: UserWait) -> contextlib.AbstractContextManager[None]:
    return _setting(USER_WAIT, wait)


# (class, time): 0 urgent, 1 playing, 2 background; then the oldest (or longest idle).
Rank = tuple[int, float]
_NOTHING_READY: Rank = (3, float("inf"))


@dataclass(eq=False)
class _Stream:
    produce: Callable[[threading.Event], Iterator[Any]]
    deliver: Callable[[Any, BaseException | None], None]
    ready: Callable[[], bool]
    urgent: bool
    urgent_items: int
    background: bool
    # Monotonic times, comparable across models (CpuTurns ranks every model's streams).
    created: float = field(default_factory=time.monotonic)
    wait: UserWait | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    iterator: Iterator[Any] | None = None
    items: int = 0  # delivered
    taken: int = 0  # of those, read by the consumer
    last_step: float = 0.0

    def rank(self) -> Rank:
        # Urgent streams first, longest waiting first; the rest take turns (round
        # robin), so a long reply never starves another call's next sentence.
        # Background work last.
        if self.background:
            return (2, self.created)
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


class SharedWorker:
    """A model's one thread; `iterate` streams items from a blocking generator.

    `urgent_items`: a stream counts as urgent until it has produced this many items
    (an LLM reply's first tokens), or for its whole life if started under `urgent()`.
    `ready` lets a stream step aside (its turn's CPU gate is held) without blocking
    the thread for the others. `cpu`: the turns this model takes with the other local
    models (none: it steps whenever it has work).
    """

    def __init__(self, name: str, *, urgent_items: int = 0,
                 cpu: CpuTurns | None = None) -> None:
        self.name = name
        self._urgent_items = urgent_items
        self._cpu = cpu
        self._streams: list[_Stream] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"avatar-{name}", daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any, background: bool = False,
                  **kwargs: Any) -> T:
        """A single blocking call on the model thread (queued like a one-item stream)."""
        async for result in self.iterate(lambda _stop: iter([fn(*args, **kwargs)]),
                                         background=background):
            return result
        raise RuntimeError("unreachable: a one-item stream ended empty")

    async def iterate(
        self,
        produce: Callable[[threading.Event], Iterator[T]],
        *,
        ready: Callable[[], bool] | None = None,
        background: bool = False,
    ) -> AsyncIterator[T]:
        """Yields the items `produce(stop)` makes on the model thread.

        `background` work runs only when no other stream is ready.

        Leaving early (break, aclose, cancellation) sets `stop` and closes the
        generator on the model thread before its next step.
        """
        if self._closed:
            raise RuntimeError(f"{self.name} worker is closed")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()

        def deliver(item: Any, error: BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (item, error))
            except RuntimeError:  # loop closed: nobody is listening any more
                stream.stop.set()

        stream = _Stream(
            produce=produce,
            deliver=deliver,
            ready=ready or (lambda: True),
            urgent=URGENT.get(),
            urgent_items=self._urgent_items,
            background=background,
            wait=USER_WAIT.get(),
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

    def _pick(self) -> _Stream | None:
        """The most urgent stream that may run now; stopped ones are finished here."""
        ready: list[_Stream] = []
        for stream in list(self._streams):
            if stream.stop.is_set():
                self._streams.remove(stream)
                self._finish(stream, None)
            elif stream.ready():
                ready.append(stream)
        return min(ready, key=_Stream.rank, default=None)

    def _best_rank(self) -> Rank:
        """The rank of the stream `_pick` would choose now (no side effects)."""
        with self._wake:
            ranks = [s.rank() for s in self._streams if not s.stop.is_set() and s.ready()]
        return min(ranks, default=_NOTHING_READY)

    def _loop(self) -> None:
        while True:
            with self._wake:
                stream = None if self._closed else self._pick()
                while stream is None:
                    if self._closed:
                        for waiting in self._streams:
                            self._finish(waiting, RuntimeError(f"{self.name} worker closed"))
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
        """Ends the thread after the current step; streams still queued get an error."""
        with self._wake:
            self._closed = True
            self._wake.notify()
