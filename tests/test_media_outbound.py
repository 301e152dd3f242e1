"""PacedAudioTrack: frame shape, real-time pacing, chunk accounting, clear/stop."""

from __future__ import annotations

import asyncio
import fractions
import logging
import time

import av
import numpy as np
import numpy.typing as npt
import pytest
from aiortc.mediastreams import MediaStreamError

from media import FRAME_SAMPLES, PacedAudioTrack, PlayoutChunk

pytestmark = pytest.mark.timeout(20)


def ramp(n: int, start: int = 1) -> npt.NDArray[np.int16]:
    # Never zero, so any silence in the output is padding, not content.
    return ((np.arange(n) + start) % 30000 + 1).astype(np.int16)


def pcm_of(frame: av.AudioFrame) -> npt.NDArray[np.int16]:
    # Packed stereo with L == R: one channel is the mono signal.
    both = np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1, 2)
    assert np.array_equal(both[:, 0], both[:, 1])
    return both[:, 0].copy()


async def recv_pcm(track: PacedAudioTrack) -> npt.NDArray[np.int16]:
    frame = await track.recv()
    assert isinstance(frame, av.AudioFrame)
    return pcm_of(frame)


async def test_frames_are_20ms_mono_s16_48k_with_steady_pts() -> None:
    track = PacedAudioTrack()
    assert track.kind == "audio"
    pts = []
    for _ in range(5):
        frame = await track.recv()
        assert isinstance(frame, av.AudioFrame)
        assert frame.samples == FRAME_SAMPLES == 960
        assert frame.format.name == "s16"
        assert frame.layout.name == "stereo"
        assert frame.sample_rate == 48000
        assert frame.time_base == fractions.Fraction(1, 48000)
        pts.append(frame.pts)
    assert pts == [0, 960, 1920, 2880, 3840]
    assert track.total_frames_sent == 5
    track.stop()


async def test_pacing_is_real_time_and_anchored() -> None:
    track = PacedAudioTrack()
    t0 = time.monotonic()
    returned = []
    for _ in range(50):
        await track.recv()
        returned.append(time.monotonic())
    elapsed = returned[-1] - t0

    # Frame k may not leave before t0 + k * 20 ms (t0 <= the track's anchor).
    for k, at in enumerate(returned):
        assert at >= t0 + k * 0.020, f"frame {k} early by {t0 + k * 0.020 - at:.4f}s"
    # 49 intervals after an immediate first frame: ~0.98 s; generous upper
    # bound because this box is shared, the point is "paced", not a benchmark.
    assert 0.9 <= elapsed <= 1.3
    track.stop()


async def test_silence_when_idle() -> None:
    track = PacedAudioTrack()
    taps: list[npt.NDArray[np.int16]] = []
    track.add_tap(taps.append)
    for _ in range(3):
        assert not (await recv_pcm(track)).any()
    assert not track.is_playing
    assert track.queued_samples == 0
    assert len(taps) == 3 and all(t.size == FRAME_SAMPLES and not t.any() for t in taps)
    track.stop()


async def test_chunks_span_frames_and_share_frames() -> None:
    track = PacedAudioTrack()
    events: list[tuple[str, object]] = []
    track.on_chunk_started = lambda c: events.append(("started", c.label))
    track.on_chunk_finished = lambda c: events.append(("finished", c.label))
    taps: list[npt.NDArray[np.int16]] = []
    track.add_tap(taps.append)

    a_pcm, b_pcm = ramp(2000), ramp(500, start=7000)
    a = track.enqueue(a_pcm, label="a")
    b = track.enqueue(b_pcm, label="b")
    assert (a.total_samples, b.total_samples) == (2000, 500)
    assert track.is_playing and track.queued_samples == 2500
    assert a.started_at is None and a.sent_samples == 0

    out = [await recv_pcm(track)]
    assert a.sent_samples == 960 and a.started_at is not None and a.finished_at is None
    out.append(await recv_pcm(track))
    assert a.sent_samples == 1920 and not a.done
    # Third frame: the last 80 samples of a, all 500 of b, then silence.
    out.append(await recv_pcm(track))
    assert a.sent_samples == 2000 and b.sent_samples == 500
    assert a.done and b.done and not a.cleared and not b.cleared
    assert a.finished_at is not None and b.started_at == a.finished_at
    assert not track.is_playing and track.queued_samples == 0
    await asyncio.wait_for(a.wait(), 0.1)
    await asyncio.wait_for(b.wait(), 0.1)

    played = np.concatenate(out)
    assert np.array_equal(played[:2000], a_pcm)
    assert np.array_equal(played[2000:2500], b_pcm)
    assert not played[2500:].any()
    assert np.array_equal(np.concatenate(taps), played)
    assert events == [("started", "a"), ("finished", "a"), ("started", "b"), ("finished", "b")]
    track.stop()


