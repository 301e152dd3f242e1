"""Conversation objects -> storage records (the conversation never sees peewee)."""

from __future__ import annotations

from avatar_rtc.conversation.turn import Turn
from avatar_rtc.storage import TurnRecord


def turn_record(call_id: str, turn: Turn) -> TurnRecord:
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
    )

