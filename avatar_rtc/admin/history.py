"""Conversation history routes: calls, turns, recordings, search, stats, export."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import av
from aiohttp import web

from avatar_rtc.admin.audio import AudioDecodeError, cut_segment, wav_bytes
from avatar_rtc.admin.files import OutsideDataDir, existing_file, remove_file, remove_tree
from avatar_rtc.admin.params import iso, limit_param, page_json, page_params, path_id, time_param
from avatar_rtc.admin.resources import store_of
from avatar_rtc.http_errors import ApiError
from avatar_rtc.recordings import RECORDINGS_DIR
from avatar_rtc.state import STATE
from avatar_rtc.storage import CallRecord, TurnRecord

log = logging.getLogger(__name__)

TRACKS = ("user", "agent")
SEGMENT_RATE = 24000
SEGMENT_MARGIN_MS = 150  # a little context either side of a turn
MAX_QUERY_CHARS = 200


def call_summary(call: CallRecord, counts: tuple[int, int]) -> dict[str, Any]:
    return {
        "id": call.id,
        "started_at": iso(call.started_at),
        "ended_at": iso(call.ended_at),
        "end_reason": call.end_reason,
        "turns": counts[0],
        "interrupted_turns": counts[1],
        "voice_profile_id": call.voice_profile_id,
        "has_recording": bool(call.user_audio_path or call.agent_audio_path)
        and not call.recording_deleted,
        "recording_deleted": call.recording_deleted,
    }


def turn_json(turn: TurnRecord) -> dict[str, Any]:
    return {
        "id": turn.id,
        "index": turn.index,
        "started_at": iso(turn.started_at),
        "ended_at": iso(turn.ended_at),
        "user_text": turn.user_text,
        "reply_text": turn.reply_text,
        "spoken_text": turn.spoken_text,
        "interrupted": turn.interrupted,
        "cut_off": turn.cut_off,
        "timings": turn.timings,
        "user_audio_start_ms": turn.user_audio_start_ms,
        "user_audio_end_ms": turn.user_audio_end_ms,
        "agent_audio_start_ms": turn.agent_audio_start_ms,
        "agent_audio_end_ms": turn.agent_audio_end_ms,
        "audio_url": f"/admin/api/calls/{turn.call_id}/turns/{turn.id}/audio",
    }


def _counts(turns: list[TurnRecord]) -> tuple[int, int]:
    return len(turns), sum(1 for t in turns if t.interrupted)


async def _call(request: web.Request) -> CallRecord:
    call_id = path_id(request)
    call = await store_of(request.app[STATE]).get_call(call_id)
    if call is None:
        raise ApiError(404, f"call {call_id} not found")
    return call


def _track(request: web.Request) -> str:
    track = request.query.get("track", "user")
    if track not in TRACKS:
        raise ApiError(400, f"track must be user or agent, got {track!r}")
    return track


async def _recording(request: web.Request, call: CallRecord, track: str) -> Path:
    """The track's file, checked to lie inside the data folder; 404 with the reason."""
    if call.recording_deleted:
        raise ApiError(404, f"the recording of call {call.id} was deleted (retention policy)")
    stored = call.user_audio_path if track == "user" else call.agent_audio_path
    if not stored:
        raise ApiError(404, f"call {call.id} has no {track} recording")
    try:
        root = request.app[STATE].settings.storage.root
        path = await asyncio.to_thread(existing_file, root, stored)
    except OutsideDataDir as exc:
        raise ApiError(404, str(exc)) from None
    if path is None:
        raise ApiError(404, f"the {track} recording file of call {call.id} is missing")
    return path


async def list_calls(request: web.Request) -> web.Response:
    limit, offset = page_params(request)
    since = time_param(request, "since")
    until = time_param(request, "until", end_of_day=True)
    if since is not None and until is not None and since >= until:
        raise ApiError(400, "since must be before until")
    store = store_of(request.app[STATE])
    calls, total = await store.list_calls(limit, offset, since, until)
    counts = await store.turn_counts([c.id for c in calls])
    items = [call_summary(c, counts.get(c.id, (0, 0))) for c in calls]
    return web.json_response(page_json(items, total, limit, offset))


async def get_call(request: web.Request) -> web.Response:
    call = await _call(request)
    turns = await store_of(request.app[STATE]).turns(call.id)
    body = call_summary(call, _counts(turns))
    body["turns"] = [turn_json(t) for t in turns]
    return web.json_response(body)