async def test_enqueue_copies_the_callers_buffer() -> None:
    track = PacedAudioTrack()
    pcm = ramp(960)
    track.enqueue(pcm)
    pcm[:] = 0
    assert (await recv_pcm(track)).all()
    track.stop()


async def test_clear_mid_chunk_silences_next_frame_and_releases_wait() -> None:
    track = PacedAudioTrack()
    first = track.enqueue(ramp(3000), label="first")
    second = track.enqueue(ramp(1000), label="second")
    waiter = asyncio.create_task(first.wait())

    assert (await recv_pcm(track)).all()
    # Clear while the next recv is already sleeping until its deadline: that
    # frame must be silence since nothing queued may be sent after clear().
    pending = asyncio.create_task(recv_pcm(track))
    await asyncio.sleep(0.005)
    assert not pending.done()
    dropped = track.clear()

    assert dropped == [first, second]
    assert first.cleared and second.cleared
    assert first.sent_samples == 960 and second.sent_samples == 0
    assert first.finished_at is None
    assert not track.is_playing and track.queued_samples == 0
    await asyncio.wait_for(waiter, 0.5)

    assert not (await pending).any()
    assert not (await recv_pcm(track)).any()
    assert first.sent_samples == 960  # unchanged by the frames after clear
    assert track.clear() == []
    track.stop()


async def test_zero_length_chunk_finishes_in_order() -> None:
    track = PacedAudioTrack()
    finished: list[object] = []
    track.on_chunk_finished = lambda c: finished.append(c.label)
    track.enqueue(ramp(100), label=1)
    empty = track.enqueue(np.zeros(0, dtype=np.int16), label=2)
    track.enqueue(ramp(100), label=3)
    await track.recv()
    assert finished == [1, 2, 3]
    assert empty.done and empty.total_samples == 0
    track.stop()


async def test_callback_and_tap_errors_do_not_break_recv(caplog: pytest.LogCaptureFixture) -> None:
    track = PacedAudioTrack()

    def boom(_: object) -> None:
        raise RuntimeError("owner bug")

    track.on_chunk_started = boom
    track.add_tap(boom)
    chunk = track.enqueue(ramp(960))
    with caplog.at_level(logging.ERROR, logger="media.playout"):
        assert (await recv_pcm(track)).all()
    assert chunk.done
    assert "owner bug" in caplog.text
    track.stop()


async def test_stop_ends_track_and_releases_waiters() -> None:
    track = PacedAudioTrack()
    await track.recv()
    chunk = track.enqueue(ramp(5000))
    waiter = asyncio.create_task(chunk.wait())
    pending = asyncio.create_task(track.recv())  # sleeping until its slot
    await asyncio.sleep(0)
    track.stop()
    track.stop()  # idempotent

    assert track.readyState == "ended"
    await asyncio.wait_for(waiter, 0.5)
    assert chunk.cleared
    with pytest.raises(MediaStreamError):
        await pending
    with pytest.raises(MediaStreamError):
        await track.recv()

    late: PlayoutChunk = track.enqueue(ramp(10))
    assert late.cleared and late.done


def test_enqueue_validates_input() -> None:
    track = PacedAudioTrack()
    with pytest.raises(TypeError):
        track.enqueue(np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError):
        track.enqueue(np.zeros((2, 10), dtype=np.int16))
    track.stop()
