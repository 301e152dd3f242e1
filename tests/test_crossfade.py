"""Joining synthesized pieces: cross-fades, edge fades and silence trimming."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_rtc.backends.crossfade import StreamJoiner, fade, to_pcm16, trim_silence

RATE = 24000


def sine(seconds: float, freq: float = 220.0, phase: float = 0.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def max_step(audio: np.ndarray) -> float:
    return float(np.max(np.abs(np.diff(audio))))


def join_all(joiner: StreamJoiner, pieces: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    out = [joiner.push(p) for p in pieces]
    out.append(joiner.finish())
    return out, np.concatenate(out)


def test_cross_fade_removes_the_step_at_a_join() -> None:
    # Two pieces that meet in opposite phase: concatenated raw, the join is a click.
    a, b = sine(0.5), sine(0.5, phase=np.pi / 2)
    raw = np.concatenate([a, b])
    smooth_step = max_step(sine(0.1))  # the largest sample-to-sample change of the tone
    assert max_step(raw) > 5 * smooth_step
    _, joined = join_all(StreamJoiner(RATE, crossfade_ms=20.0), [a, b])
    assert max_step(joined) < 1.5 * smooth_step


def test_length_and_order_of_a_stream() -> None:
    pieces = [sine(0.3, freq=f) for f in (200, 300, 400)]
    joiner = StreamJoiner(RATE, crossfade_ms=50.0)
    out, joined = join_all(joiner, pieces)
    overlap = int(RATE * 0.05)
    assert len(joined) == sum(len(p) for p in pieces) - 2 * overlap
    assert joiner.joins == 2
    # Each piece's middle comes out unchanged and in order.
    starts = [0, len(pieces[0]) - overlap, len(pieces[0]) + len(pieces[1]) - 2 * overlap]
    for piece, start in zip(pieces, starts, strict=True):
        middle = slice(overlap, len(piece) - overlap)
        np.testing.assert_allclose(joined[start:][middle], piece[middle], atol=1e-6)
    # Nothing is emitted before it is final: the held tail comes out at the end.
    assert len(out[-1]) == overlap


def test_stream_starts_and_ends_without_a_step() -> None:
    joiner = StreamJoiner(RATE, crossfade_ms=0.0, edge_fade_ms=5.0)
    _, joined = join_all(joiner, [np.full(RATE // 10, 0.8, dtype=np.float32)])
    assert abs(joined[0]) < 0.01 and abs(joined[-1]) < 0.01
    assert len(joined) == RATE // 10


def test_short_pieces_and_empty_pieces() -> None:
    joiner = StreamJoiner(RATE, crossfade_ms=100.0)
    pieces = [sine(0.01), np.zeros(0, dtype=np.float32), sine(0.02), sine(0.5)]
    _, joined = join_all(joiner, pieces)
    assert 0 < len(joined) <= sum(len(p) for p in pieces)
    assert np.all(np.isfinite(joined)) and np.max(np.abs(joined)) <= 1.0
    assert len(StreamJoiner(RATE).finish()) == 0  # nothing pushed: nothing out


def test_trim_silence_keeps_margins() -> None:
    speech = sine(0.5)
    audio = np.concatenate([np.zeros(RATE), speech, np.zeros(RATE)]).astype(np.float32)
    trimmed = trim_silence(audio, RATE, keep_head_ms=30, keep_tail_ms=150)
    assert len(trimmed) == pytest.approx(len(speech) + RATE * 0.18, abs=RATE * 0.011)
    assert len(trim_silence(np.zeros(RATE, dtype=np.float32), RATE)) == 0


def test_fade_and_pcm_conversion() -> None:
    ones = np.ones(1000, dtype=np.float32)
    faded = fade(ones, fade_in=100, fade_out=100)
    assert faded[0] < 0.01 and faded[-1] < 0.01 and faded[500] == 1.0
    assert np.all(np.diff(faded[:100]) > 0)
    assert ones[0] == 1.0  # the input is left alone
    pcm = to_pcm16(np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0], dtype=np.float32))
    assert pcm.dtype == np.int16 and pcm.tolist() == [-32767, -32767, 0, 16383, 32767, 32767]
