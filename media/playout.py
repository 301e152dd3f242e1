"""Bookkeeping record for one piece of audio queued on an outbound track."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(eq=False)
class PlayoutChunk:
    """One ``enqueue()`` call's audio and how much of it has left the track.

    Only the track mutates these fields; owners read them and ``await wait()``.
    Identity equality on purpose: two chunks with equal counters are distinct.
    """

    total_samples: int
    label: object = None
    sent_samples: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    cleared: bool = False
    _done: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    @property
    def remaining_samples(self) -> int:
        return self.total_samples - self.sent_samples

    @property
    def done(self) -> bool:
        """True once fully sent or cleared (dropped) before the end."""
        return self._done.is_set()

    async def wait(self) -> None:
        """Return when the chunk is fully sent or cleared, whichever comes first."""
        await self._done.wait()

    def _mark_started(self, now: float) -> None:
        if self.started_at is None:
            self.started_at = now

    def _mark_finished(self, now: float) -> None:
        self.finished_at = now
        self._done.set()

    def _mark_cleared(self) -> None:
        self.cleared = True
        self._done.set()
