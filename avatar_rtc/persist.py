"""Conversation objects -> storage records (the conversation never sees peewee)."""

from __future__ import annotations

from typing import Any

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


def turn_dict(record: TurnRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "index": record.index,
        "user_text": record.user_text,
        "reply_text": record.reply_text,
        "spoken_text": record.spoken_text,
        "interrupted": record.interrupted,
        "cut_off": record.cut_off,
        "timings": record.timings,
    }
