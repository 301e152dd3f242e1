"""The agent's outbound audio queue, played out one 20 ms frame at a time.

One queue serves the real call and the offline replay: its owner only decides when a
frame is due (``PacedAudioTrack.recv()`` on the wall clock, the replay's driver on
its simulated clock) and asks for it with ``next_frame(at)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from .resample import Pcm

logger = logging.getLogger(__name__)

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms, the Opus packetisation aiortc uses


@dataclass(eq=False)
class PlayoutChunk:
    """One ``enqueue()`` call's audio and how much of it has been played out.

    Only the queue mutates these fields; owners read them and ``await wait()``.
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


ChunkCallback = Callable[[PlayoutChunk], None]
PcmTap = Callable[[Pcm], None]


@dataclass(eq=False)
class _Queued:
    chunk: PlayoutChunk
    pcm: Pcm
    queued_at: float


class PlayoutQueue:
    """Queued int16 mono 48 kHz PCM, cut into 20 ms frames on demand.

    ``clock`` stamps each ``enqueue()``: the frame due at ``at`` plays only audio
    queued by then, so audio queued while a frame was being assembled waits for the
    next one. Paused, frames are silence and the queue is kept. All methods must be
    called from the event loop thread.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._chunks: deque[_Queued] = deque()
        self._queued_samples = 0
        self._paused = False
        self._closed = False
        self._gain = 1.0
        self._taps: list[PcmTap] = []
        # Called from whatever plays the frames (the RTP sender): keep them cheap.
        self.on_chunk_started: ChunkCallback | None = None
        self.on_chunk_finished: ChunkCallback | None = None

    def enqueue(self, pcm: Pcm, *, label: object = None) -> PlayoutChunk:
        """Queue int16 mono 48 kHz PCM of any length after what is queued.

        After ``close()`` the returned chunk is already cleared, so awaiting it
        never hangs.
        """
        data = np.asarray(pcm)
        if data.dtype != np.int16:
            raise TypeError(f"expected int16 PCM, got {data.dtype}")
        if data.ndim != 1:
            raise ValueError(f"expected 1-D mono PCM, got shape {data.shape}")
        chunk = PlayoutChunk(total_samples=int(data.size), label=label)
        if self._closed:
            chunk._mark_cleared()
            return chunk
        # Copy so the caller may reuse its buffer while we play it out.
        self._chunks.append(_Queued(chunk, data.copy(), self._clock()))
        self._queued_samples += chunk.total_samples
        return chunk

    def clear(self) -> list[PlayoutChunk]:
        """Drop all queued audio now and end any pause; the next frame is silence.

        Returns the dropped chunks in queue order (a partly sent one first),
        each marked cleared with ``sent_samples`` exactly as emitted.
        """
        dropped = [queued.chunk for queued in self._chunks]
        self._chunks.clear()
        self._queued_samples = 0
        self._paused = False  # nothing is held any more, so the next audio plays
        for chunk in dropped:
            chunk._mark_cleared()
        return dropped

    def pause(self) -> None:
        """Play silence but keep the queue (the user may only be coughing)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def set_gain(self, gain: float) -> None:
        """Play what follows at `gain` (1.0: as queued), e.g. ducked under the user."""
        self._gain = min(1.0, max(0.0, gain))

    def close(self) -> None:
        """Drop the queue for good: waiters are released, later audio is cleared."""
        self._closed = True
        self.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    def add_tap(self, fn: PcmTap) -> None:
        """Receive every frame played, silence included (read-only)."""
        self._taps.append(fn)

    def remove_tap(self, fn: PcmTap) -> None:
        self._taps.remove(fn)

    @property
    def is_playing(self) -> bool:
        return self._queued_samples > 0

    @property
    def queued_samples(self) -> int:
        return self._queued_samples

    def next_frame(self, at: float) -> Pcm:
        """The frame due at ``at``, then the chunk callbacks and taps it causes."""
        pcm, events = self._take_frame(at)
        if self._gain != 1.0:
            pcm = (pcm * self._gain).astype(np.int16)
        # Callbacks run only after the queue is consistent, so one that calls
        # clear() or enqueue() affects the next frame, not this one.
        for callback, chunk in events:
            _call_safely(callback, chunk, what="chunk callback")
        for tap in self._taps:
            _call_safely(tap, pcm, what="tap")
        return pcm

    def _take_frame(self, at: float) -> tuple[Pcm, list[tuple[ChunkCallback, PlayoutChunk]]]:
        """Fill one frame from the queue head(s), padding with silence."""
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        events: list[tuple[ChunkCallback, PlayoutChunk]] = []
        filled = 0
        while self._chunks and not self._paused:
            head = self._chunks[0]
            chunk = head.chunk
            if head.queued_at > at:
                break
            remaining = chunk.remaining_samples
            if filled == FRAME_SAMPLES and remaining > 0:
                break
            take = min(FRAME_SAMPLES - filled, remaining)
            if chunk.started_at is None:
                chunk._mark_started(at)
                if self.on_chunk_started is not None:
                    events.append((self.on_chunk_started, chunk))
            start = chunk.sent_samples
            out[filled : filled + take] = head.pcm[start : start + take]
            chunk.sent_samples += take
            self._queued_samples -= take
            filled += take
            if chunk.remaining_samples == 0:
                # Zero-length chunks also pass through here, in queue order.
                self._chunks.popleft()
                chunk._mark_finished(at)
                if self.on_chunk_finished is not None:
                    events.append((self.on_chunk_finished, chunk))
        return out, events


_T = TypeVar("_T")


def _call_safely(fn: Callable[[_T], None], arg: _T, *, what: str) -> None:
    # An owner's bug must not raise into the frame's driver (aiortc's sender loop).
    try:
        fn(arg)
    except Exception:
        logger.exception("PlayoutQueue %s raised", what)
