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
    user_start = user_end = agent_start = agent_end = None
    if offset_ms is not None:
        if not turn.typed:  # a typed turn has no audio of the user
            # The end is a moment the server saw; the start is the end less the audio
            # the turn holds (preroll included), which is contiguous in the recording.
            user_end = offset_ms(turn.speech_end_at, "user")
            user_start = max(0, user_end - round(len(turn.audio) * 1000 / AUDIO_RATE))
        first, last = turn.marks.get("first_audio_sent"), turn.marks.get("last_audio_sent")
        if first is not None and last is not None:
            agent_start = offset_ms(first, "agent")
            agent_end = offset_ms(last, "agent")
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
        user_audio_start_ms=user_start,
        user_audio_end_ms=user_end,
        agent_audio_start_ms=agent_start,
        agent_audio_end_ms=agent_end,
        typed=turn.typed,
        tool_calls=[use.record() for use in turn.tool_uses],
        language=turn.language.heard if turn.language is not None else "",
    )
