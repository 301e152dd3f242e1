"""Audio files in the formats the replay tool reads, encoded with PyAV at test time."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from avatar_rtc.backends.base import Pcm
from media.resample import resample_pcm

# suffix -> (codec, sample rate the codec is given)
CODECS = {".wav": ("pcm_s16le", None), ".flac": ("flac", None), ".mp3": ("libmp3lame", 44100),
          ".ogg": ("libopus", 48000)}


def encode(path: Path, pcm: Pcm, rate: int) -> Path:
    """Writes mono int16 `pcm` to `path` in the format its suffix names."""
    codec, codec_rate = CODECS[path.suffix]
    if codec_rate is not None and codec_rate != rate:
        pcm, rate = resample_pcm(pcm, rate, codec_rate), codec_rate
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"  # type: ignore[union-attr]
        resampler = av.AudioResampler(format=stream.format.name,  # type: ignore[union-attr]
                                      layout="mono", rate=rate)
        frame = av.AudioFrame.from_ndarray(np.asarray(pcm, np.int16).reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate = rate
        for piece in resampler.resample(frame):
            for packet in stream.encode(piece):  # type: ignore[union-attr]
                container.mux(packet)
        for packet in stream.encode(None):  # type: ignore[union-attr]
            container.mux(packet)
    return path
