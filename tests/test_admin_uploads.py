"""Hostile voice clip uploads: truncated, corrupt, mislabelled, and small files that
decode to many minutes. Each gets a precise 4xx and stores nothing. Fake models: the
checks here come before any model runs (decoding, length)."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from pathlib import Path

import av
import numpy as np
import pytest

from tests.admin_helpers import (
    API,
    Admin,
    ClientFactory,
    admin_server,
    encode,
    profile_form,
    reference_speech,
)
from tests.fakes import fake_backends

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def admin(aiohttp_client: ClientFactory, tmp_path: Path) -> AsyncIterator[Admin]:
    async with admin_server(aiohttp_client, fake_backends(), tmp_path / "data") as server:
        yield server


def silent_flac(minutes: int, rate: int = 8000) -> bytes:
    """Silence that FLAC packs about a thousand to one."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout="mono")
        block = np.zeros((1, rate * 60), np.int16)
        for minute in range(minutes):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, minute * rate * 60
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def wav_header_claiming_hours() -> bytes:
    """A WAV header whose data chunk claims ~12 hours at 24 kHz, then 0.1 s of audio."""
    claimed = 0xFFFFFF00
    head = (b"RIFF" + (claimed + 36).to_bytes(4, "little") + b"WAVEfmt "
            + (16).to_bytes(4, "little") + (1).to_bytes(2, "little")
            + (1).to_bytes(2, "little") + (24000).to_bytes(4, "little")
            + (48000).to_bytes(4, "little") + (2).to_bytes(2, "little")
            + (16).to_bytes(2, "little") + b"data" + claimed.to_bytes(4, "little"))
    return head + b"\x01\x00" * 2400


async def refused(admin: Admin, audio: bytes, filename: str) -> tuple[int, str]:
    response = await admin.client.post(f"{API}/profiles",
                                       data=profile_form(audio, filename, name="Hostile"))
    status, body = response.status, await response.json()
    assert not (admin.data_dir / "profiles").exists(), "a refused upload left files"
    listed = await (await admin.client.get(f"{API}/profiles")).json()
    assert listed["total"] == 0
    return status, body["error"]


@pytest.mark.parametrize(("fmt", "keep"), [("ogg", 60), ("flac", 40), ("m4a", 30),
                                           ("wav", 20)])
async def test_uploads_cut_within_their_header_are_415(admin: Admin, fmt: str,
                                                       keep: int) -> None:
    clip = encode(reference_speech(24000), 24000, fmt)
    status, message = await refused(admin, clip[:keep], f"clip.{fmt}")
    assert status == 415 and message.startswith("could not decode audio: "), message


@pytest.mark.parametrize("fmt", ["ogg", "wav"])
async def test_uploads_cut_short_are_judged_by_what_decodes(admin: Admin, fmt: str) -> None:
    speech = reference_speech(24000)
    assert len(speech) > 4 * 24000
    clip = encode(speech, 24000, fmt)
    status, message = await refused(admin, clip[:len(clip) * 2 // 5], f"clip.{fmt}")
    assert status == 422 and message.endswith(" s long; a voice profile needs 3-30 s"), message


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"<!doctype html><html><body>not audio</body></html>" * 20, "voice.ogg"),
        (b"PK\x03\x04" + bytes(2000), "voice.flac"),  # a zip archive
        (b"\x89PNG\r\n\x1a\n" + bytes(2000), "voice.mp3"),
        (b"", "empty.wav"),
    ],
    ids=["html-as-ogg", "zip-as-flac", "png-as-mp3", "empty"],
)
async def test_mislabelled_and_corrupt_files_are_415(admin: Admin, data: bytes,
                                                     filename: str) -> None:
    status, message = await refused(admin, data, filename)
    if not data:
        assert (status, message) == (400, "an audio file is required (form field 'audio')")
        return
    assert status == 415 and message.startswith("could not decode audio: "), message


async def test_a_decompression_bomb_is_refused_after_30_s_of_decoding(admin: Admin) -> None:
    bomb = silent_flac(10)  # ten minutes
    assert len(bomb) < 200_000
    started = time.monotonic()
    status, message = await refused(admin, bomb, "bomb.flac")
    assert (status, message) == (422, "audio is 600.0 s long; a voice profile needs 3-30 s")
    assert time.monotonic() - started < 10.0  # only the first 30 s were decoded


async def test_a_header_that_claims_hours_is_judged_by_what_decodes(admin: Admin) -> None:
    status, message = await refused(admin, wav_header_claiming_hours(), "liar.wav")
    assert (status, message) == (422, "audio is 0.1 s long; a voice profile needs 3-30 s")
