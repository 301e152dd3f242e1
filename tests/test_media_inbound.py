"""InboundAudio end to end: a tone over a real loopback WebRTC call."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aioice.ice
import numpy as np
import numpy.typing as npt
import pytest
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from media import InboundAudio, PacedAudioTrack

TONE_HZ = 440.0
TONE_AMP = 0.3


@pytest.fixture
def loopback_only() -> Iterator[None]:
    """Make aioice gather only 127.0.0.1 so the call never leaves the host."""
    original = aioice.ice.get_host_addresses

    def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"]

    aioice.ice.get_host_addresses = loopback
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


def tone(seconds: float) -> npt.NDArray[np.int16]:
    t = np.arange(int(48000 * seconds)) / 48000
    return np.round(TONE_AMP * 32767 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)


def peak_hz(pcm: npt.NDArray[np.int16], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    return float(np.fft.rfftfreq(pcm.size, 1 / rate)[int(np.argmax(spectrum))])


def loudest_window_rms(pcm: npt.NDArray[np.int16], window: int) -> float:
    power = np.convolve(pcm.astype(np.float64) ** 2, np.ones(window) / window, mode="valid")
    return float(np.sqrt(power.max()))


async def connect(caller: RTCPeerConnection, callee: RTCPeerConnection) -> None:
    await caller.setLocalDescription(await caller.createOffer())
    await callee.setRemoteDescription(caller.localDescription)
    await callee.setLocalDescription(await callee.createAnswer())
    await caller.setRemoteDescription(callee.localDescription)


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("loopback_only")
async def test_tone_over_loopback_call_reaches_sink_at_16k() -> None:
    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    outbound = PacedAudioTrack()
    received: list[npt.NDArray[np.int16]] = []
    tapped: list[npt.NDArray[np.int16]] = []
    ended = asyncio.Event()
    readers: list[InboundAudio] = []

    @receiver.on("track")
    def on_track(track: MediaStreamTrack, *_: Any) -> None:
        reader = InboundAudio(track, received.append, on_end=ended.set)
        reader.add_tap(tapped.append)
        reader.start()
        readers.append(reader)

    try:
        sender.addTrack(outbound)
        chunk = outbound.enqueue(tone(1.0))
        await connect(sender, receiver)
        await asyncio.wait_for(chunk.wait(), 10)
        await asyncio.sleep(0.3)  # let the tail cross the jitter buffer
    finally:
        await sender.close()
        await receiver.close()
        outbound.stop()

    assert len(readers) == 1
    reader = readers[0]
    # Closing the receiving peer ends its track, which ends the reader.
    await asyncio.wait_for(reader.wait_ended(), 5)
    assert reader.finished and not reader.running
    assert ended.is_set()
    await reader.stop()  # idempotent after a natural end

    pcm = np.concatenate(received)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert reader.frames_received > 25
    assert reader.samples_out == pcm.size
    assert np.array_equal(np.concatenate(tapped), pcm)
    assert pcm.size >= 16000 * 0.8

    assert abs(peak_hz(pcm, 16000) - TONE_HZ) < 10.0
    # aiortc's Opus encoder upmixes our mono frames to stereo at -3 dB
    # (libswresample's centre gain, 1/sqrt(2)); the downmix back is unity.
    # Sent as L == R stereo, so no upmix loss: the sine's own RMS comes through.
    expected_rms = TONE_AMP * 32767 / np.sqrt(2)
    assert loudest_window_rms(pcm, 8000) == pytest.approx(expected_rms, rel=0.2)


class _ScriptedTrack(MediaStreamTrack):
    """Yields prepared frames, then ends, without any network."""

    kind = "audio"

    def __init__(self, frames: list[Any]) -> None:
        super().__init__()
        self._frames = frames

    async def recv(self) -> Any:
        await asyncio.sleep(0)
        if not self._frames:
            raise MediaStreamError
        return self._frames.pop(0)


@pytest.mark.timeout(10)
async def test_sink_errors_are_logged_and_reading_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import av

    frames = []
    for i in range(10):
        frame = av.AudioFrame.from_ndarray(
            np.full((1, 1920), 1000, dtype=np.int16), format="s16", layout="stereo"
        )
        frame.sample_rate = 48000
        frame.pts = i * 960
        frames.append(frame)
    calls = 0

    def flaky_sink(pcm: npt.NDArray[np.int16]) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("sink bug")

    reader = InboundAudio(_ScriptedTrack(frames), flaky_sink)
    reader.start()
    await asyncio.wait_for(reader.wait_ended(), 5)
    assert reader.frames_received == 10
    assert calls >= 10 and reader.sink_errors == calls
    assert "sink bug" in caplog.text


@pytest.mark.timeout(10)
async def test_stop_cancels_a_blocked_reader() -> None:
    class _Silent(MediaStreamTrack):
        kind = "audio"

        async def recv(self) -> Any:
            await asyncio.Event().wait()  # never yields a frame

    ends: list[bool] = []
    reader = InboundAudio(_Silent(), lambda pcm: None, on_end=lambda: ends.append(True))
    await reader.stop()  # before start: no-op
    reader.start()
    await asyncio.sleep(0)
    assert reader.running
    await reader.stop()
    await reader.stop()
    assert reader.finished and ends == []
