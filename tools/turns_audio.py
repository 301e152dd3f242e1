"""Sound for tools/bench_turns.py: the callers' voices, a room's background, and a
microphone that hears them together with the agent's own echo.

The callers speak with espeak-ng (Debian's `espeak-ng`), in voices and variants that are
not the agent's Piper voice: a server tuned on its own voice must not pass the bench
for that reason. Everything is made at run time, 48 kHz mono int16.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from avatar_rtc.caller import FRAME, RATE, Caller, MicrophoneTrack, ReceivedFrame
from media.resample import Pcm, resample_pcm

Float = npt.NDArray[np.float32]

# espeak-ng voice+variant: accents and timbres that are neither Piper's nor each other's,
# and that Whisper tiny.en understands (en-gb-scotland and en-gb-x-rp missed a word in
# one sentence of four).
VOICES = ("en-us", "en-gb", "en-gb+f3", "en-us+m3", "en-us+f2", "en-us-nyc+m2", "en+f5",
          "en+m1")
WORDS_PER_MINUTE = 150  # 165 and more: Whisper tiny.en missed twice as many words
SPEECH_PEAK = 0.7  # -3 dBFS: a close-talking microphone
FULL_SCALE = 32767.0

# The speakerphone: the agent's voice comes back 150 ms later at -10 dB, then two
# reflections (+20 ms at -16 dB, +45 ms at -22 dB).
ECHO_TAPS = ((0.150, -10.0), (0.170, -16.0), (0.195, -22.0))

NOISE_DBFS = -45.0  # the room's noise, RMS
TV_DBFS = -30.0  # the distant TV's speech, RMS while it talks
TV_CUTOFF_HZ = 3500.0
TV_RT60_S = 0.5


def espeak_missing() -> str | None:
    """Why the callers cannot speak, or None."""
    if shutil.which("espeak-ng") is None:
        return "espeak-ng is not installed (Debian: apt-get install espeak-ng)"
    return None


@functools.cache
def speak(text: str, voice: str, words_per_minute: int = WORDS_PER_MINUTE) -> Pcm:
    """`text` said by espeak-ng `voice`, peak-normalized; 48 kHz mono int16."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute),
                        "-w", str(path), text], check=True, capture_output=True)
        with wave.open(str(path)) as file:
            rate = file.getframerate()
            pcm = np.frombuffer(file.readframes(file.getnframes()), dtype=np.int16)
    pcm = resample_pcm(pcm.copy(), rate, RATE)
    peak = float(np.abs(pcm.astype(np.float32)).max(initial=0.0))
    if peak == 0:
        return pcm
    return to_pcm(pcm.astype(np.float32) * (SPEECH_PEAK * FULL_SCALE / peak))


def to_pcm(signal: npt.NDArray[np.floating]) -> Pcm:
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


def voiced_span(pcm: Pcm, threshold: int = 300) -> tuple[int, int]:
    """First and one past the last sample above `threshold` (the caller's own rule)."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    return (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, 0)


def trimmed(pcm: Pcm, keep_s: float = 0.01) -> Pcm:
    """Without the synthesizer's leading and trailing silence (keeping `keep_s`), so
    a pause put between two pieces is the pause heard."""
    first, last = voiced_span(pcm)
    keep = round(keep_s * RATE)
    return pcm[max(0, first - keep): last + keep]


def silence(seconds: float) -> Pcm:
    return np.zeros(max(0, round(seconds * RATE)), dtype=np.int16)


# ---- the room ------------------------------------------------------------------


def _db(dbfs: float) -> float:
    return float(FULL_SCALE * 10 ** (dbfs / 20))


def _rms(signal: Float) -> float:
    return float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) if signal.size else 0.0


def colored_noise(samples: int, rng: np.random.Generator, slope: float = 0.75) -> Float:
    """Noise whose amplitude falls as f^-slope (0.5 pink, 1 brown; between: a room's
    hum and rumble), unit RMS, nothing below 20 Hz."""
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    freqs = np.fft.rfftfreq(samples, 1 / RATE)
    shape = np.zeros_like(freqs)
    audible = freqs >= 20
    shape[audible] = freqs[audible] ** -slope
    noise = np.fft.irfft(spectrum * shape, samples).astype(np.float32)
    return noise / max(_rms(noise), 1e-12)


def low_pass(signal: Float, cutoff_hz: float) -> Float:
    """A gentle FFT low-pass (a cosine roll-off one octave wide), as a TV's speaker."""
    spectrum = np.fft.rfft(signal)
    freqs = np.fft.rfftfreq(signal.size, 1 / RATE)
    ramp = np.clip((freqs - cutoff_hz / 2**0.5) / (cutoff_hz * (2**0.5 - 2**-0.5)), 0, 1)
    gain = 0.5 * (1 + np.cos(np.pi * ramp))
    return np.fft.irfft(spectrum * gain, signal.size).astype(np.float32)


