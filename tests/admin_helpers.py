"""Shared by the admin API tests: a server on the real (or fake) models, clips encoded
in real containers with PyAV, and recordings written as Ogg/Opus."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient

from avatar_rtc.app import create_app
from avatar_rtc.backends.base import Pcm
from avatar_rtc.backends.registry import Backends
from avatar_rtc.state import STATE, AppState
from tests.conftest import make_settings
from tests.speech import speak

API = "/admin/api"
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]

# What a person records a profile from, and what Piper makes of it (about 5 s).
REFERENCE_TEXT = "The quick brown fox jumps over the lazy dog. I am recording my voice today."

# container format, codec, sample rate (None: the input's).
FORMATS: dict[str, tuple[str, str, int | None]] = {
    "wav": ("wav", "pcm_s16le", None),
    "mp3": ("mp3", "libmp3lame", None),
    "ogg": ("ogg", "libopus", 48000),
    "webm": ("webm", "libopus", 48000),
    "flac": ("flac", "flac", None),
    "m4a": ("ipod", "aac", None),
}


@dataclass
class Admin:
    client: TestClient[Any, Any]
    app: web.Application

    @property
    def state(self) -> AppState:
        return self.app[STATE]

    @property
    def data_dir(self) -> Path:
        return Path(self.state.settings.storage.data_dir).resolve()


@contextlib.asynccontextmanager
async def admin_server(aiohttp_client: ClientFactory, backends: Backends, data_dir: Path,
                       middlewares: list[Any] | None = None,
                       **overrides: Any) -> AsyncIterator[Admin]:
    """The whole app (create_app) on 127.0.0.1; `middlewares` go in front of its own."""
    app = create_app(make_settings(data_dir, **overrides), backends=backends)
    for middleware in reversed(middlewares or []):
        app.middlewares.insert(0, middleware)
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[STATE].ready.wait(), 10)
    try:
        yield Admin(client, app)
    finally:
        # Backends are shared across tests: keep them open, close the rest.
        app[STATE].backends = None


@functools.cache
def reference_speech(rate: int = 44100) -> Pcm:
    return speak(REFERENCE_TEXT, rate)


def encode(pcm: Pcm, rate: int, fmt: str, *, stereo: bool = False) -> bytes:
    """`pcm` in a real container: what a browser or a phone would upload."""
    container, codec, out_rate = FORMATS[fmt]
    layout = "stereo" if stereo else "mono"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=out_rate or rate, layout=layout)
        data = np.repeat(pcm, 2) if stereo else pcm  # interleaved L R
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buffer.getvalue()


def write_ogg_opus(path: Path, pcm: Pcm, rate: int = 48000) -> Path:
    """A recording as the recorder writes it: mono Ogg/Opus, time 0 at the first sample."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48000, layout="mono")
        for start in range(0, len(pcm), 960):
            piece = np.ascontiguousarray(pcm[start:start + 960])
            frame = av.AudioFrame.from_ndarray(piece.reshape(1, -1), format="s16",
                                               layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def decode_to(data: bytes, rate: int) -> Pcm:
    """Any audio bytes -> mono int16 at `rate` (for checking what the API returned)."""
    from media.resample import FrameResampler

    resampler = FrameResampler(rate)
    with av.open(io.BytesIO(data)) as container:
        pieces = [resampler.resample(f) for f in container.decode(audio=0)]
    pieces.append(resampler.flush())
    return np.concatenate(pieces)


def read_wav(data: bytes) -> tuple[Pcm, int, int]:
    """(samples, rate, channels) of 16-bit WAV bytes."""
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getsampwidth() == 2
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)
        return pcm, wav.getframerate(), wav.getnchannels()


def rms(pcm: Pcm) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


def tone(seconds: float, rate: int, freq: float, amp: int = 12000) -> Pcm:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * amp).astype(np.int16)


def profile_form(audio: bytes | None, filename: str = "clip.wav", **fields: str) -> FormData:
    form = FormData(default_to_multipart=True)
    for key, value in fields.items():
        form.add_field(key, value)
    if audio is not None:
        form.add_field("audio", audio, filename=filename,
                       content_type="application/octet-stream")
    return form


async def create_profile(client: TestClient[Any, Any], audio: bytes, filename: str = "clip.wav",
                         **fields: str) -> dict[str, Any]:
    fields.setdefault("name", "Test voice")
    response = await client.post(f"{API}/profiles", data=profile_form(audio, filename, **fields))
    body: dict[str, Any] = await response.json()
    assert response.status == 201, body
    return body
