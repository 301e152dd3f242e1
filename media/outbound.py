"""Self-paced outbound audio track: 20 ms s16 mono frames at 48 kHz.

aiortc's RTP sender calls ``recv()`` in a tight loop and never sleeps, so the
track itself must release frames in real time. Silence fills any gap so the
RTP clock and the peer's jitter buffer stay continuous.

Frames go out as packed stereo (L = R): aiortc's Opus encoder works in stereo, and
its own upmix of mono applies a centre gain of 1/sqrt(2), 3 dB lost for nothing.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from .playout import PlayoutChunk
from .resample import Pcm

logger = logging.getLogger(__name__)

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms, the Opus packetisation aiortc uses
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)

ChunkCallback = Callable[[PlayoutChunk], None]
PcmTap = Callable[[Pcm], None]


class PacedAudioTrack(MediaStreamTrack):
    """Audio track that plays queued PCM on a fixed wall-clock schedule.

    Frame ``k`` is released no earlier than ``t0 + k * 20 ms`` where ``t0`` is
    the first ``recv()``; the schedule is absolute so sleep overshoot never
    accumulates into drift over a long call. All methods must be called from
    the event loop thread.
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[tuple[PlayoutChunk, Pcm]] = deque()
        self._queued_samples = 0
        self._t0: float | None = None
        self._samples_sent = 0
        self._frames_sent = 0
        self._stopped = False
        self._paused = False
        self._taps: list[PcmTap] = []
        # Called from the recv() task (the RTP sender): keep them cheap.
        self.on_chunk_started: ChunkCallback | None = None
        self.on_chunk_finished: ChunkCallback | None = None

    # -- owner API ---------------------------------------------------------

    def enqueue(self, pcm: Pcm, *, label: object = None) -> PlayoutChunk:
        """Queue int16 mono 48 kHz PCM of any length after what is queued.

        After ``stop()`` the returned chunk is already cleared, so awaiting it
        never hangs.
        """
        data = np.asarray(pcm)
        if data.dtype != np.int16:
            raise TypeError(f"expected int16 PCM, got {data.dtype}")
        if data.ndim != 1:
            raise ValueError(f"expected 1-D mono PCM, got shape {data.shape}")
        chunk = PlayoutChunk(total_samples=int(data.size), label=label)
        if self._stopped:
            chunk._mark_cleared()
            return chunk
        # Copy so the caller may reuse its buffer while we play it out.
        self._queue.append((chunk, data.copy()))
        self._queued_samples += chunk.total_samples
        return chunk

    def clear(self) -> list[PlayoutChunk]:
        """Drop all queued audio now and end any pause; the next frame is silence.

        Returns the dropped chunks in queue order (a partly sent one first),
        each marked cleared with ``sent_samples`` exactly as emitted.
        """
        dropped = [chunk for chunk, _ in self._queue]
        self._queue.clear()
        self._queued_samples = 0
        self._paused = False  # nothing is held any more, so the next audio plays
        for chunk in dropped:
            chunk._mark_cleared()
        return dropped

    def pause(self) -> None:
        """Send silence but keep the queue (the user may only be coughing)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def add_tap(self, fn: PcmTap) -> None:
        """Receive every 48 kHz frame actually sent, silence included (read-only)."""
        self._taps.append(fn)

    def remove_tap(self, fn: PcmTap) -> None:
        self._taps.remove(fn)

    @property
    def is_playing(self) -> bool:
        return self._queued_samples > 0

    @property
    def queued_samples(self) -> int:
        return self._queued_samples

    @property
    def total_frames_sent(self) -> int:
        return self._frames_sent

    def stop(self) -> None:
        """End the track: ``recv()`` raises afterwards and waiters are released."""
        self._stopped = True
        self.clear()
        super().stop()

    # -- aiortc side -------------------------------------------------------

    async def recv(self) -> av.AudioFrame:
        if self._stopped:
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.monotonic()
        target = self._t0 + self._samples_sent / SAMPLE_RATE
        # A deadline, not polling: loop only because timers may fire a hair
        # early (loop clock resolution), which would break "never early".
        while (delay := target - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)
        if self._stopped:
            raise MediaStreamError

        # Assemble after sleeping so a clear() during the wait takes effect
        # on this very frame; no await happens from here to the return.
        pcm, events = self._take_frame(time.monotonic())
        stereo = np.repeat(pcm, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = TIME_BASE
        frame.pts = self._samples_sent
        self._samples_sent += FRAME_SAMPLES
        self._frames_sent += 1
        # Callbacks run only after the queue is consistent, so one that calls
        # clear() or enqueue() affects the next frame, not this one.
        for callback, chunk in events:
            _call_safely(callback, chunk, what="chunk callback")
        for tap in self._taps:
            _call_safely(tap, pcm, what="tap")
        return frame

    def _take_frame(self, now: float) -> tuple[Pcm, list[tuple[ChunkCallback, PlayoutChunk]]]:
        """Fill one frame from the queue head(s), padding with silence.

        Returns the frame and the chunk callbacks due, in order.
        """
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        events: list[tuple[ChunkCallback, PlayoutChunk]] = []
        filled = 0
        while self._queue and not self._paused:
            chunk, data = self._queue[0]
            remaining = chunk.remaining_samples
            if filled == FRAME_SAMPLES and remaining > 0:
                break
            take = min(FRAME_SAMPLES - filled, remaining)
            if chunk.started_at is None:
                chunk._mark_started(now)
                if self.on_chunk_started is not None:
                    events.append((self.on_chunk_started, chunk))
            start = chunk.sent_samples
            out[filled : filled + take] = data[start : start + take]
            chunk.sent_samples += take
            self._queued_samples -= take
            filled += take
            if chunk.remaining_samples == 0:
                # Zero-length chunks also pass through here, in queue order.
                self._queue.popleft()
                chunk._mark_finished(now)
                if self.on_chunk_finished is not None:
                    events.append((self.on_chunk_finished, chunk))
        return out, events


_T = TypeVar("_T")


def _call_safely(fn: Callable[[_T], None], arg: _T, *, what: str) -> None:
    # An owner's bug must not raise into aiortc's sender loop and end RTP.
    try:
        fn(arg)
    except Exception:
        logger.exception("PacedAudioTrack %s raised", what)
