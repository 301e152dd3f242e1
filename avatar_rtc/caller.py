"""A programmatic caller: a real aiortc peer that talks to a server like a browser.

It plays audio as its microphone (paced, silence in between), records what the agent
says, collects the data-channel events, and measures on its own clock:
- voice-to-voice: the last voiced sample of an utterance leaving the mic ->
  the first audible agent frame arriving;
- barge-in reaction: the first sample of talking over the agent leaving the mic ->
  the agent's audio going quiet.
Used by the tests, the latency benchmark and the replay tool.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from avatar_rtc.errors import AvatarError
from media.resample import FrameResampler, Pcm, resample_pcm
from signaling.consent import patient_consent
from signaling.ice import configuration_from_page, rtc_configuration

RATE = 48000
FRAME = 960  # 20 ms
# Frames whose peak is below this are silence (Opus leaves tiny noise on zeros).
AUDIBLE_PEAK = 600
VOICED_PEAK = 300


class CallerError(AvatarError):
    """The server refused the call or it failed; the message says why."""


@dataclass
class Utterance:
    pcm: Pcm  # 48 kHz mono
    queued_at: float
    started_at: float | None = None
    speech_start_at: float | None = None  # when the first voiced sample left the mic
    speech_end_at: float | None = None  # when the last voiced sample left the mic
    # How far behind the mic's own clock those samples left (a busy event loop): the
    # stream catches up, so on the receiver's timeline they sit this much earlier.
    start_late_s: float = 0.0
    end_late_s: float = 0.0
    voiced: asyncio.Event = field(default_factory=asyncio.Event)  # speech_start_at is set
    done: asyncio.Event = field(default_factory=asyncio.Event)
    _offset: int = 0
    _first_voiced: int = 0
    _last_voiced: int = 0

    def __post_init__(self) -> None:
        voiced = np.flatnonzero(np.abs(self.pcm) > VOICED_PEAK)
        if voiced.size:
            self._first_voiced, self._last_voiced = int(voiced[0]), int(voiced[-1]) + 1


class MicrophoneTrack(MediaStreamTrack):
    """Plays queued utterances in real time (20 ms frames), silence otherwise."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: list[Utterance] = []
        self._t0: float | None = None
        self._sent = 0

    def say(self, pcm: Pcm, rate: int) -> Utterance:
        utterance = Utterance(resample_pcm(pcm, rate, RATE), queued_at=time.monotonic())
        self._queue.append(utterance)
        return utterance

    def interrupt(self) -> None:
        for utterance in self._queue:
            utterance.done.set()
        self._queue.clear()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.monotonic()
        delay = self._t0 + self._sent / RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        late = max(0.0, now - (self._t0 + self._sent / RATE))
        out = np.zeros(FRAME, dtype=np.int16)
        filled = 0
        while self._queue and filled < FRAME:
            utterance = self._queue[0]
            if utterance.started_at is None:
                utterance.started_at = now
            take = min(FRAME - filled, len(utterance.pcm) - utterance._offset)
            before = utterance._offset
            out[filled : filled + take] = utterance.pcm[before : before + take]
            utterance._offset += take
            filled += take
            if before <= utterance._first_voiced < utterance._offset:
                utterance.speech_start_at = now + (utterance._first_voiced - before) / RATE
                utterance.start_late_s = late
                utterance.voiced.set()
            if before < utterance._last_voiced <= utterance._offset:
                # The frame leaves now; the voiced sample sits this far into it.
                utterance.speech_end_at = now + (utterance._last_voiced - before) / RATE
                utterance.end_late_s = late
            if utterance._offset >= len(utterance.pcm):
                self._queue.pop(0)
                utterance.done.set()
        frame = av.AudioFrame.from_ndarray(
            np.repeat(out, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        frame.pts = self._sent
        self._sent += FRAME
        return frame


@dataclass
class ReceivedFrame:
    at: float
    peak: int


async def server_ice(base_url: str, timeout_s: float = 10.0) -> RTCConfiguration:
    """The ICE servers and policy the server gives its call page (GET /api/ice)."""
    try:
        async with aiohttp.ClientSession() as http, http.get(
            f"{base_url.rstrip('/')}/api/ice", timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            if response.status != 200:
                raise CallerError(f"GET /api/ice answered {response.status}")
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise CallerError(f"cannot read the ICE servers of {base_url}: {exc}") from exc
    try:
        return configuration_from_page(body)
    except ValueError as exc:
        raise CallerError(f"GET /api/ice: {exc}") from None


class Caller:
    def __init__(self, base_url: str, *, voice: str | None = None,
                 configuration: RTCConfiguration | None = None) -> None:
        """``configuration``: the ICE servers and policy (``server_ice`` reads the
        server's); by default none, host candidates only."""
        self.base_url = base_url.rstrip("/")
        self.voice = voice
        self.mic = MicrophoneTrack()
        patient_consent()  # a busy client machine must not drop the call
        self.pc = RTCPeerConnection(configuration=configuration or rtc_configuration())
        self.session_id: str | None = None
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.frames: list[ReceivedFrame] = []
        self.last_audible_at: float | None = None  # the latest audible agent frame
        self.audio: list[Pcm] = []  # what the agent said, 16 kHz mono
        self._reader: asyncio.Task[None] | None = None
        self._channel: RTCDataChannel | None = None
        self._event_signal = asyncio.Event()
        self._frame_signal = asyncio.Event()

    async def __aenter__(self) -> Caller:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, timeout_s: float = 20.0) -> None:
        pc = self.pc
        pc.addTrack(self.mic)
        channel = self._channel = pc.createDataChannel("events")

        @channel.on("message")
        def on_message(message: Any) -> None:
            if isinstance(message, str):
                self.events.append((time.monotonic(), json.loads(message)))
                self._event_signal.set()
                if self.events[-1][1].get("type") == "bye":
                    self._over()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._over()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and self._reader is None:
                self._reader = asyncio.create_task(self._read(track))

        await pc.setLocalDescription(await pc.createOffer())
        body = {"sdp": pc.localDescription.sdp, "type": "offer", "voice": self.voice}
        try:
            async with aiohttp.ClientSession() as http, http.post(
                f"{self.base_url}/offer", json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                data = await response.json(content_type=None)
                if response.status != 200:
                    raise CallerError(f"server answered {response.status}: {data.get('error')}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            await pc.close()
            raise CallerError(f"cannot reach {self.base_url}: {exc}") from exc
        except CallerError:
            await pc.close()
            raise
        self.session_id = data["session_id"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="answer"))
        async with asyncio.timeout(timeout_s):
            while pc.connectionState != "connected":
                if pc.connectionState in ("failed", "closed"):
                    raise CallerError(f"connection {pc.connectionState}")
                await asyncio.sleep(0.02)

    async def _read(self, track: MediaStreamTrack) -> None:
        resampler = FrameResampler(16000)
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if not isinstance(frame, av.AudioFrame):
                    continue
                pcm = frame.to_ndarray()
                peak = int(np.abs(pcm).max(initial=0))
                self.frames.append(ReceivedFrame(now, peak))
                if peak >= AUDIBLE_PEAK:
                    self.last_audible_at = now
                self.audio.append(resampler.resample(frame))
                self._frame_signal.set()

    # ---- what the test or the benchmark does ------------------------------------

    @property
    def ended(self) -> str | None:
        """Why the call is over (the server's "bye", a failed connection), or None."""
        for _, event in self.events:
            if event.get("type") == "bye":
                return f"the server ended the call ({event.get('reason') or 'no reason'})"
        if self.pc.connectionState in ("failed", "closed"):
            return f"the connection {self.pc.connectionState}"
        return None

    def check_live(self) -> None:
        """Waiting on a call that is over would only end in a timeout, much later."""
        ended = self.ended
        if ended is not None:
            raise CallerError(ended)

    def say(self, pcm: Pcm, rate: int) -> Utterance:
        self.check_live()
        return self.mic.say(pcm, rate)

    async def type_text(self, text: str) -> float:
        """Sends a typed message (docs/protocol.md); returns when it was sent."""
        return await self.send_raw(json.dumps({"type": "text", "text": text}))

    async def send_raw(self, message: str | bytes) -> float:
        """Sends one message on the "events" channel as it is, once the channel is open."""
        self.check_live()
        channel = self._channel
        if channel is None:
            raise CallerError("not connected")
        async with asyncio.timeout(10):
            while channel.readyState != "open":
                self.check_live()
                await asyncio.sleep(0.02)
        channel.send(message)
        return time.monotonic()

    def _over(self) -> None:
        """The call is over: every wait wakes (and raises), and the utterances still
        queued count as done: nobody sends them any more."""
        self.mic.interrupt()
        self._event_signal.set()
        self._frame_signal.set()

    async def wait_agent_audio(self, after: float, timeout_s: float = 30.0) -> float:
        """Arrival time of the first audible agent frame after `after`."""
        index = 0
        async with asyncio.timeout(timeout_s):
            while True:
                for frame in self.frames[index:]:
                    if frame.at > after and frame.peak >= AUDIBLE_PEAK:
                        return frame.at
                index = len(self.frames)
                self.check_live()
                self._frame_signal.clear()
                await self._frame_signal.wait()

    async def wait_agent_quiet(self, after: float, quiet_s: float = 0.1,
                               timeout_s: float = 10.0) -> float:
        """Time the agent's audio stopped: start of the first quiet run of `quiet_s`."""
        run_start: float | None = None
        index = 0
        async with asyncio.timeout(timeout_s):
            while True:
                for frame in self.frames[index:]:
                    if frame.at <= after:
                        continue
                    if frame.peak >= AUDIBLE_PEAK:
                        run_start = None
                    elif run_start is None:
                        run_start = frame.at
                    elif frame.at - run_start >= quiet_s:
                        return run_start
                index = len(self.frames)
                self.check_live()
                self._frame_signal.clear()
                await self._frame_signal.wait()

    async def wait_event(self, kind: str, *, after: float = 0.0, timeout_s: float = 30.0,
                         **match: Any) -> dict[str, Any]:
        index = 0
        async with asyncio.timeout(timeout_s):
            while True:
                for at, event in self.events[index:]:
                    if at >= after and event.get("type") == kind and all(
                        event.get(k) == v for k, v in match.items()
                    ):
                        return event
                index = len(self.events)
                if kind != "bye":
                    self.check_live()
                self._event_signal.clear()
                await self._event_signal.wait()

    def agent_audio(self) -> Pcm:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, dtype=np.int16)

    async def close(self) -> None:
        self.mic.interrupt()
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
