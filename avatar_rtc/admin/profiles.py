"""Voice profile routes: upload a reference clip, list, edit, delete, listen, try out."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from avatar_rtc.admin.audio import (
    PROFILE_RATE,
    AudioDecodeError,
    ClipError,
    check_length,
    check_speech,
    decode,
    normalize_peak,
    wav_bytes,
)
from avatar_rtc.admin.files import OutsideDataDir, existing_file, remove_tree, write_atomic
from avatar_rtc.admin.params import iso, page_json, page_params, path_id
from avatar_rtc.admin.resources import ready_backends, store_of
from avatar_rtc.admin.uploads import read_form
from avatar_rtc.backends.base import BackendError, Pcm, TextToSpeech, VoiceActivityModel
from avatar_rtc.backends.registry import Backends
from avatar_rtc.http_errors import ApiError
from avatar_rtc.state import STATE, AppState
from avatar_rtc.storage import VoiceProfileRecord, new_id, utc_now
from avatar_rtc.voices import (
    CLONING_BACKENDS,
    PIPER,
    PROFILE_BACKENDS,
    NotDrivable,
    drivable_by,
    loaded_backends,
    running_backend,
    voice_for_profile,
)
from media.resample import resample_pcm

log = logging.getLogger(__name__)

NAME_MAX_CHARS = 100
TEXT_MAX_CHARS = 2000
MIN_SPEED, MAX_SPEED = 0.5, 2.0
SYNTH_MAX_CHARS = 500
FORM_FIELDS = frozenset({"name", "description", "reference_text", "backend", "voice", "speed"})
PATCHABLE = ("name", "description", "reference_text", "voice", "speed")


async def _profile(state: AppState, request: web.Request) -> VoiceProfileRecord:
    profile_id = path_id(request)
    profile = await store_of(state).get_profile(profile_id)
    if profile is None:
        raise ApiError(404, f"voice profile {profile_id} not found")
    return profile


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:  # "[[[[…" a few thousand deep
        raise ApiError(400, "body is not valid JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


def profile_json(profile: VoiceProfileRecord) -> dict[str, Any]:
    params = profile.params
    return {
        "id": profile.id,
        "name": profile.name,
        "description": profile.description,
        "backend": profile.backend,
        "voice": params.get("voice"),
        "speed": params.get("speed", 1.0),
        "reference_text": profile.reference_text,
        "duration_s": params.get("duration_s"),
        "audio_url": f"/admin/api/profiles/{profile.id}/audio"
        if profile.reference_audio_path else None,
        "drivable_by": drivable_by(profile),
        "created_at": iso(profile.created_at),
        "updated_at": iso(profile.updated_at),
    }


# --- field checks ------------------------------------------------------------


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "name is required (1-100 characters)")
    name = value.strip()
    if len(name) > NAME_MAX_CHARS:
        raise ApiError(400, f"name is {len(name)} characters long; at most {NAME_MAX_CHARS}")
    return name


def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"{field} must be a string")
    if len(value) > TEXT_MAX_CHARS:
        raise ApiError(400, f"{field} is {len(value)} characters long; at most {TEXT_MAX_CHARS}")
    return value.strip()


def _speed(value: object) -> float:
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError
        speed = float(value)
    except ValueError:
        raise ApiError(400, f"speed must be a number {MIN_SPEED}-{MAX_SPEED}, got {value!r}") \
            from None
    if not math.isfinite(speed) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise ApiError(400, f"speed must be {MIN_SPEED}-{MAX_SPEED}, got {value!r}")
    return speed


def _voice(value: object, backends: Backends, current: str | None = None) -> str:
    """An installed Piper voice; empty or null means the server's default voice. The
    profile's current voice stays acceptable even if it was uninstalled since."""
    tts = backends.tts
    if value is None or (isinstance(value, str) and not value.strip()):
        return tts.default_voice().name
    if not isinstance(value, str):
        raise ApiError(400, "voice must be a string")
    voice = value.strip()
    if voice == current:
        return voice
    if PIPER in loaded_backends(backends) and voice not in tts.voices():
        installed = ", ".join(tts.voices())
        raise ApiError(400, f"unknown Piper voice {voice!r}; installed: {installed}")
    return voice


