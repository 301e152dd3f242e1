"""Audio work for the admin API, all blocking (callers run it in a thread):
decoding any container with PyAV, the speech check, peak normalization, WAV bytes,
and cutting a segment out of a call recording."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from avatar_rtc.backends.base import Pcm, VoiceActivityModel
from avatar_rtc.errors import AvatarError
from media.resample import FrameResampler, resample_pcm

PROFILE_RATE = 24000
MIN_CLIP_S = 3.0
MAX_CLIP_S = 30.0
MIN_SPEECH_S = 0.5  # voiced time a clip needs to count as speech
PEAK = 0.89  # about -1 dBFS: loud, with headroom for resampling overshoot


class AudioDecodeError(AvatarError):
    """The bytes are not audio PyAV can decode."""


class ClipError(AvatarError):
    """Decodable audio that cannot make a voice profile (length, no speech)."""


@dataclass(frozen=True)
class Decoded:
    pcm: Pcm  # mono int16 at `rate`, at most `limit_s` long
    rate: int
    truncated: bool  # decoding stopped at the limit
    declared_s: float | None  # the container's own duration, when it states one

    @property
    def seconds(self) -> float:
        return len(self.pcm) / self.rate


def _reason(exc: Exception) -> str:
    # FFmpegError's str() carries an errno and a filename; its strerror is the message.
    return str(getattr(exc, "strerror", None) or exc)


def decode(data: bytes, rate: int, limit_s: float) -> Decoded:
    """Any container/codec FFmpeg knows -> mono int16 at `rate`.

    Stops after `limit_s`: a few kilobytes of compressed silence can decode to hours.
    """
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except Exception as exc:  # anything FFmpeg raises on untrusted bytes is the file's fault
        raise AudioDecodeError(_reason(exc)) from None
    with container:
        if not container.streams.audio:
            raise AudioDecodeError("the file has no audio stream")
        stream = container.streams.audio[0]
        declared = container.duration / 1_000_000 if container.duration else None
        resampler = FrameResampler(rate)
        pieces: list[Pcm] = []
        samples, limit = 0, int(limit_s * rate)
        truncated = False
        try:
            for frame in container.decode(stream):
                pcm = resampler.resample(frame)
                pieces.append(pcm)
                samples += len(pcm)
                if samples > limit:
                    truncated = True
                    break
            else:
                pieces.append(resampler.flush())
        except Exception as exc:
            raise AudioDecodeError(_reason(exc)) from None
    pcm = np.concatenate(pieces)[:limit] if pieces else np.zeros(0, np.int16)
    return Decoded(pcm=pcm, rate=rate, truncated=truncated, declared_s=declared)


def check_length(clip: Decoded, low_s: float = MIN_CLIP_S, high_s: float = MAX_CLIP_S) -> None:
    need = f"a voice profile needs {low_s:g}-{high_s:g} s"
    if clip.truncated:
        if clip.declared_s is not None and clip.declared_s > high_s:
            raise ClipError(f"audio is {clip.declared_s:.1f} s long; {need}")
        raise ClipError(f"audio is longer than {high_s:g} s; {need}")
    if not low_s <= clip.seconds <= high_s:
        raise ClipError(f"audio is {clip.seconds:.1f} s long; {need}")


def speech_seconds(vad: VoiceActivityModel, pcm: Pcm, rate: int, threshold: float) -> float:
    """Seconds of `pcm` the VAD calls speech (frames at or above `threshold`)."""
    audio = resample_pcm(pcm, rate, vad.sample_rate).astype(np.float32) / 32768.0
    stream = vad.stream()
    size = vad.frame_samples
    voiced = 0
    for start in range(0, len(audio) - size + 1, size):
        if stream.probability(audio[start:start + size]) >= threshold:
            voiced += 1
    return voiced * size / vad.sample_rate


def check_speech(vad: VoiceActivityModel, pcm: Pcm, rate: int, threshold: float) -> None:
    if speech_seconds(vad, pcm, rate, threshold) < MIN_SPEECH_S:
        raise ClipError("no speech found in the audio")


def normalize_peak(pcm: Pcm, peak: float = PEAK) -> Pcm:
    loudest = int(np.max(np.abs(pcm.astype(np.int32)))) if len(pcm) else 0
    if loudest == 0:
        return pcm
    scaled = pcm.astype(np.float64) * (peak * 32767.0 / loudest)
    return np.clip(np.round(scaled), -32768, 32767).astype(np.int16)


def wav_bytes(pcm: Pcm, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return buffer.getvalue()


def cut_segment(path: Path, start_s: float, end_s: float, rate: int) -> Pcm:
    """Mono int16 at `rate` covering [start_s, end_s] of a recording, by its timestamps.

    Seeks near the start first, so a turn late in a long call decodes only its part.
    """
    with av.open(str(path), mode="r") as container:
        if not container.streams.audio:
            raise AudioDecodeError("the recording has no audio stream")
        stream = container.streams.audio[0]
        if start_s > 5.0 and stream.time_base is not None:
            # backward=True lands on or before the start; the trim below is exact.
            container.seek(int((start_s - 1.0) / stream.time_base), stream=stream,
                           backward=True)
        resampler = FrameResampler(rate)
        pieces: list[Pcm] = []
        origin: float | None = None  # time of the first decoded sample
        decoded = 0
        for frame in container.decode(stream):
            if origin is None:
                origin = float(frame.time) if frame.time is not None else 0.0
            pieces.append(resampler.resample(frame))
            decoded += len(pieces[-1])
            if origin + decoded / rate >= end_s:
                break
        else:
            pieces.append(resampler.flush())
    if origin is None:
        return np.zeros(0, np.int16)
    audio = np.concatenate(pieces)
    first = max(0, round((start_s - origin) * rate))
    last = max(first, round((end_s - origin) * rate))
    return audio[first:last]
