"""Which TTS backend can speak which voice profile, and the Voice it gets.

Piper cannot clone: it speaks any profile through the profile's installed voice name
and speed. Cloning backends (F5-TTS, CosyVoice) need the reference clip and its text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aiohttp import web

from avatar_rtc import recordings
from avatar_rtc.admin.errors import ApiError
from avatar_rtc.admin.params import iso
from avatar_rtc.app import STATE, AppState
from avatar_rtc.backends.base import TextToSpeech, Voice
from avatar_rtc.backends.registry import Backends
from avatar_rtc.storage import VoiceProfileRecord

PIPER = "piper"
CLONING_BACKENDS = ("f5-tts", "cosyvoice")
PROFILE_BACKENDS = (PIPER, *CLONING_BACKENDS)
MAX_PUBLIC_VOICES = 1000


class NotDrivable(ValueError):
    """No loaded TTS backend can speak this profile; the message says why."""


def data_dir(state: AppState) -> Path:
    return recordings.data_dir(state.settings)


def ready_backends(state: AppState) -> Backends:
    if state.backends is None or not state.ready.is_set():
        raise ApiError(503, "warming up: models are loading", headers={"Retry-After": "5"})
    return state.backends


def running_backend(tts: TextToSpeech) -> str:
    """The backend of calls without a profile (tts.backend)."""
    return tts.default_voice().backend


def loaded_backends(backends: Backends) -> list[str]:
    """The TTS backends loaded now, the default first (more load with tts.backends)."""
    ready = [key.removeprefix("tts/") for key, value in backends.status.items()
             if key.startswith("tts/") and value == "ready"]
    return list(dict.fromkeys([running_backend(backends.tts), *ready]))


def drivable_by(profile: VoiceProfileRecord) -> list[str]:
    backends = [PIPER]
    if profile.reference_audio_path and profile.reference_text.strip():
        backends.extend(CLONING_BACKENDS)
    return backends


def voice_for_profile(profile: VoiceProfileRecord, backends: Backends, root: Path) -> Voice:
    """The Voice a call or a test synthesis speaks this profile with: by the profile's
    own backend when it is loaded, else by the first loaded one that can."""
    loaded = loaded_backends(backends)
    able = drivable_by(profile)
    backend = next((b for b in (profile.backend, *loaded) if b in loaded and b in able), None)
    if backend is None:
        raise NotDrivable(
            f"voice profile {profile.name!r} cannot be spoken by the loaded TTS backends "
            f"({', '.join(loaded)}): cloning needs its reference audio and text"
        )
    params = profile.params
    name = str(params.get("voice") or "") if backend == PIPER else profile.name
    if backend == PIPER and name and name not in backends.tts.voices():
        raise NotDrivable(f"voice profile {profile.name!r} uses Piper voice {name!r}, "
                          "which is not installed")
    reference = None
    if profile.reference_audio_path:
        # Lexical only (no disk access on the loop); the path was written by this API.
        reference = os.path.normpath(root / profile.reference_audio_path)
    return Voice(
        backend=backend,
        name=name,
        speed=float(params.get("speed", 1.0)),
        profile_id=profile.id,
        reference_audio=reference,
        reference_text=profile.reference_text or None,
        params=dict(params),
    )


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


async def public_voices(request: web.Request) -> web.Response:
    """GET /api/voices (no auth): what the call page may offer as "voice"."""
    state = request.app[STATE]
    try:
        backends = ready_backends(state)
    except ApiError as exc:  # a route of the main app: no admin error middleware
        return exc.response()
    loaded = loaded_backends(backends)
    items: list[dict[str, Any]] = []
    if state.store is not None:
        profiles, _ = await state.store.list_profiles(limit=MAX_PUBLIC_VOICES)
        for profile in profiles:
            able = drivable_by(profile)
            items.append({"id": profile.id, "name": profile.name, "backend": profile.backend,
                          "drivable_by": able, "active": any(b in loaded for b in able)})
    return web.json_response({"default": backends.tts.default_voice().name, "items": items})
