"""Reference clips of voice profiles, prepared once per profile and kept.

Cloning backends condition every sentence on the profile's reference clip. Decoding,
trimming and encoding that clip costs as much as a short sentence, so it happens once
per profile (and again only when the clip file or its text changes), not per sentence.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import av
import numpy as np

from avatar_rtc.backends.base import BackendError, Voice
from avatar_rtc.backends.crossfade import Audio

T = TypeVar("T")


@dataclass(frozen=True)
class Reference:
    """Where a voice's reference lives and what it says."""

    path: Path
    text: str
    key: tuple[Hashable, ...]


def reference_of(voice: Voice, stage: str = "tts") -> Reference:
    """The voice's clip and text, keyed by profile, file version and text."""
    if not voice.reference_audio:
        who = f"voice profile {voice.profile_id}" if voice.profile_id else "this voice"
        raise BackendError(stage, f"{voice.backend} clones a reference clip; {who} has none")
    path = Path(voice.reference_audio).expanduser()
    try:
        stat = path.stat()
    except OSError as exc:
        raise BackendError(stage, f"reference clip {path}: {exc.strerror}") from None
    text = (voice.reference_text or "").strip()
    if not text:
        raise BackendError(stage, f"reference clip {path} has no reference text")
    key = (voice.profile_id or "", str(path.resolve()), stat.st_mtime_ns, stat.st_size, text)
    return Reference(path=path, text=text, key=key)


def read_audio(path: Path, rate: int, max_s: float = 60.0) -> Audio:
    """Decodes any audio file PyAV reads to mono float32 at `rate`, at most max_s long."""
    limit = int(rate * max_s)
    pieces: list[Audio] = []
    total = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise BackendError("tts", f"{path} has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            frames = container.decode(audio=0)
            for frame in frames:
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1).astype(np.float32))
                    total += pieces[-1].size
                if total >= limit:
                    break
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray().reshape(-1).astype(np.float32))
    except av.FFmpegError as exc:
        raise BackendError("tts", f"cannot decode reference clip {path}: {exc}") from None
    audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    if audio.size == 0:
        raise BackendError("tts", f"reference clip {path} is empty")
    return audio[:limit]


def clip_at_pause(audio: Audio, rate: int, min_s: float, max_s: float) -> Audio:
    """Shortens audio to at most max_s, cutting at the quietest 20 ms after min_s so a
    word is not cut in half (a long reference makes every sentence slower)."""
    if len(audio) <= rate * max_s:
        return audio
    frame = rate // 50
    lo, hi = int(rate * min_s) // frame, int(rate * max_s) // frame
    frames = audio[: hi * frame].reshape(hi, frame)
    energy = np.mean(frames[lo:] ** 2, axis=1)
    cut = (lo + int(np.argmin(energy))) * frame + frame // 2
    return audio[:cut]


class ProfileCache(Generic[T]):
    """A small LRU of prepared references, safe to share between threads.

    `prepare` runs at most once per key at a time: a second caller for the same key
    waits for the first instead of preparing it again.
    """

    def __init__(self, max_entries: int = 32) -> None:
        self.max_entries = max(1, max_entries)
        self._items: OrderedDict[tuple[Hashable, ...], T] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, reference: Reference, prepare: Callable[[Reference], T]) -> T:
        with self._lock:
            item = self._items.get(reference.key)
            if item is not None:
                self._items.move_to_end(reference.key)
                self.hits += 1
                return item
            self.misses += 1
            item = prepare(reference)
            self._items[reference.key] = item
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
            return item

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
