"""The replay's one output format, for both modes: turns, VAD segments, timings.

Times ending in `_s` are seconds on the replay's own time axis (0 = the start of the
call, or of the recording offline). Timings ending in `_ms` are the server's per-stage
numbers exactly as `Turn.timings_ms()` gave them: ms after the end of the user's speech
as the pipeline heard it (`stt_ms` is a duration). Audio is kept beside the JSON as
16 kHz mono WAV files, on the same time axis.
"""

from __future__ import annotations

import dataclasses
import json
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from media.resample import Pcm

AUDIO_RATE = 16000


@dataclass
class VadSegment:
    start_s: float
    end_s: float | None = None  # None: still speaking when the replay ended


@dataclass
class TimelineTurn:
    index: int  # position in this replay
    source: str  # the file played, or "recording" offline
    role: str = "turn"  # "turn", or "barge-in" for speech played over the agent
    server_turn: int | None = None  # the index the pipeline gave the turn
    user_start_s: float | None = None  # speech onset
    user_end_s: float | None = None  # end of speech
    agent_start_s: float | None = None  # first agent audio (received, or sent offline)
    agent_end_s: float | None = None
    user_text: str = ""
    reply_text: str = ""
    spoken_text: str = ""
    interrupted: bool = False
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Client side, WebRTC mode only: end of user speech sent -> first agent audio received.
    voice_to_voice_ms: float | None = None
    # On the turn the user talked over, from the onset of the user's speech: to the end
    # of the reply's audio (it stopped for good), and to its first 200 ms pause (it may
    # resume after a pause if the speech turns out too short to count).
    barge_in_reaction_ms: float | None = None
    barge_in_pause_ms: float | None = None
    # Client side, WebRTC mode only: the longest silence inside the reply's audio (a
    # reply whose next chunk came late stalls mid-answer).
    longest_silence_ms: float | None = None
    error: str | None = None


@dataclass
class OriginalTurn:
    """A turn of the recorded call, as stored (offline mode)."""

    index: int
    user_text: str
    reply_text: str
    spoken_text: str
    interrupted: bool
    timings_ms: dict[str, float]
    user_start_s: float | None = None
    user_end_s: float | None = None
    agent_start_s: float | None = None
    agent_end_s: float | None = None


@dataclass
class Match:
    """One row of the side-by-side comparison; either side may be missing."""

    original: int | None  # index into Timeline.original
    replay: int | None  # index into Timeline.turns


_NOT_SAVED = ("user_audio", "agent_audio", "clock_origin")


@dataclass
class Timeline:
    mode: str  # "webrtc" or "offline"
    source: str  # server URL, call ID, or file
    started_at: str  # ISO 8601 UTC
    call_id: str | None = None  # the server's session ID, or the recorded call's ID
    duration_s: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)
    turns: list[TimelineTurn] = field(default_factory=list)
    vad: list[VadSegment] = field(default_factory=list)
    original: list[OriginalTurn] | None = None
    matches: list[Match] | None = None
    audio: dict[str, str] = field(default_factory=dict)  # track -> WAV file name
    # What was played and heard, 16 kHz mono on the timeline's axis (not in the JSON).
    user_audio: Pcm | None = field(default=None, repr=False, compare=False)
    agent_audio: Pcm | None = field(default=None, repr=False, compare=False)
    # time.monotonic() at t = 0 in the process that ran the replay (not in the JSON).
    clock_origin: float | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in _NOT_SAVED}
        result: dict[str, Any] = json.loads(json.dumps(data, default=_plain))
        return result

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timeline:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["turns"] = [TimelineTurn(**t) for t in data.get("turns", [])]
        values["vad"] = [VadSegment(**v) for v in data.get("vad", [])]
        if data.get("original") is not None:
            values["original"] = [OriginalTurn(**t) for t in data["original"]]
        if data.get("matches") is not None:
            values["matches"] = [Match(**m) for m in data["matches"]]
        return cls(**values)

    def save(self, folder: Path) -> Path:
        """Writes timeline.json and the audio tracks into `folder`; returns the JSON path."""
        folder.mkdir(parents=True, exist_ok=True)
        for track, pcm in (("user", self.user_audio), ("agent", self.agent_audio)):
            if pcm is not None:
                write_wav(folder / f"{track}.wav", pcm, AUDIO_RATE)
                self.audio[track] = f"{track}.wav"
        path = folder / "timeline.json"
        path.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> Timeline:
        timeline = cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        for track, name in timeline.audio.items():
            wav = path.parent / name
            if wav.exists():
                setattr(timeline, f"{track}_audio", read_wav(wav))
        return timeline


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def place(track: Pcm, at_s: float, pcm: Pcm, rate: int = AUDIO_RATE) -> Pcm:
    """Writes `pcm` into `track` starting at `at_s`, growing the track as needed."""
    start = max(0, round(at_s * rate))
    end = start + len(pcm)
    if end > len(track):
        track = np.concatenate([track, np.zeros(end - len(track), np.int16)])
    track[start:end] = pcm
    return track


def write_wav(path: Path, pcm: Pcm, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.asarray(pcm, dtype="<i2").tobytes())


def read_wav(path: Path) -> Pcm:
    with wave.open(str(path), "rb") as source:
        return np.frombuffer(source.readframes(source.getnframes()), dtype="<i2").astype(
            np.int16)
