"""One model thread shared by every call, serving the most urgent stream first.

A plain single-thread executor runs whole jobs in arrival order: with four callers,
a new question waits for every reply queued before it to be generated in full. Here
the thread advances the streams one item (a token, a sentence of audio) at a time
and always picks the most urgent ready one: a reply that has not reached its first
audio goes before replies that are already playing and have seconds of audio queued;
those take turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

_END = object()

# Set by the conversation around work the user is waiting for (a reply's first chunk).
URGENT: contextvars.ContextVar[bool] = contextvars.ContextVar("avatar_urgent", default=False)


@contextlib.contextmanager
def urgent(flag: bool = True) -> Iterator[None]:
    token = URGENT.set(flag)
    try:
        yield
    finally:
        URGENT.reset(token)


@dataclass(eq=False)
class _Stream:
    produce: Callable[[threading.Event], Iterator[Any]]
    deliver: Callable[[Any, BaseException | None], None]
    ready: Callable[[], bool]
    urgent: bool
    urgent_items: int
    background: bool
    seq: int
    stop: threading.Event = field(default_factory=threading.Event)
    iterator: Iterator[Any] | None = None
    items: int = 0
    last_step: int = -1

    def rank(self) -> tuple[int, int]:
        # Urgent streams first, oldest first; the rest take turns (round robin), so a
        # long reply never starves another call's next sentence. Background work last.
        if self.background:
            return (2, self.seq)
        if self.urgent or self.items < self.urgent_items:
            return (0, self.seq)
        return (1, self.last_step)


class SharedWorker:
    """A model's one thread; `iterate` streams items from a blocking generator.

    `urgent_items`: a stream counts as urgent until it has produced this many items
    (an LLM reply's first tokens), or for its whole life if started under `urgent()`.
    `ready` lets a stream step aside (its turn's CPU gate is held) without blocking
    the thread for the others.
    """

    def __init__(self, name: str, *, urgent_items: int = 0) -> None:
        self.name = name
        self._urgent_items = urgent_items
        self._streams: list[_Stream] = []
        self._seq = itertools.count()
        self._steps = itertools.count()
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
            seq=next(self._seq),
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
            self._step(stream)

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
        stream.last_step = next(self._steps)
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
