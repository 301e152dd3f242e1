"""PacedAudioTrack.pause()/resume(): silence out, queue held, pacing unchanged."""

from __future__ import annotations

import time

import av
import numpy as np
import numpy.typing as npt
import pytest
from aiortc.mediastreams import MediaStreamError

from media import FRAME_SAMPLES, PacedAudioTrack, PlayoutChunk

pytestmark = pytest.mark.timeout(20)

Pcm = npt.NDArray[np.int16]


def ramp(n: int, start: int = 1) -> Pcm:
    # Never zero, so any zero in the output is padding or pause, not content.
    return ((np.arange(n) + start) % 30000 + 1).astype(np.int16)


async def recv_pcm(track: PacedAudioTrack) -> Pcm:
    frame = await track.recv()
    assert isinstance(frame, av.AudioFrame)
    both = np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1, 2)
    assert np.array_equal(both[:, 0], both[:, 1])
    return both[:, 0].copy()


async def test_paused_sends_silence_and_holds_the_queue() -> None:
    track = PacedAudioTrack()
    data = ramp(4 * FRAME_SAMPLES)
    chunk = track.enqueue(data)
    sent: list[Pcm] = []
    track.add_tap(sent.append)

    assert np.array_equal(await recv_pcm(track), data[:FRAME_SAMPLES])
    assert not track.paused
    track.pause()
    assert track.paused
    for _ in range(3):
        assert not (await recv_pcm(track)).any()
        assert track.queued_samples == 3 * FRAME_SAMPLES
        assert chunk.sent_samples == FRAME_SAMPLES
        assert track.is_playing  # audio is still queued, only held
        assert not chunk.done
    assert track.total_frames_sent == 4
    # The tap hears what was actually sent: the silence.
    assert [bool(p.any()) for p in sent] == [True, False, False, False]
    track.stop()


async def test_resume_continues_from_the_same_sample() -> None:
    track = PacedAudioTrack()
    # Two chunks, lengths not multiples of a frame: the pause falls mid-chunk and
    # the resumed frame must straddle the chunk boundary exactly as without pause.
    first, second = ramp(1500), ramp(1000, start=5000)
    a, b = track.enqueue(first, label="a"), track.enqueue(second, label="b")
    out = [await recv_pcm(track)]
    track.pause()
    paused = [await recv_pcm(track) for _ in range(2)]
    assert not np.concatenate(paused).any()
    track.resume()
    assert not track.paused
    out += [await recv_pcm(track) for _ in range(2)]
    played = np.concatenate(out)
    expected = np.concatenate([first, second])
    assert np.array_equal(played[: expected.size], expected)
    assert not played[expected.size :].any()
    assert a.done and b.done and not a.cleared and not b.cleared
    assert a.sent_samples == 1500 and b.sent_samples == 1000
    assert track.queued_samples == 0
    track.stop()


async def test_pause_before_start_holds_the_chunk_start() -> None:
    track = PacedAudioTrack()
    started: list[PlayoutChunk] = []
    track.on_chunk_started = started.append
    track.pause()
    chunk = track.enqueue(ramp(FRAME_SAMPLES))
    assert track.queued_samples == FRAME_SAMPLES
    for _ in range(2):
        assert not (await recv_pcm(track)).any()
    assert chunk.started_at is None
    assert started == []
    track.resume()
    assert np.array_equal(await recv_pcm(track), ramp(FRAME_SAMPLES))
    assert started == [chunk]
    assert chunk.done and chunk.started_at is not None
    track.stop()


async def test_clear_while_paused_drops_everything() -> None:
    track = PacedAudioTrack()
    a = track.enqueue(ramp(3 * FRAME_SAMPLES))
    b = track.enqueue(ramp(FRAME_SAMPLES, start=9000))
    await recv_pcm(track)
    track.pause()
    await recv_pcm(track)
    dropped = track.clear()
    assert dropped == [a, b]
    assert a.cleared and b.cleared and a.done and b.done
    assert a.sent_samples == FRAME_SAMPLES  # exactly what left before the pause
    assert b.sent_samples == 0
    assert track.queued_samples == 0
    assert not track.is_playing
    assert not (await recv_pcm(track)).any()
    track.resume()
    for _ in range(2):
        assert not (await recv_pcm(track)).any()
    # The track still plays what comes next.
    c = track.enqueue(ramp(FRAME_SAMPLES, start=20000))
    assert np.array_equal(await recv_pcm(track), ramp(FRAME_SAMPLES, start=20000))
    assert c.done and not c.cleared
    track.stop()


async def test_pacing_keeps_running_while_paused() -> None:
    track = PacedAudioTrack()
    track.enqueue(ramp(20 * FRAME_SAMPLES))
    t0 = time.monotonic()
    pts: list[int] = []
    at: list[float] = []
    for k in range(12):
        if k == 3:
            track.pause()
        if k == 9:
            track.resume()
        frame = await track.recv()
        at.append(time.monotonic())
        assert frame.pts is not None
        pts.append(frame.pts)
    assert pts == [k * FRAME_SAMPLES for k in range(12)]
    for k, when in enumerate(at):
        assert when >= t0 + k * 0.020 - 0.001, f"frame {k} early"
    # Paused frames (3-8) are paced like the others: never early (above, so no
    # burst) and not stalled either.
    for k in range(3, 9):
        assert at[k] <= t0 + k * 0.020 + 0.25, f"paused frame {k} late by {at[k] - t0:.3f}s"
    assert 0.2 <= at[-1] - t0 <= 0.6
    assert track.total_frames_sent == 12
    # 3 frames before the pause and 3 after: 6 frames consumed from the queue.
    assert track.queued_samples == 14 * FRAME_SAMPLES
    track.stop()


async def test_pause_and_resume_are_idempotent() -> None:
    track = PacedAudioTrack()
    data = ramp(2 * FRAME_SAMPLES)
    track.enqueue(data)
    track.pause()
    track.pause()
    assert track.paused
    assert not (await recv_pcm(track)).any()
    track.resume()
    track.resume()
    assert not track.paused
    assert np.array_equal(await recv_pcm(track), data[:FRAME_SAMPLES])
    assert np.array_equal(await recv_pcm(track), data[FRAME_SAMPLES:])
    track.stop()


async def test_stop_while_paused_releases_waiters() -> None:
    track = PacedAudioTrack()
    chunk = track.enqueue(ramp(5 * FRAME_SAMPLES))
    track.pause()
    await recv_pcm(track)
    track.stop()
    assert chunk.cleared and chunk.done
    assert chunk.sent_samples == 0
    with pytest.raises(MediaStreamError):
        await track.recv()