def room_response(rng: np.random.Generator, rt60_s: float = TV_RT60_S) -> Float:
    """A synthetic impulse response: the direct sound, then noise decaying 60 dB in
    `rt60_s`, as much energy as the direct sound (a living room heard from across it)."""
    times = np.arange(round(rt60_s * 1.2 * RATE)) / RATE
    tail = rng.standard_normal(times.size) * np.exp(-6.91 * times / rt60_s)
    tail *= 1.0 / max(_rms(tail.astype(np.float32)) * np.sqrt(times.size), 1e-12)
    tail[0] = 1.0
    return tail.astype(np.float32)


def convolve(signal: Float, response: Float) -> Float:
    size = signal.size + response.size - 1
    n = 1 << (size - 1).bit_length()
    out = np.fft.irfft(np.fft.rfft(signal, n) * np.fft.rfft(response, n), n)[:size]
    return out.astype(np.float32)


def tv_speech(text: str, voice: str, rng: np.random.Generator) -> Float:
    """A sentence as a TV across the room says it: band-limited, reverberant, at
    TV_DBFS while it talks."""
    dry = trimmed(speak(text, voice)).astype(np.float32)
    wet = convolve(low_pass(dry, TV_CUTOFF_HZ), room_response(rng))
    first, last = voiced_span(to_pcm(wet), threshold=int(np.abs(wet).max() * 0.05))
    return wet * (_db(TV_DBFS) / max(_rms(wet[first:last]), 1e-12))


def noise_bed(seconds: float, sentences: list[str], seed: int) -> Pcm:
    """The room for `seconds`: noise at NOISE_DBFS and, after gaps of 0.5-3 s, random
    TV sentences in random voices."""
    rng = np.random.default_rng(seed)
    samples = round(seconds * RATE)
    bed = colored_noise(samples, rng) * _db(NOISE_DBFS)
    at = round(rng.uniform(0.5, 2.0) * RATE)
    while at < samples:
        text = sentences[int(rng.integers(len(sentences)))]
        voice = VOICES[int(rng.integers(len(VOICES)))]
        line = tv_speech(text, voice, rng)[: samples - at]
        bed[at: at + line.size] += line
        at += line.size + round(rng.uniform(0.5, 3.0) * RATE)
    return to_pcm(bed)


# ---- the microphone ------------------------------------------------------------


