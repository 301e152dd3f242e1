"""One thread per model: blocking inference never runs on the event loop.

Each model gets its own single-thread executor, so a model is never entered twice at
once (llama.cpp and Piper are not re-entrant) and calls queue in arrival order.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_END = object()


class ModelWorker:
    def __init__(self, name: str) -> None:
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"avatar-{name}")

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def iterate(
        self, produce: Callable[[threading.Event], Iterator[T]]
    ) -> AsyncIterator[T]:
        """Runs a blocking generator on the model's thread and yields its items here.

        `produce` gets a stop event; leaving the async iterator early (break, aclose,
        cancellation) sets it, and the producer must check it between items so the
        backend stops working, not just stops being listened to.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Any, error: BaseException | None = None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (item, error))
            except RuntimeError:  # loop already closed: nobody is listening
                stop.set()

        def run() -> None:
            iterator = produce(stop)
            try:
                for item in iterator:
                    if stop.is_set():
                        break
                    put(item)
            except BaseException as exc:
                put(_END, exc)
                return
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            put(_END)

        future = loop.run_in_executor(self._executor, run)
        try:
            while True:
                item, error = await queue.get()
                if item is _END:
                    if error is not None:
                        raise error
                    return
                yield item
        finally:
            stop.set()
            if not future.done():
                # Don't wait for the thread (it stops at its next check), but never
                # let its outcome go unretrieved.
                future.add_done_callback(lambda f: f.exception())

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
