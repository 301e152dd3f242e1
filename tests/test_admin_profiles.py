"""Voice profiles through the admin API, on the real models (Silero VAD, Whisper, Piper)
and a real SQLite file: uploads in every container, the checks that refuse bad clips,
editing, deleting, test synthesis, and a profile driving a real call."""

from __future__ import annotations

import asyncio
import dataclasses
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from yarl import URL

from avatar_rtc.backends.base import Voice
from avatar_rtc.backends.registry import Backends
from avatar_rtc.storage import VoiceProfileRecord, new_id, utc_now
from avatar_rtc.voices import NotDrivable, loaded_backends, voice_for_profile
from media.resample import resample_pcm
from tests.admin_helpers import (
    API,
    FORMATS,
    REFERENCE_TEXT,
    Admin,
    ClientFactory,
    admin_server,
    create_profile,
    encode,
    profile_form,
    read_wav,
    reference_speech,
    rms,
)
from tests.fakes import FakeTts, fake_backends
from tests.speech import speak, word_error_rate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
async def admin(aiohttp_client: ClientFactory, real_backends: Backends,
                tmp_path: Path) -> AsyncIterator[Admin]:
    async with admin_server(aiohttp_client, real_backends, tmp_path / "data") as server:
        yield server


async def test_backends_describe_the_running_piper(admin: Admin) -> None:
    response = await admin.client.get(f"{API}/backends")
    assert response.status == 200
    assert await response.json() == {
        "tts": "piper",
        "can_clone": False,
        "voices": ["joe-medium"],
        "profile_backends": ["piper", "f5-tts", "cosyvoice"],
    }


