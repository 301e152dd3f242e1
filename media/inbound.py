"""Continuous reader for a remote audio track, delivering int16 mono PCM.

aiortc's ``RemoteStreamTrack`` queues decoded frames without bound, so the
track must be drained for the whole call even when nobody needs the audio.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from .clock import MediaClock
from .resample import FrameResampler, Pcm

logger = logging.getLogger(__name__)

PcmSink = Callable[[Pcm], None]


class InboundAudio:
    """Read ``track`` in a task and hand ``rate`` Hz mono int16 PCM to ``sink``.

    ``on_end`` fires once when the track ends on its own (peer gone, track
    stopped), not when ``stop()`` is called. Sink, tap and ``on_end`` errors
    are logged and never end the reader.
    """

    def __init__(
        self,
        track: MediaStreamTrack,
        sink: PcmSink,
        *,
        rate: int = 16000,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.track = track
        self.rate = rate
        self._sink = sink
        self._on_end = on_end
        self._resampler = FrameResampler(rate)
        self._taps: list[PcmSink] = []
        self._task: asyncio.Task[None] | None = None
        self._clock = MediaClock()
        # When the sender captured the audio being delivered (monotonic clock): for a
        # tap that places it in time, such as the call recorder.
        self.captured_at = 0.0
        self.frames_received = 0
        self.samples_out = 0
        self.sink_errors = 0
        self.convert_errors = 0

    def add_tap(self, fn: PcmSink) -> None:
        """Receive the same ``rate`` Hz PCM as the sink (e.g. for recording)."""
        self._taps.append(fn)

    def remove_tap(self, fn: PcmSink) -> None:
        self._taps.remove(fn)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def finished(self) -> bool:
        """True once the reader task has ended (track ended or stopped)."""
        return self._task is not None and self._task.done()

    def start(self) -> None:
        """Start reading; must be called from a running event loop. Idempotent."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"inbound-audio-{self.track.id}")

    async def wait_ended(self) -> None:
        """Wait until the reader task ends, without cancelling it."""
        if self._task is not None:
            await asyncio.wait([self._task])

    async def stop(self) -> None:
        """Cancel the reader and wait for it. Idempotent; safe before start()."""
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        # asyncio.wait, unlike awaiting the task, does not swallow a
        # cancellation aimed at our caller.
        await asyncio.wait([task])

    async def _run(self) -> None:
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                break
            self.frames_received += 1
            if not isinstance(frame, av.AudioFrame):
                logger.warning("InboundAudio got a non-audio frame: %r", type(frame))
                continue
            self.captured_at = self._clock.captured_at(frame, time.monotonic())
            try:
                pcm = self._resampler.resample(frame)
            except Exception:
                # A malformed frame must not stop draining the track; restart
                # the filter since its state is unknown after a failure.
                self.convert_errors += 1
                if _sparse(self.convert_errors):
                    logger.exception("InboundAudio failed to convert a frame")
                self._resampler = FrameResampler(self.rate)
                continue
            self._deliver(pcm)
        self._deliver(self._resampler.flush())
        if self._on_end is not None:
            try:
                self._on_end()
            except Exception:
                logger.exception("InboundAudio on_end raised")

    def _deliver(self, pcm: Pcm) -> None:
        if pcm.size == 0:
            return
        self.samples_out += int(pcm.size)
        for fn in (self._sink, *self._taps):
            try:
                fn(pcm)
            except Exception:
                self.sink_errors += 1
                if _sparse(self.sink_errors):
                    logger.exception("InboundAudio sink/tap raised (%d so far)", self.sink_errors)


def _sparse(count: int) -> bool:
    # A persistent fault repeats 50 times a second; log the 1st, 2nd, 4th, ...
    return count & (count - 1) == 0
