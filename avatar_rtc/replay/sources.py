"""Audio files (wav, flac, mp3, ogg/opus, anything FFmpeg reads) as mono int16 PCM.

Decoding is blocking work: callers on an event loop run `load_audio` in a thread.
Every failure is a ReplayError that names the file and says what is wrong with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from avatar_rtc.replay.errors import ReplayError
from media.resample import Pcm

# Longer than any sensible replay; guards against decoding a film by mistake.
MAX_SECONDS = 3600.0


@dataclass(frozen=True)
class AudioSource:
    name: str  # what the summary calls it: the file name
    pcm: Pcm  # mono int16
    rate: int

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.rate


def load_audio(path: Path, rate: int = 16000, *, name: str | None = None) -> AudioSource:
    """Decodes the first audio stream of `path`, downmixed and resampled to `rate`."""
    if not path.exists():
        raise ReplayError(f"{path}: no such file")
    if path.is_dir():
        raise ReplayError(f"{path}: is a directory, not an audio file")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise ReplayError(f"{path}: not an audio file that can be decoded "
                          f"({type(exc).__name__}: {exc.strerror or exc})") from None
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    pieces: list[Pcm] = []
    samples = 0
    with container:
        if not container.streams.audio:
            raise ReplayError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
                    samples += pieces[-1].size
                if samples > MAX_SECONDS * rate:
                    raise ReplayError(f"{path}: longer than {MAX_SECONDS:.0f} s")
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
        except av.FFmpegError as exc:
            raise ReplayError(f"{path}: audio is corrupt ({exc.strerror or exc})") from None
    pcm = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
    if pcm.size == 0:
        raise ReplayError(f"{path}: contains no audio samples")
    return AudioSource(name=name or path.name, pcm=pcm, rate=rate)