def _backend(value: str, tts: TextToSpeech) -> str:
    running = running_backend(tts)
    backend = value.strip() or running
    if backend not in (*PROFILE_BACKENDS, running):
        raise ApiError(400, f"backend must be one of {', '.join(PROFILE_BACKENDS)}; "
                            f"got {backend!r}")
    return backend


# --- the reference clip --------------------------------------------------------


def _prepare_clip(data: bytes, vad: VoiceActivityModel, threshold: float) -> tuple[Pcm, Pcm]:
    """Upload -> (normalized 24 kHz clip, 16 kHz copy for STT); raises ApiError."""
    try:
        clip = decode(data, PROFILE_RATE, limit_s=30.5)
        check_length(clip)
        check_speech(vad, clip.pcm, clip.rate, threshold)
    except AudioDecodeError as exc:
        raise ApiError(415, f"could not decode audio: {exc}") from None
    except ClipError as exc:
        raise ApiError(422, str(exc)) from None
    pcm = normalize_peak(clip.pcm)
    return pcm, resample_pcm(pcm, PROFILE_RATE, 16000)


def _save_clip(path: Path, pcm: Pcm) -> None:
    write_atomic(path, wav_bytes(pcm, PROFILE_RATE))


# --- routes ------------------------------------------------------------------


async def backends_info(request: web.Request) -> web.Response:
    backends = ready_backends(request.app[STATE])
    loaded = loaded_backends(backends)
    return web.json_response({
        "tts": loaded[0],
        "can_clone": any(b in CLONING_BACKENDS for b in loaded),
        "voices": backends.tts.voices() if PIPER in loaded else [],
        "profile_backends": list(PROFILE_BACKENDS),
    })


async def list_profiles(request: web.Request) -> web.Response:
    limit, offset = page_params(request)
    store = store_of(request.app[STATE])
    profiles, total = await store.list_profiles(limit, offset, newest_first=True)
    return web.json_response(page_json([profile_json(p) for p in profiles], total, limit, offset))


async def create_profile(request: web.Request) -> web.Response:
    state = request.app[STATE]
    backends = ready_backends(state)
    store = store_of(state)
    tts = backends.tts
    form = await read_form(request, state.settings.admin.max_upload_bytes, "audio", FORM_FIELDS)
    fields = form.fields
    name = _name(fields.get("name"))
    description = _text("description", fields.get("description", ""))
    reference_text = _text("reference_text", fields.get("reference_text", ""))
    backend = _backend(fields.get("backend", ""), tts)
    voice = _voice(fields.get("voice"), backends)
    speed = _speed(fields.get("speed") or 1.0)
    if not form.audio:
        raise ApiError(400, "an audio file is required (form field 'audio')")
    pcm, pcm16k = await asyncio.to_thread(
        _prepare_clip, form.audio, backends.vad, state.settings.vad.threshold
    )
    if not reference_text:
        try:
            reference_text = (await backends.stt.transcribe(pcm16k, 16000)).text.strip()
        except BackendError as exc:
            raise ApiError(503, f"could not transcribe the clip: {exc}") from None
    profile_id = new_id()
    folder = f"profiles/{profile_id}"
    root = state.settings.storage.root
    await asyncio.to_thread(_save_clip, root / folder / "reference.wav", pcm)
    now = utc_now()
    profile = VoiceProfileRecord(
        id=profile_id,
        name=name,
        backend=backend,
        created_at=now,
        updated_at=now,
        description=description,
        reference_audio_path=f"{folder}/reference.wav",
        reference_text=reference_text,
        params={"voice": voice, "speed": speed, "duration_s": round(len(pcm) / PROFILE_RATE, 2)},
    )
    try:
        await store.create_profile(profile)
    except Exception:
        # No file without its row. (Not on cancellation: the store's write still runs.)
        await asyncio.to_thread(remove_tree, root, folder)
        raise
    log.info("voice profile %s created: %r, %.1f s", profile_id, name, len(pcm) / PROFILE_RATE)
    return web.json_response(profile_json(profile), status=201)


