"""FrameResampler / PcmResampler: frequency, level and streaming continuity."""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt
import pytest

from media import FrameResampler, PcmResampler

pytestmark = pytest.mark.timeout(30)


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> npt.NDArray[np.float64]:
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def to_int16(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.round(x * 32767).astype(np.int16)


def stereo_frames(mono: npt.NDArray[np.int16], frame_samples: int = 960) -> list[av.AudioFrame]:
    """Split into 48 kHz s16 packed stereo frames, the layout aiortc's Opus decoder yields."""
    frames = []
    for pts, start in enumerate(range(0, mono.size, frame_samples)):
        piece = mono[start : start + frame_samples]
        packed = np.repeat(piece, 2).reshape(1, -1)  # L R L R ...
        frame = av.AudioFrame.from_ndarray(packed, format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = pts * frame_samples
        frames.append(frame)
    return frames


def peak_hz(pcm: npt.NDArray[np.int16], rate: int) -> float:
    x = pcm.astype(np.float64) * np.hanning(pcm.size)
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(pcm.size, 1 / rate)[int(np.argmax(spectrum))])


def rms(pcm: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def frame_resample_all(frames: list[av.AudioFrame], out_rate: int) -> npt.NDArray[np.int16]:
    resampler = FrameResampler(out_rate)
    parts = [resampler.resample(f) for f in frames]
    parts.append(resampler.flush())
    return np.concatenate(parts)


def test_frame_resampler_48k_stereo_to_16k_mono_keeps_tone() -> None:
    src = to_int16(sine(440.0, 48000, 1.0))
    out = frame_resample_all(stereo_frames(src), 16000)

    assert out.dtype == np.int16 and out.ndim == 1
    assert abs(out.size - 16000) <= 64
    body = out[800:-800]  # skip filter edges
    assert abs(peak_hz(body, 16000) - 440.0) < 5.0
    assert rms(body) == pytest.approx(rms(src), rel=0.05)


def test_frame_resampler_streaming_matches_one_shot_without_clicks() -> None:
    src = to_int16(sine(1000.0, 48000, 0.6, amp=0.8))
    streamed = frame_resample_all(stereo_frames(src, 960), 16000)
    one_shot = frame_resample_all(stereo_frames(src, src.size), 16000)

    n = min(streamed.size, one_shot.size)
    assert abs(streamed.size - one_shot.size) <= 32
    diff = np.abs(streamed[:n].astype(np.int32) - one_shot[:n].astype(np.int32))
    assert diff[200:-200].max() <= 64

    # A 1 kHz sine at 16 kHz moves at most 2*pi*f/fs*A per sample; a filter
    # reset at a 20 ms boundary would show up as a much larger step.
    body = streamed[200:-200].astype(np.int32)
    max_step = 2 * np.pi * 1000 / 16000 * 0.8 * 32767
    assert np.abs(np.diff(body)).max() <= max_step * 1.1


def test_frame_resampler_accepts_other_input_formats() -> None:
    resampler = FrameResampler(16000)
    planar = np.zeros((2, 441), dtype=np.float32)
    planar[0] = planar[1] = sine(440.0, 44100, 441 / 44100)
    frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="stereo")
    frame.sample_rate = 44100
    total = sum(resampler.resample(frame).size for _ in range(50))
    total += resampler.flush().size
    assert abs(total - 8000) <= 32  # 0.5 s at 16 kHz


def test_pcm_resampler_22050_to_48000_length_ratio_over_many_chunks() -> None:
    src = to_int16(sine(300.0, 22050, 3.0))
    resampler = PcmResampler(22050, 48000)
    rng = np.random.default_rng(1)
    parts, pos = [], 0
    while pos < src.size:
        step = int(rng.integers(50, 2000))
        out = resampler.process(src[pos : pos + step])
        assert out.dtype == np.int16 and out.ndim == 1
        parts.append(out)
        pos += step
    parts.append(resampler.flush())
    out = np.concatenate(parts)

    expected = src.size * 48000 / 22050
    assert abs(out.size - expected) <= 2
    assert abs(peak_hz(out[2000:-2000], 48000) - 300.0) < 3.0
    body = out[2000:-2000].astype(np.int32)
    max_step = 2 * np.pi * 300 / 48000 * 0.5 * 32767
    assert np.abs(np.diff(body)).max() <= max_step * 1.1


def test_pcm_resampler_passthrough_and_reset() -> None:
    same = PcmResampler(16000, 16000)
    pcm = to_int16(sine(200.0, 16000, 0.1))
    assert same.passthrough
    assert np.array_equal(same.process(pcm), pcm)
    assert same.flush().size == 0

    resampler = PcmResampler(16000, 48000)
    first = np.concatenate([resampler.process(pcm), resampler.flush()])
    # After flush (and after reset) a new stream starts from a clean state.
    second = np.concatenate([resampler.process(pcm), resampler.flush()])
    resampler.process(pcm[:100])
    resampler.reset()
    third = np.concatenate([resampler.process(pcm), resampler.flush()])
    # Equal up to soxr's int16 dither, whose noise state survives clear().
    for other in (second, third):
        assert other.size == first.size
        assert np.abs(other.astype(np.int32) - first).max() <= 4


def test_pcm_resampler_rejects_wrong_dtype() -> None:
    with pytest.raises(TypeError):
        PcmResampler(16000, 48000).process(np.zeros(10, dtype=np.float32))
