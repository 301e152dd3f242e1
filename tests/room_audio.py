"""A room made at test time: background noise, and a voice heard from across it (a TV).

Distance, as a microphone hears it: the voice is duller (walls and air take the
highs), reverberant (the room's reflections outweigh the direct sound) and quieter,
under the room's steady noise. Every piece is seeded, so a test hears the same room.
"""

from __future__ import annotations

import numpy as np

from avatar_rtc.backends.base import Pcm

RATE = 16000


def _to_pcm(signal: np.ndarray) -> Pcm:
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


def level_while_talking(pcm: Pcm) -> float:
    """RMS in dBFS from the first to the last 20 ms that is within 30 dB of the loudest:
    how a mix is leveled ("a voice at -30 dBFS"), pauses between words included."""
    frames = pcm[: len(pcm) - len(pcm) % 320].astype(np.float64).reshape(-1, 320)
    power = np.mean(frames**2, axis=1)
    talking = np.flatnonzero(power >= power.max() * 1e-3)
    span = frames[talking[0]: talking[-1] + 1]
    return float(10 * np.log10(np.mean(span**2) / 32768**2))


def at_level(pcm: Pcm, dbfs: float) -> Pcm:
    """`pcm` scaled so that its level while talking is `dbfs`."""
    gain = 10 ** ((dbfs - level_while_talking(pcm)) / 20)
    return _to_pcm(pcm.astype(np.float64) * gain)


def _shaped_noise(samples: int, dbfs: float, seed: int, slope: float) -> Pcm:
    """Noise whose power falls by `slope` per octave x 3 dB (1: pink, 2: brown), at an
    RMS of `dbfs`."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    freqs = np.fft.rfftfreq(samples, 1 / RATE)
    freqs[0] = freqs[1]
    spectrum *= freqs ** (-slope / 2)
    spectrum[freqs < 20] = 0  # no DC drift: a microphone has none
    noise = np.fft.irfft(spectrum, samples)
    noise *= 32768 * 10 ** (dbfs / 20) / np.sqrt(np.mean(noise**2))
    return _to_pcm(noise)


def pink_noise(seconds: float, dbfs: float, seed: int = 0) -> Pcm:
    return _shaped_noise(int(seconds * RATE), dbfs, seed, 1.0)


def brown_noise(seconds: float, dbfs: float, seed: int = 0) -> Pcm:
    return _shaped_noise(int(seconds * RATE), dbfs, seed, 2.0)


def room_noise(seconds: float, dbfs: float = -45.0, seed: int = 0) -> Pcm:
    """A room's steady noise (ventilation, traffic): pink and brown, half each."""
    mixed = (pink_noise(seconds, dbfs - 3, seed).astype(np.float64)
             + brown_noise(seconds, dbfs - 3, seed + 1))
    return _to_pcm(mixed)


def low_pass(pcm: Pcm, cutoff_hz: float) -> Pcm:
    """A gentle (second-order) roll-off above `cutoff_hz`, as a room dulls a voice."""
    spectrum = np.fft.rfft(pcm.astype(np.float64))
    freqs = np.fft.rfftfreq(len(pcm), 1 / RATE)
    spectrum /= 1 + (freqs / cutoff_hz) ** 2
    return _to_pcm(np.fft.irfft(spectrum, len(pcm)))


def reverberate(pcm: Pcm, rt60_s: float = 0.5, direct: float = 1.0, seed: int = 0) -> Pcm:
    """`pcm` in a room: a decaying-noise impulse response (60 dB down after `rt60_s`)
    after the direct sound, which carries `direct` times the reflections' energy."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rt60_s * RATE)) / RATE
    response = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60_s)
    response[: RATE // 200] = 0  # the first reflections come 5 ms after the direct sound
    response /= np.sqrt(np.sum(response**2))
    response[0] = np.sqrt(direct)
    size = len(pcm) + len(response) - 1
    wet = np.fft.irfft(np.fft.rfft(pcm.astype(np.float64), size)
                       * np.fft.rfft(response, size), size)
    return _to_pcm(wet / np.abs(wet).max() * 16000)  # the level is set afterwards


def distant(pcm: Pcm, level_dbfs: float = -30.0, noise_dbfs: float = -45.0, *,
            cutoff_hz: float = 3500.0, direct: float = 1.0, seed: int = 0) -> Pcm:
    """Speech from a TV across the room: dull (low-passed at `cutoff_hz`), reverberant
    (`direct`: the direct sound's energy over the reflections'), at `level_dbfs` while
    it talks, under the room's noise at `noise_dbfs`."""
    voice = at_level(reverberate(low_pass(pcm, cutoff_hz), direct=direct, seed=seed),
                     level_dbfs)
    return mix(voice, room_noise(len(voice) / RATE, noise_dbfs, seed))


def mix(*signals: Pcm) -> Pcm:
    """Signals added sample by sample; the longest sets the length."""
    out = np.zeros(max(len(s) for s in signals))
    for s in signals:
        out[: len(s)] += s
    return _to_pcm(out)


def cough(level_dbfs: float = -20.0, seed: int = 0) -> Pcm:
    """A cough-like burst: 250 ms of noise with a sharp attack, bandpassed to 300-3000 Hz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.25 * RATE)) / RATE
    burst = rng.standard_normal(len(t)) * np.exp(-t / 0.06) * (1 - np.exp(-t / 0.005))
    spectrum = np.fft.rfft(burst)
    freqs = np.fft.rfftfreq(len(burst), 1 / RATE)
    spectrum[(freqs < 300) | (freqs > 3000)] = 0
    return at_level(_to_pcm(np.fft.irfft(spectrum, len(burst)) * 1000), level_dbfs)
