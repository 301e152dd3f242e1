"""One exchange: the user's utterance, the agent's reply, and what was heard of it."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from dataclasses import dataclass, field

from avatar_rtc.backends.base import Pcm
from avatar_rtc.backends.cpu_gate import CpuGate
from avatar_rtc.backends.priority import UserWait
from avatar_rtc.conversation.language import LanguagePlan
from avatar_rtc.conversation.playout import SpokenChunk
from avatar_rtc.conversation.tool_use import ToolUse

# Stage stamps, in the order a turn passes them (monotonic seconds).
STAGES = (
    "stt_start",
    "stt_end",
    "llm_first_token",
    "first_chunk",
    "tts_first_audio",
    "committed",
    "first_audio_sent",
    "last_audio_sent",  # the reply's audio ended: played out, or cut
)

AUDIO_RATE = 16000  # the user's audio in a turn, as the endpointer hands it over


@dataclass
class Turn:
    audio: Pcm
    speech_end_at: float
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    index: int = -1  # assigned when the turn is committed and has words
    started_at: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC)
    )
    ended_at: datetime.datetime | None = None
    committed: asyncio.Event = field(default_factory=asyncio.Event)
    gate: CpuGate = field(default_factory=CpuGate)
    # The user waits from the moment the turn starts; its reply's audio sets `due`.
    wait: UserWait = field(default_factory=lambda: UserWait(time.monotonic()))
    user_text: str = ""
    typed: bool = False  # the user typed user_text (no audio, no transcript)
    # Why the utterance was not taken as the caller's (noise.py: "no_speech", ...): the
    # turn then has no user_text, so it gets no reply and is not stored.
    rejected: str = ""
    reply_text: str = ""
    # The language the caller spoke and how the reply answers it (language.py).
    language: LanguagePlan | None = None
    spoken_text: str = ""  # set when the turn ends: what was really played out
    chunks: list[SpokenChunk] = field(default_factory=list)
    backchannels: list[str] = field(default_factory=list)  # said over the reply
    tool_uses: list[ToolUse] = field(default_factory=list)  # the tools the reply called
    marks: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    cut_off: bool = False
    error: str | None = None
    announced: bool = False
    finished: bool = False
    task: asyncio.Task[None] | None = None

    @property
    def transcribed(self) -> bool:
        """Whether user_text is known: typed, or the transcript is done."""
        return self.typed or "stt_end" in self.marks

    @property
    def chunk_text(self) -> str:
        """The reply's chunks, as sent to TTS."""
        return " ".join(chunk.text for chunk in self.chunks)

    @property
    def unplayed_samples(self) -> int:
        """Reply audio queued on the track and not sent yet."""
        return sum(p.total_samples - p.sent_samples for c in self.chunks for p in c.playouts)

    def mark(self, stage: str, at: float) -> None:
        self.marks.setdefault(stage, at)

    def timings_ms(self) -> dict[str, float]:
        """Stage times in ms after the end of the user's speech (stt_ms is a duration)."""
        result: dict[str, float] = {}
        m = self.marks
        if "committed" in m:
            result["endpoint_ms"] = (m["committed"] - self.speech_end_at) * 1000
        if "stt_start" in m and "stt_end" in m:
            result["stt_ms"] = (m["stt_end"] - m["stt_start"]) * 1000
        for stage in ("stt_end", "llm_first_token", "first_chunk", "tts_first_audio",
                      "first_audio_sent"):
            if stage in m:
                name = "stt_done_ms" if stage == "stt_end" else f"{stage}_ms"
                result[name] = (m[stage] - self.speech_end_at) * 1000
        return {k: round(v, 1) for k, v in result.items()}