@pytest.mark.parametrize("fmt", sorted(FORMATS))
async def test_every_container_is_accepted_and_stored_normalized(admin: Admin,
                                                                 fmt: str) -> None:
    speech = reference_speech(44100)
    # Quiet and stereo for half of them: the stored clip is mono and peak-normalized.
    stereo = fmt in ("mp3", "m4a", "webm")
    quiet = (speech.astype(np.int32) // 4).astype(np.int16)
    upload = encode(quiet, 44100, fmt, stereo=stereo)
    profile = await create_profile(admin.client, upload, f"clip.{fmt}", name=f"From {fmt}",
                                   reference_text=REFERENCE_TEXT)
    assert profile["name"] == f"From {fmt}"
    assert profile["reference_text"] == REFERENCE_TEXT
    assert profile["voice"] == "joe-medium" and profile["speed"] == 1.0
    assert profile["backend"] == "piper"
    assert profile["duration_s"] == pytest.approx(len(speech) / 44100, abs=0.15)
    assert profile["audio_url"] == f"/admin/api/profiles/{profile['id']}/audio"
    assert profile["drivable_by"] == ["piper", "f5-tts", "cosyvoice"]
    assert profile["created_at"].endswith("Z")

    stored = admin.data_dir / "profiles" / profile["id"] / "reference.wav"
    with wave.open(str(stored)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (1, 24000, 2)
    pcm, _, _ = read_wav(stored.read_bytes())
    assert int(np.max(np.abs(pcm.astype(np.int32)))) == pytest.approx(0.89 * 32767, rel=0.02)

    served = await admin.client.get(profile["audio_url"])
    assert served.status == 200 and served.content_type == "audio/wav"
    assert await served.read() == stored.read_bytes()


async def test_an_empty_reference_text_is_transcribed(admin: Admin) -> None:
    upload = encode(reference_speech(44100), 44100, "ogg")
    profile = await create_profile(admin.client, upload, "clip.ogg", reference_text="  ")
    assert word_error_rate(REFERENCE_TEXT, profile["reference_text"]) <= 0.3, profile
    fetched = await (await admin.client.get(f"{API}/profiles/{profile['id']}")).json()
    assert fetched["reference_text"] == profile["reference_text"]


async def post_clip(admin: Admin, audio: bytes, filename: str) -> tuple[int, str]:
    response = await admin.client.post(
        f"{API}/profiles", data=profile_form(audio, filename, name="Bad clip"))
    return response.status, (await response.json())["error"]


async def test_garbage_named_wav_is_refused_with_415(admin: Admin) -> None:
    garbage = bytes(np.random.default_rng(7).integers(0, 256, 50_000, dtype=np.uint8))
    status, message = await post_clip(admin, garbage, "voice.wav")
    assert status == 415 and message.startswith("could not decode audio: "), message
    assert not (admin.data_dir / "profiles").exists()
    listed = await (await admin.client.get(f"{API}/profiles")).json()
    assert listed["total"] == 0


async def test_clips_too_short_or_too_long_are_refused_with_422(admin: Admin) -> None:
    hello = speak("Hello there.", 24000)[:24000]
    one_second = np.concatenate([hello, np.zeros(24000 - len(hello), np.int16)])
    status, message = await post_clip(admin, encode(one_second, 24000, "wav"), "short.wav")
    assert (status, message) == (422, "audio is 1.0 s long; a voice profile needs 3-30 s")

    speech = reference_speech(24000)
    five_minutes = np.tile(speech, int(300 * 24000 / len(speech)) + 1)[: 300 * 24000]
    status, message = await post_clip(admin, encode(five_minutes, 24000, "ogg"), "long.ogg")
    assert status == 422
    assert message == "audio is 300.0 s long; a voice profile needs 3-30 s", message


async def test_silence_and_noise_hold_no_speech(admin: Admin) -> None:
    silence = np.zeros(5 * 24000, np.int16)
    noise = (np.random.default_rng(3).normal(0, 3000, 5 * 24000)).astype(np.int16)
    hum = (np.sin(2 * np.pi * 120 * np.arange(5 * 24000) / 24000) * 8000).astype(np.int16)
    for name, pcm in (("silence", silence), ("noise", noise), ("hum", hum)):
        status, message = await post_clip(admin, encode(pcm, 24000, "flac"), f"{name}.flac")
        assert (status, message) == (422, "no speech found in the audio"), name


async def _head_and_chunks(host: str, port: int, head: str, boundary: str,
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(head.encode())
    part = (f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; '
            'filename="big.wav"\r\nContent-Type: audio/wav\r\n\r\n').encode()
    return reader, writer, part


async def _response(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    status = (await asyncio.wait_for(reader.readline(), 10)).decode()
    headers: dict[str, str] = {}
    while (line := (await reader.readline()).decode().strip()):
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def test_an_oversized_upload_is_refused_while_it_streams(
    aiohttp_client: ClientFactory, real_backends: Backends, tmp_path: Path
) -> None:
    cap = 64 * 1024
    async with admin_server(aiohttp_client, real_backends, tmp_path / "data",
                            admin__max_upload_bytes=cap) as admin:
        host, port = admin.client.host, admin.client.port
        assert port is not None
        boundary = "bOuNdArY"
        content_type = f"multipart/form-data; boundary={boundary}"
        # Chunked, with no declared length: the server must count as bytes arrive. The
        # client sends 3x the cap and then waits, holding back the (endless) rest: only
        # a server that stops reading at the cap can answer.
        head = (f"POST {API}/profiles HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}"
                "\r\nTransfer-Encoding: chunked\r\n\r\n")
        reader, writer, part = await _head_and_chunks(host, port, head, boundary)
        pieces = [part] + [b"\0" * 16384] * (3 * cap // 16384)
        for piece in pieces:
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        await writer.drain()
        status, headers, body = await _response(reader)
        writer.close()
        assert " 413 " in status, status
        assert headers["connection"].lower() == "close"
        assert b"larger than admin.max_upload_bytes (65536 bytes)" in body

        # A declared length over the cap is refused before a byte of the body is read.
        head = (f"POST {API}/profiles HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}"
                f"\r\nContent-Length: {100 * cap}\r\n\r\n")
        reader, writer, part = await _head_and_chunks(host, port, head, boundary)
        status, _, body = await _response(reader)
        writer.close()
        assert " 413 " in status and b"max_upload_bytes" in body

        # The ordinary client gets the same JSON error.
        big = np.random.default_rng(1).integers(-3000, 3000, 2 * cap).astype(np.int16)
        response = await admin.client.post(f"{API}/profiles", data=profile_form(
            encode(big, 24000, "wav"), name="Big"))
        assert response.status == 413
        assert "max_upload_bytes" in (await response.json())["error"]
        assert not (admin.data_dir / "profiles").exists()


async def test_form_fields_are_checked(admin: Admin) -> None:
    clip = encode(reference_speech(24000), 24000, "wav")
    cases: list[tuple[dict[str, str], bytes | None, str]] = [
        ({}, clip, "name is required"),
        ({"name": "x" * 101}, clip, "name is 101 characters long"),
        ({"name": "A"}, None, "an audio file is required"),
        ({"name": "A", "speed": "3"}, clip, "speed must be 0.5-2.0"),
        ({"name": "A", "speed": "fast"}, clip, "speed must be a number"),
        ({"name": "A", "voice": "nobody"}, clip, "unknown Piper voice 'nobody'"),
        ({"name": "A", "backend": "espeak"}, clip, "backend must be one of"),
    ]
    for fields, audio, expected in cases:
        response = await admin.client.post(f"{API}/profiles", data=profile_form(audio, **fields))
        body = await response.json()
        assert response.status == 400 and expected in body["error"], (fields, body)
    response = await admin.client.post(f"{API}/profiles", json={"name": "A"})
    assert response.status == 400
    assert "multipart/form-data" in (await response.json())["error"]


async def test_list_get_patch_and_delete(admin: Admin) -> None:
    clip = encode(reference_speech(24000), 24000, "wav")
    first = await create_profile(admin.client, clip, name="First", reference_text="One.")
    second = await create_profile(admin.client, clip, name="Second", reference_text="Two.",
                                  description="calm", speed="1.25")
    assert second["speed"] == 1.25 and second["description"] == "calm"

    page = await (await admin.client.get(f"{API}/profiles")).json()
    assert [p["id"] for p in page["items"]] == [second["id"], first["id"]]  # newest first
    assert (page["total"], page["limit"], page["offset"]) == (2, 50, 0)
    page = await (await admin.client.get(f"{API}/profiles?limit=1&offset=1")).json()
    assert [p["id"] for p in page["items"]] == [first["id"]] and page["total"] == 2
    for query in ("limit=0", "limit=201", "limit=x", "offset=-1"):
        response = await admin.client.get(f"{API}/profiles?{query}")
        assert response.status == 400, query

    url = f"{API}/profiles/{first['id']}"
    assert await (await admin.client.get(url)).json() == first
    response = await admin.client.patch(url, json={
        "name": " Renamed ", "description": "deep", "reference_text": "New text.",
        "voice": "joe-medium", "speed": 0.75,
    })
    patched = await response.json()
    assert response.status == 200, patched
    assert (patched["name"], patched["description"], patched["reference_text"],
            patched["speed"]) == ("Renamed", "deep", "New text.", 0.75)
    assert patched["created_at"] == first["created_at"]
    assert patched["updated_at"] > first["updated_at"]
    assert await (await admin.client.get(url)).json() == patched
    for body, expected in (
        ({"speed": 9}, "speed must be 0.5-2.0"),
        ({"speed": True}, "speed must be a number"),
        ({"name": ""}, "name is required"),
        ({"voice": "nobody"}, "unknown Piper voice"),
        ({"id": new_id()}, "cannot change id"),
        ([1, 2], "JSON object"),
    ):
        response = await admin.client.patch(url, json=body)
        assert response.status == 400 and expected in (await response.json())["error"], body
    response = await admin.client.patch(url, data=b"{nope", headers={
        "Content-Type": "application/json"})
    assert response.status == 400 and "not valid JSON" in (await response.json())["error"]
    assert await (await admin.client.get(url)).json() == patched  # nothing half-applied

    folder = admin.data_dir / "profiles" / first["id"]
    assert (folder / "reference.wav").is_file()
    response = await admin.client.delete(url)
    assert response.status == 204
    assert not folder.exists()
    assert (admin.data_dir / "profiles" / second["id"] / "reference.wav").is_file()
    assert (await admin.client.get(url)).status == 404
    assert (await admin.client.delete(url)).status == 404
    assert (await admin.client.get(f"{API}/profiles")).status == 200


async def test_unknown_malformed_and_traversal_ids(admin: Admin) -> None:
    unknown = new_id()
    for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/audio"),
                           ("POST", "/synthesize")):
        response = await admin.client.request(method, f"{API}/profiles/{unknown}{suffix}",
                                              json={"text": "Hi."})
        assert response.status == 404, (method, suffix)
        assert (await response.json())["error"] == f"voice profile {unknown} not found"
        for bad in ("not-a-uuid", "..%2f..%2fetc%2fpasswd", "%2e%2e", "1234"):
            url = URL(f"{API}/profiles/{bad}{suffix}", encoded=True)
            response = await admin.client.request(method, url, json={"text": "Hi."})
            assert response.status == 400, (method, bad, suffix)
            assert (await response.json()) == {"error": "invalid id"}


async def test_a_stored_path_outside_the_data_folder_is_never_served(admin: Admin,
                                                                     tmp_path: Path) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF-TOP-SECRET-CONTENT")
    store = admin.state.store
    assert store is not None
    link = admin.data_dir / "profiles" / "link.wav"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(secret)
    for stored in ("../secret.wav", str(secret), "profiles/link.wav", "profiles/../../secret.wav"):
        now = utc_now()
        profile = VoiceProfileRecord(id=new_id(), name="sneaky", backend="piper",
                                     created_at=now, updated_at=now,
                                     reference_audio_path=stored, reference_text="x")
        await store.create_profile(profile)
        response = await admin.client.get(f"{API}/profiles/{profile.id}/audio")
        body = await response.read()
        assert response.status == 404 and b"TOP-SECRET" not in body, stored
        assert "outside the data folder" in (await response.json())["error"]


async def test_synthesis_speaks_in_the_profile_voice_at_its_speed(admin: Admin) -> None:
    clip = encode(reference_speech(24000), 24000, "wav")
    profile = await create_profile(admin.client, clip, reference_text=REFERENCE_TEXT)
    url = f"{API}/profiles/{profile['id']}/synthesize"
    text = "Hello, this is a short test of my new voice."

    async def synthesize() -> tuple[np.ndarray[Any, Any], int]:
        response = await admin.client.post(url, json={"text": text})
        assert response.status == 200 and response.content_type == "audio/wav"
        pcm, rate, channels = read_wav(await response.read())
        assert channels == 1
        return pcm, rate

    normal, rate = await synthesize()
    assert admin.state.backends is not None
    assert rate == admin.state.backends.tts.sample_rate == 22050
    assert len(normal) / rate > 1.0 and rms(normal) > 500
    transcript = await admin.state.backends.stt.transcribe(
        resample_pcm(normal, rate, 16000), 16000)
    assert word_error_rate(text, transcript.text) <= 0.3, transcript.text

    patched = await admin.client.patch(f"{API}/profiles/{profile['id']}", json={"speed": 2.0})
    assert patched.status == 200
    fast, _ = await synthesize()
    assert len(fast) < 0.7 * len(normal)  # the profile's speed reaches Piper

    for body, expected in (({"text": ""}, "text is required"),
                           ({"text": "a" * 501}, "at most 500"),
                           ({}, "text is required")):
        response = await admin.client.post(url, json=body)
        assert response.status == 400 and expected in (await response.json())["error"]


async def test_public_voice_list_needs_no_token(aiohttp_client: ClientFactory,
                                                real_backends: Backends,
                                                tmp_path: Path) -> None:
    async with admin_server(aiohttp_client, real_backends, tmp_path / "data",
                            admin__token="s3cret") as admin:
        headers = {"Authorization": "Bearer s3cret"}
        clip = encode(reference_speech(24000), 24000, "wav")
        response = await admin.client.post(f"{API}/profiles", headers=headers, data=profile_form(
            clip, name="Narrator", reference_text=REFERENCE_TEXT))
        profile = await response.json()
        assert response.status == 201
        voices = await (await admin.client.get("/api/voices")).json()
        assert voices == {"default": "joe-medium", "items": [{
            "id": profile["id"], "name": "Narrator", "backend": "piper",
            "drivable_by": ["piper", "f5-tts", "cosyvoice"], "active": True}]}


async def test_uploads_run_beside_each_other(admin: Admin) -> None:
    clip = encode(reference_speech(24000), 24000, "mp3")
    results = await asyncio.gather(*(
        create_profile(admin.client, clip, "c.mp3", name=f"P{i}", reference_text="x")
        for i in range(3)))
    assert len({p["id"] for p in results}) == 3
    page = await (await admin.client.get(f"{API}/profiles")).json()
    assert page["total"] == 3


def test_a_profile_is_spoken_by_its_own_backend_when_it_is_loaded(tmp_path: Path) -> None:
    class PiperLike(FakeTts):
        def voices(self) -> list[str]:
            return ["joe-medium"]

        def default_voice(self) -> Voice:
            return Voice(backend="piper", name="joe-medium")

    now = utc_now()

    def profile(backend: str, text: str = "Hello there.") -> VoiceProfileRecord:
        return VoiceProfileRecord(id=new_id(), name="P", backend=backend, created_at=now,
                                  updated_at=now, reference_audio_path="profiles/x/ref.wav",
                                  reference_text=text, params={"voice": "joe-medium",
                                                               "speed": 1.3})

    both = fake_backends(tts=PiperLike())
    both.status = {"tts/piper": "ready", "tts/f5-tts": "ready",
                   "tts/cosyvoice": "unavailable: no weights"}
    assert loaded_backends(both) == ["piper", "f5-tts"]
    cloned = voice_for_profile(profile("f5-tts"), both, tmp_path)
    assert (cloned.backend, cloned.speed, cloned.reference_text) == ("f5-tts", 1.3,
                                                                     "Hello there.")
    assert cloned.reference_audio == str(tmp_path / "profiles" / "x" / "ref.wav")
    # Its backend is not loaded, or it lacks the text cloning needs: Piper speaks it.
    assert voice_for_profile(profile("cosyvoice"), both, tmp_path).backend == "piper"
    plain = voice_for_profile(profile("f5-tts", text=""), both, tmp_path)
    assert (plain.backend, plain.name, plain.speed) == ("piper", "joe-medium", 1.3)

    class F5Only(PiperLike):
        def default_voice(self) -> Voice:
            return Voice(backend="f5-tts", name="f5-default")

    f5 = fake_backends(tts=F5Only())
    assert voice_for_profile(profile("piper"), f5, tmp_path).backend == "f5-tts"
    with pytest.raises(NotDrivable, match="cloning needs its reference audio and text"):
        voice_for_profile(profile("piper", text=""), f5, tmp_path)
    uninstalled = dataclasses.replace(profile("piper"), params={"voice": "gone"})
    with pytest.raises(NotDrivable, match="Piper voice 'gone'"):
        voice_for_profile(uninstalled, both, tmp_path)
