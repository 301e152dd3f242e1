"""Joins synthesized audio without clicks: silence trimming, edge fades, cross-fades.

Generative TTS produces a sentence in pieces (F5-TTS per text batch, CosyVoice per
token hop). Concatenating them raw leaves a step in the waveform at every join, which
the ear hears as a click; a short raised-cosine cross-fade over the overlap removes it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from avatar_rtc.backends.base import Pcm

Audio = npt.NDArray[np.float32]
"""Mono float samples in [-1, 1]."""

_EMPTY: Audio = np.zeros(0, dtype=np.float32)


def to_pcm16(audio: Audio) -> Pcm:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def _ramp(n: int) -> Audio:
    """Rises from 0 to 1 over n samples (raised cosine: no corner at either end)."""
    if n <= 0:
        return _EMPTY
    t = (np.arange(n, dtype=np.float32) + 0.5) / n
    return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)


def fade(audio: Audio, fade_in: int = 0, fade_out: int = 0) -> Audio:
    out = np.array(audio, dtype=np.float32, copy=True)
    n_in = min(fade_in, len(out))
    if n_in:
        out[:n_in] *= _ramp(n_in)
    n_out = min(fade_out, len(out))
    if n_out:
        out[len(out) - n_out :] *= _ramp(n_out)[::-1]
    return out


def trim_silence(
    audio: Audio,
    rate: int,
    *,
    threshold_db: float = -42.0,
    keep_head_ms: float = 30.0,
    keep_tail_ms: float = 150.0,
    frame_ms: float = 10.0,
) -> Audio:
    """Drops silence at both ends, keeping a margin (the tail margin is the natural
    pause before the next sentence). All-silent audio comes back empty."""
    frame = max(1, int(rate * frame_ms / 1000))
    n = len(audio) // frame
    if n == 0:
        return _EMPTY
    frames = np.asarray(audio[: n * frame], dtype=np.float32).reshape(n, frame)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    loud = np.flatnonzero(rms > 10 ** (threshold_db / 20))
    if loud.size == 0:
        return _EMPTY
    start = max(0, loud[0] * frame - int(rate * keep_head_ms / 1000))
    end = min(len(audio), (loud[-1] + 1) * frame + int(rate * keep_tail_ms / 1000))
    return np.asarray(audio[start:end], dtype=np.float32)


class StreamJoiner:
    """Streams pieces out as they arrive, cross-fading every join.

    The last `overlap` samples of each piece are held back until the next piece comes
    (they are blended with its head) or the stream ends (they fade out). The first
    samples fade in, so a stream never starts or ends on a step.
    """

    def __init__(self, rate: int, crossfade_ms: float = 150.0, edge_fade_ms: float = 5.0) -> None:
        self.rate = rate
        self.overlap = max(0, int(rate * crossfade_ms / 1000))
        self.edge = max(0, int(rate * edge_fade_ms / 1000))
        self._held: Audio | None = None
        self.joins = 0

    def push(self, piece: Audio) -> Audio:
        """Adds a piece; returns the samples that are final now (maybe none)."""
        piece = np.asarray(piece, dtype=np.float32).reshape(-1)
        if piece.size == 0:
            return _EMPTY
        if self._held is None:
            combined = fade(piece, fade_in=self.edge)
        else:
            held = self._held
            n = min(len(held), len(piece), self.overlap)
            ramp = _ramp(n)
            blended = held[len(held) - n :] * ramp[::-1] + piece[:n] * ramp
            combined = np.concatenate([held[: len(held) - n], blended, piece[n:]])
            self.joins += 1
        # Hold at least the edge, so the end can still fade out with no overlap.
        keep = min(max(self.overlap, self.edge), len(combined))
        self._held = combined[len(combined) - keep :]
        return combined[: len(combined) - keep]

    def finish(self) -> Audio:
        """Ends the stream: the held tail, faded out. The joiner can be reused."""
        held, self._held = self._held, None
        if held is None:
            return _EMPTY
        return fade(held, fade_out=self.edge)
