"""Conversation objects -> storage records (the conversation never sees peewee)."""

from __future__ import annotations

from collections.abc import Callable

from avatar_rtc.conversation.turn import AUDIO_RATE, Turn
from avatar_rtc.storage import TurnRecord

# (monotonic time, "user" | "agent") -> ms into that track of the call's recording
# (CallRecorder.offset_ms).
OffsetFn = Callable[[float, str], int]


def turn_record(call_id: str, turn: Turn, offset_ms: OffsetFn | None = None) -> TurnRecord:
    """The stored form of ``turn``; with ``offset_ms``, where it sits in the recording."""
    offsets: dict[str, int | None] = {}
    if offset_ms is not None:
        # The end is a moment the server saw; the start is the end less the audio the
        # turn holds (preroll included), which is contiguous in the recording.
        end = offset_ms(turn.speech_end_at, "user")
        offsets["user_audio_start_ms"] = max(0, end - round(len(turn.audio) * 1000 / AUDIO_RATE))
        offsets["user_audio_end_ms"] = end
        first, last = turn.marks.get("first_audio_sent"), turn.marks.get("last_audio_sent")
        if first is not None and last is not None:
            offsets["agent_audio_start_ms"] = offset_ms(first, "agent")
            offsets["agent_audio_end_ms"] = offset_ms(last, "agent")
    return TurnRecord(
        id=turn.id,
        call_id=call_id,
        index=turn.index,
        started_at=turn.started_at,
        ended_at=turn.ended_at,
        user_text=turn.user_text,
        reply_text=turn.reply_text,
        spoken_text=turn.spoken_text,
        interrupted=turn.interrupted,
        cut_off=turn.cut_off,
        timings=turn.timings_ms(),
        language=turn.language.heard if turn.language is not None else "",
        **offsets,
    )
