"""Backend names: the built-in ones and those other packages add through entry points.

A separately installed package adds an STT, LLM or TTS backend by declaring an entry
point in the group of its kind; its name is the backend's name in the settings, its
object a factory `(settings, shared) -> backend` (see `avatar_rtc.backends.factories`):

    [project.entry-points."avatar_rtc.tts"]
    my-voice = "my_package.tts:build"

This module only names them (the settings check names with it, before any backend
loads); `avatar_rtc.backends.registry` loads them.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Literal

Kind = Literal["stt", "llm", "tts"]

GROUPS: dict[Kind, str] = {"stt": "avatar_rtc.stt", "llm": "avatar_rtc.llm",
                           "tts": "avatar_rtc.tts"}

BUILTIN: dict[Kind, tuple[str, ...]] = {
    "stt": ("faster-whisper",),
    "llm": ("llama-cpp", "openai"),
    "tts": ("piper", "f5-tts", "cosyvoice"),
}


def plugins(kind: Kind) -> dict[str, EntryPoint]:
    """The installed packages' backends of `kind`, by name (a built-in name wins)."""
    return {ep.name: ep for ep in entry_points(group=GROUPS[kind])
            if ep.name not in BUILTIN[kind]}


def backend_names(kind: Kind) -> tuple[str, ...]:
    """Every backend of `kind` the settings may name: built-in first."""
    return BUILTIN[kind] + tuple(sorted(plugins(kind)))
