"""The sender's media clock, mapped onto ours.

A received frame's arrival time says when *we* read it, which a busy event loop on
either side can delay by hundreds of milliseconds and then deliver in a burst. Its
RTP timestamp (``frame.pts``) says where it sits in the sender's stream. Mapping
timestamps onto our monotonic clock through the smallest (arrival - stream time)
seen, the frame that came fastest, gives each frame its capture time: a late burst
maps back to where it belongs, and a jump in the timestamps (lost packets,
discontinuous transmission) stays a gap.
"""

from __future__ import annotations

import av

_WRAP = 1 << 32  # RTP timestamps are 32-bit and start anywhere


class MediaClock:
    """Capture times of a stream's frames, on the clock that ``now`` is read from."""

    def __init__(self) -> None:
        self._last_pts: int | None = None
        self._start_s = 0.0  # stream time of the last frame's first sample
        self._end_s = 0.0  # ... and of the end of its last one
        self._offset: float | None = None  # our clock minus stream time, smallest seen

    def captured_at(self, frame: av.AudioFrame, now: float) -> float:
        """When the last sample of ``frame`` (read at ``now``) was captured."""
        pts, time_base = frame.pts, frame.time_base
        if pts is None or time_base is None or not frame.sample_rate:
            return now  # no timestamps: arrival is all there is
        if self._last_pts is not None:
            step = (pts - self._last_pts) % _WRAP
            if step < _WRAP // 2:
                self._start_s += float(step * time_base)
            else:  # backwards (a reset stream): these samples follow the last ones
                self._start_s = self._end_s
        self._last_pts = pts
        self._end_s = self._start_s + frame.samples / frame.sample_rate
        offset = now - self._end_s
        if self._offset is None or offset < self._offset:
            self._offset = offset
        return self._offset + self._end_s
