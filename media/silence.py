"""Leading-silence trimming: a voice's first sample is the listener's first cue."""

from __future__ import annotations

import numpy as np

from .resample import Pcm

# Peak below which a 16-bit sample counts as silence (-40 dBFS): TTS models start
# most utterances with 5-60 ms of near-silence that would only delay the reply.
SILENCE_PEAK = 328


def trim_leading_silence(pcm: Pcm, rate: int, *, keep_ms: float = 10.0,
                         peak: int = SILENCE_PEAK) -> Pcm:
    """Drops the silence before the first sample louder than `peak`, keeping `keep_ms`
    of it so the onset is not clipped. All-silent input is returned unchanged."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > peak)
    if loud.size == 0:
        return pcm
    start = max(0, int(loud[0]) - int(rate * keep_ms / 1000))
    return pcm[start:]