async def call_recording(request: web.Request) -> web.StreamResponse:
    track = _track(request)
    path = await _recording(request, await _call(request), track)
    return web.FileResponse(path, headers={"Content-Type": "audio/ogg"})


async def turn_audio(request: web.Request) -> web.Response:
    track = _track(request)
    call = await _call(request)
    turn_id = path_id(request, "turn_id")
    turns = await store_of(request.app[STATE]).turns(call.id)
    turn = next((t for t in turns if t.id == turn_id), None)
    if turn is None:
        raise ApiError(404, f"turn {turn_id} not found in call {call.id}")
    start, end = ((turn.user_audio_start_ms, turn.user_audio_end_ms) if track == "user"
                  else (turn.agent_audio_start_ms, turn.agent_audio_end_ms))
    if start is None or end is None or end <= start:
        raise ApiError(404, f"turn {turn_id} has no {track} audio in the recording")
    path = await _recording(request, call, track)
    first_s = max(0, start - SEGMENT_MARGIN_MS) / 1000
    last_s = (end + SEGMENT_MARGIN_MS) / 1000

    try:
        pcm = await asyncio.to_thread(cut_segment, path, first_s, last_s, SEGMENT_RATE)
    except (AudioDecodeError, av.FFmpegError, OSError, ValueError) as exc:
        raise ApiError(422, f"could not read the {track} recording: {exc}") from None
    if not len(pcm):
        raise ApiError(404, f"the {track} recording of call {call.id} ends before turn "
                            f"{turn_id}")
    wav = await asyncio.to_thread(wav_bytes, pcm, SEGMENT_RATE)
    return web.Response(body=wav, content_type="audio/wav")


async def export_call(request: web.Request) -> web.Response:
    call = await _call(request)
    turns = await store_of(request.app[STATE]).turns(call.id)
    record = dataclasses.asdict(call)
    record.update(call_summary(call, _counts(turns)))  # ISO times, counts
    record["turns"] = [turn_json(t) for t in turns]
    body = json.dumps(record, ensure_ascii=False, indent=2)
    return web.Response(
        text=body,
        content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="call-{call.id}.json"'},
    )


async def delete_call(request: web.Request) -> web.Response:
    state = request.app[STATE]
    call = await _call(request)
    if call.id in state.calls:
        raise ApiError(409, f"call {call.id} is still in progress")
    if not await store_of(state).delete_call(call.id):
        raise ApiError(404, f"call {call.id} not found")
    await asyncio.to_thread(_remove_recording, state.settings.storage.root, call)
    return web.Response(status=204)


def _remove_recording(root: Path, call: CallRecord) -> None:
    # The call's folder, and its stored files wherever inside the data folder they are.
    removals = [(remove_tree, f"{RECORDINGS_DIR}/{call.id}")]
    removals += [(remove_file, p) for p in (call.user_audio_path, call.agent_audio_path) if p]
    for remove, target in removals:
        try:
            remove(root, target)
        except OutsideDataDir:
            log.warning("call %s: not deleting %r, outside the data folder", call.id, target)
        except OSError:
            log.exception("call %s deleted, but not its file %r", call.id, target)


async def search(request: web.Request) -> web.Response:
    query = request.query.get("q", "").strip()
    if not query:
        raise ApiError(400, "q is required")
    if len(query) > MAX_QUERY_CHARS:
        raise ApiError(400, f"q is longer than {MAX_QUERY_CHARS} characters")
    limit = limit_param(request)
    store = store_of(request.app[STATE])
    turns = await store.search_turns(query, limit)
    items = [{**turn_json(t), "call_id": t.call_id} for t in turns]
    return web.json_response({"items": items, "fts": store.search_uses_fts})


async def stats(request: web.Request) -> web.Response:
    summary = await store_of(request.app[STATE]).stats()
    return web.json_response({
        "calls": summary["calls"],
        "turns": summary["turns"],
        "interrupted_turns": summary["interruptions"],
        "latency_ms": summary["latency_ms"],
    })


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/calls", list_calls)
    app.router.add_get("/api/calls/{id}", get_call)
    app.router.add_delete("/api/calls/{id}", delete_call)
    app.router.add_get("/api/calls/{id}/recording", call_recording)
    app.router.add_get("/api/calls/{id}/turns/{turn_id}/audio", turn_audio)
    app.router.add_get("/api/calls/{id}/export", export_call)
    app.router.add_get("/api/search", search)
    app.router.add_get("/api/stats", stats)
