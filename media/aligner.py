"""One track's PCM placed on the call's timeline, from when each chunk arrived.

Both sides of a recording start at the recorder's ``t0``, so the same offset in each
means the same moment:

- a track whose audio starts late is padded with silence up to its first arrival;
- a stall (network gap, lost packets) is padded with the silence the wall clock says
  is missing, but a burst that only delivers late audio is not: the pad is the
  *smallest* lag seen over the next ``window_s`` of arrivals, so jitter and a loop
  that drains a backlog at once never insert silence;
- a chunk may say when it was captured (the sender's media clock, see
  media.clock): it is placed by that instead, so a sender that catches up slowly
  after a stall (a busy loop) still inserts nothing, whatever the window;
- if the audio runs ahead of the clock (a sender clock a little fast), quiet chunks
  are shortened until it is back within ``ahead_s`` (trimming silence is harmless, so
  this bound is tighter than the one for inserting it).
"""

from __future__ import annotations

import bisect
from array import array
from collections import deque

import numpy as np

from .resample import Pcm

_SILENCE_BLOCK_S = 1.0  # long pads are written in pieces: bounded memory
_QUIET_PEAK = 300  # a chunk this quiet may be shortened to pull the track back in line


class Aligner:
    """Places PCM chunks on a timeline that starts at ``t0``, from their arrival times.

    Pure bookkeeping (no I/O, clock passed in). ``at`` is when a chunk's last sample
    arrived, ``captured_at`` (default ``at``) when the sender captured it, on our
    clock. A chunk is placed by its capture time once ``window_s`` of later arrivals
    are known (``pull``), or at ``finish``; ``position_at`` maps arrival times.
    """

    def __init__(self, rate: int, t0: float, *, tolerance_s: float = 0.12,
                 ahead_s: float = 0.04, window_s: float = 1.0) -> None:
        self.rate = rate
        self.t0 = t0
        self.tolerance = round(tolerance_s * rate)
        self.ahead = round(ahead_s * rate)
        self.window_s = window_s
        self.position = 0  # samples placed so far: audio + silence - drops
        self.padded = 0
        self.dropped = 0
        self._started = False
        self._pending: deque[tuple[Pcm, float, float]] = deque()
        # Where each placed chunk landed, by arrival: maps a moment to the recording.
        self._arrivals = array("d")
        self._starts = array("q")
        self._ends = array("q")

    def push(self, pcm: Pcm, at: float, captured_at: float | None = None) -> None:
        if pcm.size:
            self._pending.append((pcm, at, at if captured_at is None else captured_at))

    def pull(self, now: float) -> list[Pcm]:
        """Pieces (audio or silence) ready to encode, for chunks older than the window."""
        out: list[Pcm] = []
        while self._pending and self._pending[0][1] + self.window_s <= now:
            self._place_head(out)
        return out

    def finish(self, end_at: float) -> list[Pcm]:
        """Everything left, then silence up to ``end_at``."""
        out: list[Pcm] = []
        while self._pending:
            self._place_head(out)
        missing = self._target(end_at) - self.position
        if missing > 0:
            self._silence(missing, out)
        return out

    def _target(self, at: float) -> int:
        return round((at - self.t0) * self.rate)

    def _place_head(self, out: list[Pcm]) -> None:
        pcm, at, _ = self._pending[0]
        # Lag of each chunk in the window if nothing were inserted: its capture time on
        # the timeline minus where its last sample would land. The smallest lag is
        # what is really missing; a burst of late-but-delivered audio brings it to ~0.
        end = self.position
        lag: int | None = None
        for chunk, arrived, captured in self._pending:
            if arrived > at + self.window_s:
                break
            end += chunk.size
            behind = self._target(captured) - end
            lag = behind if lag is None else min(lag, behind)
        assert lag is not None
        self._pending.popleft()
        threshold = 0 if not self._started else self.tolerance
        self._started = True
        if lag > threshold:
            self._silence(lag, out)
        elif lag < -self.ahead and _peak(pcm) <= _QUIET_PEAK:
            cut = min(pcm.size, -lag)
            self.dropped += cut
            pcm = pcm[cut:]
        start = self.position
        if pcm.size:
            out.append(pcm)
            self.position += pcm.size
        self._arrivals.append(at)
        self._starts.append(start)
        self._ends.append(self.position)

    def position_at(self, at: float) -> int:
        """Where the track was at the monotonic time ``at``, for chunks already placed.

        The end of the last chunk that arrived by ``at``, plus the time since, but never
        past the next chunk's start: exact through gaps and bursts alike, where
        ``(at - t0) * rate`` would be off by however late a burst came.
        """
        if not self._arrivals:
            return max(0, self._target(at))
        i = bisect.bisect_right(self._arrivals, at) - 1
        if i < 0:
            return max(0, min(self._target(at), self._starts[0]))
        position = self._ends[i] + round((at - self._arrivals[i]) * self.rate)
        if i + 1 < len(self._arrivals):
            position = min(position, self._starts[i + 1])
        return position

    def _silence(self, samples: int, out: list[Pcm]) -> None:
        self.padded += samples
        self.position += samples
        block = round(_SILENCE_BLOCK_S * self.rate)
        while samples > 0:
            size = min(block, samples)
            out.append(np.zeros(size, dtype=np.int16))
            samples -= size


def _peak(pcm: Pcm) -> int:
    return int(np.abs(pcm.astype(np.int32)).max(initial=0))
