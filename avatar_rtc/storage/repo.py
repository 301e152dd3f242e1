"""Synchronous database operations. Run only on the Store's worker thread."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import peewee

from . import search
from . import stats as statistics
from .codec import (
    json_from_db,
    json_list_from_db,
    json_list_to_db,
    json_to_db,
    opt_time_from_db,
    opt_time_to_db,
    time_from_db,
    time_to_db,
    timings_from_db,
)
from .db import snapshot
from .models import Call, Turn, VoiceProfile
from .records import CallRecord, TurnRecord, VoiceProfileRecord, utc_now

# --- calls -----------------------------------------------------------------


def _call_row(call: CallRecord) -> dict[str, Any]:
    return {
        "id": call.id,
        "started_at": time_to_db(call.started_at),
        "ended_at": opt_time_to_db(call.ended_at),
        "end_reason": call.end_reason,
        "user_agent": call.user_agent,
        "remote_addr": call.remote_addr,
        "voice_profile_id": call.voice_profile_id,
        "settings": json_to_db(call.settings),
        "user_audio_path": call.user_audio_path,
        "agent_audio_path": call.agent_audio_path,
        "recording_deleted": call.recording_deleted,
        "recording_bytes": call.recording_bytes,
    }


def _call_record(row: Call) -> CallRecord:
    return CallRecord(
        id=row.id,
        started_at=time_from_db(row.started_at),
        ended_at=opt_time_from_db(row.ended_at),
        end_reason=row.end_reason,
        user_agent=row.user_agent,
        remote_addr=row.remote_addr,
        voice_profile_id=row.voice_profile_id,
        settings=json_from_db(row.settings),
        user_audio_path=row.user_audio_path,
        agent_audio_path=row.agent_audio_path,
        recording_deleted=bool(row.recording_deleted),
        recording_bytes=int(row.recording_bytes),
    )


def create_call(db: peewee.Database, call: CallRecord) -> None:
    with db.atomic():
        Call.insert(_call_row(call)).execute()


def end_call(db: peewee.Database, call_id: str, ended_at: datetime, end_reason: str) -> bool:
    # First end wins: a later "shutdown" must not overwrite the real reason.
    with db.atomic():
        query = Call.update(ended_at=time_to_db(ended_at), end_reason=end_reason).where(
            (Call.id == call_id) & Call.ended_at.is_null()
        )
        return bool(query.execute())


def set_call_recording(
    db: peewee.Database,
    call_id: str,
    user_audio_path: str | None,
    agent_audio_path: str | None,
    recording_bytes: int,
) -> bool:
    with db.atomic():
        query = Call.update(
            user_audio_path=user_audio_path,
            agent_audio_path=agent_audio_path,
            recording_bytes=recording_bytes,
            recording_deleted=False,
        ).where(Call.id == call_id)
        return bool(query.execute())


def mark_recording_deleted(db: peewee.Database, call_id: str) -> bool:
    with db.atomic():
        query = Call.update(recording_deleted=True).where(Call.id == call_id)
        return bool(query.execute())


def recorded_calls() -> list[CallRecord]:
    has_files = Call.user_audio_path.is_null(False) | Call.agent_audio_path.is_null(False)
    rows = (
        Call.select()
        .where(has_files & (Call.recording_deleted == False))  # noqa: E712
        .order_by(Call.started_at, Call.id)
    )
    return [_call_record(row) for row in rows]


def get_call(call_id: str) -> CallRecord | None:
    row = Call.get_or_none(Call.id == call_id)
    return None if row is None else _call_record(row)


def list_calls(
    db: peewee.Database,
    limit: int,
    offset: int,
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[CallRecord], int]:
    query = Call.select()
    if since is not None:
        query = query.where(Call.started_at >= time_to_db(since))
    if until is not None:
        query = query.where(Call.started_at < time_to_db(until))
    with snapshot(db):  # page and total from one moment
        total = query.count()
        rows = list(
            query.order_by(Call.started_at.desc(), Call.id.desc()).limit(limit).offset(offset)
        )
    return [_call_record(row) for row in rows], total


def delete_call(db: peewee.Database, call_id: str) -> bool:
    # Turns go with it (ON DELETE CASCADE), and the FTS triggers follow.
    with db.atomic():
        return bool(Call.delete().where(Call.id == call_id).execute())


# --- turns -----------------------------------------------------------------


def _turn_row(turn: TurnRecord) -> dict[str, Any]:
    return {
        "id": turn.id,
        "call": turn.call_id,
        "turn_index": turn.index,
        "started_at": time_to_db(turn.started_at),
        "ended_at": opt_time_to_db(turn.ended_at),
        "user_text": turn.user_text,
        "reply_text": turn.reply_text,
        "spoken_text": turn.spoken_text,
        "interrupted": turn.interrupted,
        "cut_off": turn.cut_off,
        "timings": json_to_db(turn.timings),
        "user_audio_start_ms": turn.user_audio_start_ms,
        "user_audio_end_ms": turn.user_audio_end_ms,
        "agent_audio_start_ms": turn.agent_audio_start_ms,
        "agent_audio_end_ms": turn.agent_audio_end_ms,
        "typed": turn.typed,
        "tool_calls": json_list_to_db(turn.tool_calls),
        "language": turn.language,
    }


def _turn_record(row: Turn) -> TurnRecord:
    return TurnRecord(
        id=row.id,
        call_id=row.call_id,
        index=row.turn_index,
        started_at=time_from_db(row.started_at),
        ended_at=opt_time_from_db(row.ended_at),
        user_text=row.user_text,
        reply_text=row.reply_text,
        spoken_text=row.spoken_text,
        interrupted=bool(row.interrupted),
        cut_off=bool(row.cut_off),
        timings=timings_from_db(row.timings),
        user_audio_start_ms=row.user_audio_start_ms,
        user_audio_end_ms=row.user_audio_end_ms,
        agent_audio_start_ms=row.agent_audio_start_ms,
        agent_audio_end_ms=row.agent_audio_end_ms,
        typed=bool(row.typed),
        tool_calls=json_list_from_db(row.tool_calls),
        language=row.language,
    )


_TURN_UPDATABLE = [
    Turn.turn_index,
    Turn.started_at,
    Turn.ended_at,
    Turn.user_text,
    Turn.reply_text,
    Turn.spoken_text,
    Turn.interrupted,
    Turn.cut_off,
    Turn.timings,
    Turn.user_audio_start_ms,
    Turn.user_audio_end_ms,
    Turn.agent_audio_start_ms,
    Turn.agent_audio_end_ms,
    Turn.typed,
    Turn.tool_calls,
    Turn.language,
]


def save_turn(db: peewee.Database, turn: TurnRecord) -> None:
    # A true upsert (not INSERT OR REPLACE): the update fires the FTS update
    # trigger and the turn keeps its seq, i.e. its FTS rowid.
    with db.atomic():
        Turn.insert(_turn_row(turn)).on_conflict(
            conflict_target=[Turn.id], preserve=_TURN_UPDATABLE
        ).execute()


def turns(call_id: str) -> list[TurnRecord]:
    rows = Turn.select().where(Turn.call == call_id).order_by(Turn.turn_index, Turn.seq)
    return [_turn_record(row) for row in rows]


def turn_counts(call_ids: list[str]) -> dict[str, tuple[int, int]]:
    """call id -> (turns, interrupted turns); calls without turns are left out."""
    if not call_ids:
        return {}
    interrupted = peewee.fn.SUM(peewee.Case(None, [(Turn.interrupted == True, 1)], 0))  # noqa: E712
    query = (
        Turn.select(Turn.call, peewee.fn.COUNT(Turn.seq), interrupted)
        .where(Turn.call.in_(call_ids))
        .group_by(Turn.call)
    )
    rows: Any = query.tuples()  # (call_id, count, interrupted); typed as rows by peewee
    return {str(row[0]): (int(row[1]), int(row[2] or 0)) for row in rows}


def search_turns(db: peewee.Database, query: str, limit: int, indexed: bool) -> list[TurnRecord]:
    return [_turn_record(row) for row in search.search(db, query, limit, indexed)]


def stats(db: peewee.Database) -> dict[str, Any]:
    # Aggregated by the database; counts and percentiles from one moment.
    with snapshot(db):
        return {**statistics.counts(), "latency_ms": statistics.latency_summary(db)}


# --- voice profiles --------------------------------------------------------


def _profile_record(row: VoiceProfile) -> VoiceProfileRecord:
    return VoiceProfileRecord(
        id=row.id,
        name=row.name,
        backend=row.backend,
        created_at=time_from_db(row.created_at),
        updated_at=time_from_db(row.updated_at),
        description=row.description,
        reference_audio_path=row.reference_audio_path,
        reference_text=row.reference_text,
        params=json_from_db(row.params),
    )


def _profile_fields(profile: VoiceProfileRecord) -> dict[str, Any]:
    return {
        "name": profile.name,
        "backend": profile.backend,
        "description": profile.description,
        "reference_audio_path": profile.reference_audio_path,
        "reference_text": profile.reference_text,
        "params": json_to_db(profile.params),
    }


def create_profile(db: peewee.Database, profile: VoiceProfileRecord) -> None:
    with db.atomic():
        VoiceProfile.insert(
            id=profile.id,
            created_at=time_to_db(profile.created_at),
            updated_at=time_to_db(profile.updated_at),
            **_profile_fields(profile),
        ).execute()


def get_profile(profile_id: str) -> VoiceProfileRecord | None:
    row = VoiceProfile.get_or_none(VoiceProfile.id == profile_id)
    return None if row is None else _profile_record(row)


def list_profiles(
    db: peewee.Database, limit: int, offset: int, newest_first: bool = False
) -> tuple[list[VoiceProfileRecord], int]:
    order = (
        (VoiceProfile.created_at.desc(), VoiceProfile.id.desc())
        if newest_first
        else (VoiceProfile.name, VoiceProfile.id)
    )
    with snapshot(db):
        total = VoiceProfile.select().count()
        rows = list(VoiceProfile.select().order_by(*order).limit(limit).offset(offset))
    return [_profile_record(row) for row in rows], total


def update_profile(db: peewee.Database, profile: VoiceProfileRecord) -> VoiceProfileRecord | None:
    # created_at is kept; updated_at is stamped here so callers cannot forget it.
    with db.atomic():
        changed = (
            VoiceProfile.update(updated_at=time_to_db(utc_now()), **_profile_fields(profile))
            .where(VoiceProfile.id == profile.id)
            .execute()
        )
        if not changed:
            return None
        return get_profile(profile.id)


def delete_profile(db: peewee.Database, profile_id: str) -> bool:
    with db.atomic():
        return bool(VoiceProfile.delete().where(VoiceProfile.id == profile_id).execute())
