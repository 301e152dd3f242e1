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
import time

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from .playout import FRAME_SAMPLES, SAMPLE_RATE, PlayoutQueue

TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


class PacedAudioTrack(PlayoutQueue, MediaStreamTrack):
    """A playout queue sent as an audio track, one frame per 20 ms of wall clock.

    Frame ``k`` is released no earlier than ``t0 + k * 20 ms`` where ``t0`` is
    the first ``recv()``; the schedule is absolute so sleep overshoot never
    accumulates into drift over a long call. All methods must be called from
    the event loop thread.
    """

    kind = "audio"

    def __init__(self) -> None:
        PlayoutQueue.__init__(self, time.monotonic)
        MediaStreamTrack.__init__(self)
        self._t0: float | None = None
        self._samples_sent = 0
        self._frames_sent = 0

    @property
    def total_frames_sent(self) -> int:
        return self._frames_sent

    def stop(self) -> None:
        """End the track: ``recv()`` raises afterwards and waiters are released."""
        self.close()
        super().stop()

    async def recv(self) -> av.AudioFrame:
        if self.closed:
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.monotonic()
        target = self._t0 + self._samples_sent / SAMPLE_RATE
        # A deadline, not polling: loop only because timers may fire a hair
        # early (loop clock resolution), which would break "never early".
        while (delay := target - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)
        if self.closed:
            raise MediaStreamError

        # Assemble after sleeping so a clear() during the wait takes effect
        # on this very frame; no await happens from here to the return.
        pcm = self.next_frame(time.monotonic())
        stereo = np.repeat(pcm, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = TIME_BASE
        frame.pts = self._samples_sent
        self._samples_sent += FRAME_SAMPLES
        self._frames_sent += 1
        return frame