async def get_profile(request: web.Request) -> web.Response:
    return web.json_response(profile_json(await _profile(request.app[STATE], request)))


async def patch_profile(request: web.Request) -> web.Response:
    state = request.app[STATE]
    profile = await _profile(state, request)
    body = await json_object(request)
    unknown = sorted(set(body) - set(PATCHABLE))
    if unknown:
        raise ApiError(400, f"cannot change {', '.join(unknown)}; "
                            f"fields that can change: {', '.join(PATCHABLE)}")
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = _name(body["name"])
    for field in ("description", "reference_text"):
        if field in body:
            changes[field] = _text(field, body[field])
    params = dict(profile.params)
    if "voice" in body:
        params["voice"] = _voice(body["voice"], ready_backends(state),
                                 current=params.get("voice"))
    if "speed" in body:
        params["speed"] = _speed(body["speed"])
    updated = await store_of(state).update_profile(
        dataclasses.replace(profile, params=params, **changes)
    )
    if updated is None:
        raise ApiError(404, f"voice profile {profile.id} not found")
    return web.json_response(profile_json(updated))


async def delete_profile(request: web.Request) -> web.Response:
    state = request.app[STATE]
    profile_id = path_id(request)
    if not await store_of(state).delete_profile(profile_id):
        raise ApiError(404, f"voice profile {profile_id} not found")
    try:
        await asyncio.to_thread(remove_tree, state.settings.storage.root, f"profiles/{profile_id}")
    except OSError:
        log.exception("voice profile %s deleted, but its files were not", profile_id)
    return web.Response(status=204)


async def profile_audio(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    profile = await _profile(state, request)
    if not profile.reference_audio_path:
        raise ApiError(404, f"voice profile {profile.id} has no reference audio")
    try:
        path = await asyncio.to_thread(existing_file, state.settings.storage.root,
                                       profile.reference_audio_path)
    except OutsideDataDir as exc:
        raise ApiError(404, str(exc)) from None
    if path is None:
        raise ApiError(404, f"the reference audio of voice profile {profile.id} is missing")
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


async def synthesize(request: web.Request) -> web.Response:
    state = request.app[STATE]
    profile = await _profile(state, request)
    body = await json_object(request)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "text is required (1-500 characters)")
    text = text.strip()
    if len(text) > SYNTH_MAX_CHARS:
        raise ApiError(400, f"text is {len(text)} characters long; at most {SYNTH_MAX_CHARS}")
    backends = ready_backends(state)
    tts = backends.tts
    try:
        voice = voice_for_profile(profile, backends, state.settings.storage.root)
    except NotDrivable as exc:
        raise ApiError(409, str(exc)) from None
    pieces: list[Pcm] = []
    try:
        async for pcm in tts.synthesize(text, voice):
            pieces.append(pcm)
    except BackendError as exc:
        raise ApiError(503, f"synthesis failed: {exc}") from None
    if not sum(len(p) for p in pieces):
        raise ApiError(422, "the text produced no audio")
    wav = await asyncio.to_thread(lambda: wav_bytes(np.concatenate(pieces), tts.sample_rate))
    return web.Response(body=wav, content_type="audio/wav")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/backends", backends_info)
    app.router.add_get("/api/profiles", list_profiles)
    app.router.add_post("/api/profiles", create_profile)
    app.router.add_get("/api/profiles/{id}", get_profile)
    app.router.add_patch("/api/profiles/{id}", patch_profile)
    app.router.add_delete("/api/profiles/{id}", delete_profile)
    app.router.add_get("/api/profiles/{id}/audio", profile_audio)
    app.router.add_post("/api/profiles/{id}/synthesize", synthesize)
