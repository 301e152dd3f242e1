"""The sender's media clock: capture times from RTP timestamps, not arrival times."""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection

from media import InboundAudio, PacedAudioTrack
from media.clock import MediaClock
from tests.test_media_inbound import connect, loopback_only, tone  # noqa: F401

FRAME = 960  # 20 ms at 48 kHz


def frame(pts: int | None) -> av.AudioFrame:
    out = av.AudioFrame.from_ndarray(np.zeros((1, FRAME), np.int16), format="s16",
                                     layout="mono")
    out.sample_rate = 48000
    out.pts = pts
    out.time_base = fractions.Fraction(1, 48000)
    return out


def test_a_late_burst_maps_back_to_when_its_frames_were_captured() -> None:
    clock = MediaClock()
    base = 123_456
    # 50 frames on time, a 400 ms stall, then the backlog at 1.1x real time.
    arrivals = [100.0 + 0.02 * (k + 1) for k in range(50)]
    t = arrivals[-1] + 0.4
    for _ in range(100):
        arrivals.append(t)
        t += 0.02 / 1.1
    captured = [clock.captured_at(frame(base + FRAME * k), at)
                for k, at in enumerate(arrivals)]
    assert captured == pytest.approx([100.0 + 0.02 * (k + 1) for k in range(150)])
    assert all(c <= at + 1e-9 for c, at in zip(captured, arrivals, strict=True))


def test_a_fast_frame_moves_the_anchor_and_a_gap_in_timestamps_stays_a_gap() -> None:
    clock = MediaClock()
    assert clock.captured_at(frame(0), 10.05) == pytest.approx(10.05)  # came 30 ms late
    assert clock.captured_at(frame(FRAME), 10.04) == pytest.approx(10.04)  # on time
    # 1 s of packets lost: the next frame's timestamp is 1 s on.
    assert clock.captured_at(frame(FRAME * 52), 11.06) == pytest.approx(11.06)
    assert clock.captured_at(frame(FRAME * 53), 11.30) == pytest.approx(11.08)


def test_timestamps_wrap_at_32_bits_and_a_reset_continues_the_stream() -> None:
    clock = MediaClock()
    start = (1 << 32) - FRAME  # the next frame's timestamp wraps to 0
    assert clock.captured_at(frame(start), 5.02) == pytest.approx(5.02)
    assert clock.captured_at(frame(0), 5.04) == pytest.approx(5.04)
    assert clock.captured_at(frame(FRAME), 5.06) == pytest.approx(5.06)
    # The sender restarts its stream at an earlier timestamp: the samples still follow.
    assert clock.captured_at(frame(7), 5.30) == pytest.approx(5.08)
    assert clock.captured_at(frame(7 + FRAME), 5.31) == pytest.approx(5.10)


def test_frames_without_timestamps_are_placed_by_arrival() -> None:
    clock = MediaClock()
    assert clock.captured_at(frame(None), 3.0) == 3.0
    assert clock.captured_at(frame(None), 3.5) == 3.5


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("loopback_only")
async def test_a_stalled_loop_delays_arrival_but_not_capture_times_over_real_rtp() -> None:
    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    outbound = PacedAudioTrack()
    seen: list[tuple[float, float]] = []  # (arrival, capture) of each delivered chunk
    readers: list[InboundAudio] = []

    @receiver.on("track")
    def on_track(track: MediaStreamTrack, *_: Any) -> None:
        reader = InboundAudio(track, lambda _pcm: None)
        reader.add_tap(lambda _pcm: seen.append((time.monotonic(), reader.captured_at)))
        reader.start()
        readers.append(reader)

    try:
        sender.addTrack(outbound)
        await connect(sender, receiver)
        chunk = outbound.enqueue(tone(2.0))
        await asyncio.sleep(0.8)
        before = len(seen)
        time.sleep(0.4)  # noqa: ASYNC251 (the point: the loop stalls, nobody sends or reads)
        await asyncio.wait_for(chunk.wait(), 10)
        await asyncio.sleep(0.3)
    finally:
        await sender.close()
        await receiver.close()
        outbound.stop()
        for reader in readers:
            await reader.stop()

    played = seen[before - 1:-1]  # (the last is the resampler's tail, at the track's end)
    arrivals = np.array([a for a, _ in played])
    captures = np.array([c for _, c in played])
    assert np.diff(arrivals).max() >= 0.35  # the stall shows in the arrivals ...
    # ... not in the stream: no capture time jumps more than a frame ahead of the last
    # one. (A step may be shorter: a frame that came faster than all before it moves
    # the anchor back by that much.)
    steps = np.diff(captures)
    assert steps.max() <= 0.021, steps
    assert abs(captures[-1] - captures[0] - 0.02 * steps.size) <= 0.1
    assert (captures <= arrivals + 1e-6).all()
