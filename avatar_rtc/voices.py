"""Which TTS backend can speak which voice profile, and the Voice a call or the admin
API's test synthesis gets for it.

Piper cannot clone: it speaks any profile through the profile's installed voice name
and speed. Cloning backends (F5-TTS, CosyVoice) need the reference clip and its text.
"""

from __future__ import annotations

import os
from pathlib import Path

from avatar_rtc.backends.base import TextToSpeech, Voice
from avatar_rtc.backends.registry import Backends
from avatar_rtc.errors import AvatarError
from avatar_rtc.storage import Store, VoiceProfileRecord, canonical_id

PIPER = "piper"
CLONING_BACKENDS = ("f5-tts", "cosyvoice")
PROFILE_BACKENDS = (PIPER, *CLONING_BACKENDS)


class VoiceError(AvatarError):
    """A voice that cannot be used; the message says why."""


class UnknownVoice(VoiceError):
    """Neither an installed Piper voice nor a stored voice profile."""


class NotDrivable(VoiceError):
    """No loaded TTS backend can speak this profile; the message says why."""


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
    own backend when it is loaded, else by the first loaded one that can. ``root`` is
    the data folder its reference audio path is relative to."""
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
        # Lexical only (no disk access on the loop); the path was written by the admin API.
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


async def voice_named(name: str, backends: Backends, store: Store | None, root: Path) -> Voice:
    """The Voice a call asked for by ``name``: an installed Piper voice name, or a voice
    profile's id. Raises UnknownVoice or NotDrivable."""
    tts = backends.tts
    if name in tts.voices():
        default = tts.default_voice()
        return Voice(backend=default.backend, name=name, speed=default.speed)
    profile_id = canonical_id(name)
    profile = None
    if profile_id is not None and store is not None:
        profile = await store.get_profile(profile_id)
    if profile is None:
        raise UnknownVoice(f"unknown voice {name!r}")
    return voice_for_profile(profile, backends, root)