class EchoPath:
    """What the caller's loudspeaker plays, as its microphone hears it: each frame of
    the agent's audio plays from its arrival on, and comes back through ECHO_TAPS."""

    def __init__(self, frames: list[ReceivedFrame], received: list[Pcm],
                 origin: float | None = None, received_rate: int = 16000,
                 taps: tuple[tuple[float, float], ...] = ECHO_TAPS) -> None:
        # The caller's lists, growing as frames arrive: arrival times, 16 kHz audio.
        self.frames, self.received = frames, received
        self.taps = [(round(delay * RATE), 10 ** (db / 20)) for delay, db in taps]
        self._origin = time.monotonic() if origin is None else origin
        self._read = 0
        # Linear interpolation, not soxr: soxr's stream hands out its output in bursts
        # (nothing, then 30 ms), which would chop the echo. The server hears 16 kHz.
        self._factor = RATE // received_rate
        self._last = 0.0
        self._played = np.zeros(0, dtype=np.float32)  # the loudspeaker, from _base on
        self._base = 0  # samples since _origin before _played[0]

    def _upsample(self, pcm: Pcm) -> Float:
        """`pcm` at RATE, continuing the previous piece (one input sample late)."""
        points = np.concatenate([[self._last], pcm.astype(np.float32)])
        self._last = float(points[-1])
        at = np.arange(1, pcm.size * self._factor + 1) / self._factor
        out: Float = np.interp(at, np.arange(points.size), points).astype(np.float32)
        return out

    def _play(self, at: float, pcm: Float) -> None:
        start = round((at - self._origin) * RATE) - self._base
        if start < 0:
            pcm, start = pcm[-start:], 0
        end = start + pcm.size
        if end > self._played.size:
            grown = np.zeros(end, dtype=np.float32)
            grown[: self._played.size] = self._played
            self._played = grown
        self._played[start:end] = pcm

    def next(self, count: int, now: float) -> Float:
        """The echo in the `count` microphone samples that leave at `now`."""
        arrived = min(len(self.frames), len(self.received))
        for i in range(self._read, arrived):
            self._play(self.frames[i].at, self._upsample(self.received[i]))
        self._read = arrived
        start = round((now - self._origin) * RATE) - self._base
        echo = np.zeros(count, dtype=np.float32)
        for delay, gain in self.taps:
            lo = start - delay
            piece = self._played[max(lo, 0): max(lo + count, 0)]
            echo[max(-lo, 0): max(-lo, 0) + piece.size] += gain * piece
        # What no tap will reach again is dropped.
        keep_from = max(0, start - max(d for d, _ in self.taps))
        self._played = self._played[keep_from:]
        self._base += keep_from
        return echo


class ReactiveMic(MicrophoneTrack):
    """The caller's microphone: its queued utterances (timed as MicrophoneTrack times
    them), plus a background bed and the agent's echo when they are on, mixed frame
    by frame in real time."""

    def __init__(self) -> None:
        super().__init__()
        self.echo: EchoPath | None = None
        self._bed: Pcm | None = None
        self._bed_at = 0

    def play_bed(self, pcm: Pcm) -> None:
        """Mix `pcm` in from the next frame on, once through."""
        self._bed, self._bed_at = pcm, 0

    def _extra(self) -> Float | None:
        extra: Float | None = None
        if self.echo is not None:
            extra = self.echo.next(FRAME, time.monotonic())  # the frame leaves now
        if self._bed is not None and self._bed_at < self._bed.size:
            piece = np.zeros(FRAME, dtype=np.float32)
            chunk = self._bed[self._bed_at: self._bed_at + FRAME]
            piece[: chunk.size] = chunk
            self._bed_at += FRAME
            extra = piece if extra is None else extra + piece
        return extra

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        extra = self._extra()
        if extra is None:
            return frame
        said = frame.to_ndarray().reshape(-1)[::2].astype(np.float32)  # L of L = R
        mixed = np.repeat(to_pcm(said + extra), 2).reshape(1, -1)
        out = av.AudioFrame.from_ndarray(mixed, format="s16", layout="stereo")
        out.sample_rate, out.time_base, out.pts = frame.sample_rate, frame.time_base, frame.pts
        return out


class RoomCaller(Caller):
    """A Caller whose microphone is a ReactiveMic; `echo` feeds the agent back."""

    def __init__(self, base_url: str, *, echo: bool = False) -> None:
        super().__init__(base_url)
        self.room_mic = ReactiveMic()
        if echo:
            self.room_mic.echo = EchoPath(self.frames, self.audio)
        self.mic = self.room_mic  # before connect(), which adds self.mic to the call
