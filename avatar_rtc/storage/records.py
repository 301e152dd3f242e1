"""Plain records exchanged with the rest of the app (never peewee rows).

All datetimes are timezone-aware; they come back from the store in UTC.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def new_id() -> str:
    """A fresh random id in the canonical UUID string form."""
    return str(uuid.uuid4())


def canonical_id(text: str) -> str | None:
    """``text`` as an id in its canonical UUID form (the form ids are stored in), or None."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CallRecord:
    id: str
    started_at: datetime
    ended_at: datetime | None = None
    # "hangup", "timeout", "idle", "error", "shutdown", ... (free text on purpose:
    # new reasons must not need a migration).
    end_reason: str | None = None
    user_agent: str | None = None
    remote_addr: str | None = None
    voice_profile_id: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    user_audio_path: str | None = None
    agent_audio_path: str | None = None
    recording_deleted: bool = False
    recording_bytes: int = 0


@dataclass(frozen=True, slots=True)
class TurnRecord:
    id: str
    call_id: str
    index: int
    started_at: datetime
    ended_at: datetime | None = None
    user_text: str = ""
    reply_text: str = ""  # everything the LLM produced
    spoken_text: str = ""  # the part the user actually heard
    interrupted: bool = False
    cut_off: bool = False  # still in flight when the call ended
    timings: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds
    # Offsets into the call recording, in milliseconds.
    user_audio_start_ms: int | None = None
    user_audio_end_ms: int | None = None
    agent_audio_start_ms: int | None = None
    agent_audio_end_ms: int | None = None
    typed: bool = False  # the user typed the turn's text (no audio)
    # The tools the model called in the turn, in order: {"id", "name", "arguments",
    # "result" | "error"} (conversation/tools.py).
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    language: str = ""  # Whisper's code for what the user spoke ("" unknown)


@dataclass(frozen=True, slots=True)
class VoiceProfileRecord:
    id: str
    name: str
    backend: str  # "piper", "f5-tts", "cosyvoice", ...
    created_at: datetime
    updated_at: datetime
    description: str = ""
    reference_audio_path: str | None = None
    reference_text: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # voice name, speed, ...
