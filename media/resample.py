"""Stateful audio resamplers: PyAV frames in, int16 mono numpy out.

Both classes keep filter state between calls so consecutive pieces of one
stream join without clicks; resetting per piece would restart the filter
history at every boundary.
"""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt
import soxr

Pcm = npt.NDArray[np.int16]

_EMPTY: Pcm = np.zeros(0, dtype=np.int16)


def _frame_signature(frame: av.AudioFrame) -> tuple[str, str, int]:
    return (frame.format.name, frame.layout.name, frame.sample_rate)


class FrameResampler:
    """Convert any ``av.AudioFrame`` stream to int16 mono at ``out_rate``.

    One instance per direction/stream. The underlying ``av.AudioResampler`` is
    built lazily from the first frame and reused; it is rebuilt only if the
    input format changes (PyAV refuses mismatched frames), never per frame.
    """

    def __init__(self, out_rate: int) -> None:
        if out_rate <= 0:
            raise ValueError(f"out_rate must be positive, got {out_rate}")
        self.out_rate = out_rate
        self._resampler: av.AudioResampler | None = None
        self._signature: tuple[str, str, int] | None = None

    def _new_resampler(self) -> av.AudioResampler:
        return av.AudioResampler(format="s16", layout="mono", rate=self.out_rate)

    def resample(self, frame: av.AudioFrame) -> Pcm:
        """Return the int16 mono samples produced for ``frame`` (may be empty)."""
        signature = _frame_signature(frame)
        if self._resampler is None or signature != self._signature:
            # A format change mid-stream is rare (codec switch); keep the old
            # filter's buffered tail rather than dropping it.
            tail = self.flush() if self._resampler is not None else _EMPTY
            self._resampler = self._new_resampler()
            self._signature = signature
            out = _frames_to_pcm(self._resampler.resample(frame))
            return np.concatenate([tail, out]) if tail.size else out
        return _frames_to_pcm(self._resampler.resample(frame))

    def flush(self) -> Pcm:
        """Drain samples buffered inside the filter and start over fresh."""
        if self._resampler is None:
            return _EMPTY
        out = _frames_to_pcm(self._resampler.resample(None))
        # A flushed filter graph is at EOF and cannot accept more frames.
        self._resampler = None
        self._signature = None
        return out


def _frames_to_pcm(frames: list[av.AudioFrame]) -> Pcm:
    if not frames:
        return _EMPTY
    # s16 mono is packed with one plane; to_ndarray gives shape (1, n).
    parts = [np.asarray(f.to_ndarray(), dtype=np.int16).reshape(-1) for f in frames]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class PcmResampler:
    """Streaming int16 mono resampler over raw numpy buffers (soxr)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream: soxr.ResampleStream | None = None
        if in_rate != out_rate:
            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16")
        # soxr must be cleared after a final (last=True) chunk before reuse.
        self._needs_clear = False

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    def process(self, pcm: Pcm) -> Pcm:
        """Resample the next piece of the stream; output length varies per call."""
        data = _as_mono_int16(pcm)
        if self._stream is None:
            return data
        if self._needs_clear:
            self._stream.clear()
            self._needs_clear = False
        out: Pcm = self._stream.resample_chunk(data)
        return out

    def flush(self) -> Pcm:
        """Emit the samples still held by the filter; the stream then restarts."""
        if self._stream is None or self._needs_clear:
            return _EMPTY
        out: Pcm = self._stream.resample_chunk(_EMPTY, last=True)
        self._needs_clear = True
        return out

    def reset(self) -> None:
        """Drop buffered state, e.g. when a new unrelated stream begins."""
        if self._stream is not None:
            self._stream.clear()
        self._needs_clear = False


def _as_mono_int16(pcm: Pcm) -> Pcm:
    data = np.asarray(pcm)
    if data.dtype != np.int16:
        raise TypeError(f"expected int16 PCM, got {data.dtype}")
    if data.ndim != 1:
        raise ValueError(f"expected 1-D mono PCM, got shape {data.shape}")
    # soxr needs a contiguous buffer; slices with a step are not.
    return np.ascontiguousarray(data)


def resample_pcm(pcm: Pcm, in_rate: int, out_rate: int) -> Pcm:
    """One-shot resampling of a self-contained piece (a synthesized sentence).

    Each piece starts and ends in silence, so no filter state needs to carry over,
    and nothing is held back waiting for the next piece.
    """
    if in_rate == out_rate:
        return _as_mono_int16(pcm)
    resampler = PcmResampler(in_rate, out_rate)
    out = resampler.process(pcm)
    tail = resampler.flush()
    return np.concatenate([out, tail]) if tail.size else out
