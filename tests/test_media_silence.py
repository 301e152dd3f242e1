"""Leading-silence trimming of synthesized audio."""

from __future__ import annotations

import numpy as np

from media.silence import trim_leading_silence


def _tone(n: int, amplitude: int = 8000) -> np.ndarray:
    return (np.sin(np.arange(n) * 0.2) * amplitude).astype(np.int16)


def test_trims_to_keep_margin_before_onset() -> None:
    rate = 48000
    quiet = np.full(rate // 20, 40, np.int16)  # 50 ms of low noise
    pcm = np.concatenate([quiet, _tone(4800)])
    out = trim_leading_silence(pcm, rate, keep_ms=10)
    onset = int(np.flatnonzero(np.abs(pcm.astype(np.int32)) > 328)[0])
    assert len(out) == len(pcm) - (onset - 480)
    np.testing.assert_array_equal(out[480:], pcm[onset:])


def test_onset_at_start_keeps_everything() -> None:
    pcm = _tone(1000)
    pcm[1] = 9000
    assert len(trim_leading_silence(pcm, 16000)) == len(pcm)


def test_all_silent_is_unchanged() -> None:
    pcm = np.zeros(1600, np.int16)
    assert trim_leading_silence(pcm, 16000) is pcm


def test_negative_peaks_count_and_int16_min_does_not_overflow() -> None:
    pcm = np.zeros(2000, np.int16)
    pcm[1500] = -32768
    out = trim_leading_silence(pcm, 16000, keep_ms=0)
    assert len(out) == 500 and out[0] == -32768
