"""Conversation history through the admin API, on a real SQLite file or a real
PostgreSQL database, and real Ogg/Opus recordings written with PyAV: listing, date
filters, pagination, search, stats, export, recordings and per-turn segments, deletion,
and paths that try to leave the data folder. The tests of the SQL run on both engines;
those of the recordings on SQLite only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from yarl import URL

from avatar_rtc.storage import CallRecord, Store, TurnRecord, new_id
from tests.admin_helpers import (
    API,
    Admin,
    ClientFactory,
    admin_server,
    decode_to,
    read_wav,
    rms,
    tone,
    write_ogg_opus,
)
from tests.fakes import fake_backends

pytestmark = pytest.mark.timeout(60)

DAY = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
# For the tests of the recordings: their SQL is the same as in the others.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
async def admin(aiohttp_client: ClientFactory, tmp_path: Path,
                database_url: str) -> AsyncIterator[Admin]:
    async with admin_server(aiohttp_client, fake_backends(), tmp_path / "data",
                            storage__database_url=database_url) as server:
        yield server


def store_of(admin: Admin) -> Store:
    assert admin.state.store is not None
    return admin.state.store


async def add_call(store: Store, started_at: datetime, turns: list[dict[str, Any]],
                   **fields: Any) -> tuple[CallRecord, list[TurnRecord]]:
    call = CallRecord(id=new_id(), started_at=started_at,
                      ended_at=started_at + timedelta(minutes=2), end_reason="hangup", **fields)
    await store.create_call(call)
    records = []
    for index, turn in enumerate(turns):
        record = TurnRecord(id=new_id(), call_id=call.id, index=index,
                            started_at=started_at + timedelta(seconds=10 * index),
                            ended_at=started_at + timedelta(seconds=10 * index + 5), **turn)
        await store.save_turn(record)
        records.append(record)
    return call, records


async def seed(store: Store) -> list[tuple[CallRecord, list[TurnRecord]]]:
    """Three calls on three days; the middle one has an interrupted turn."""
    return [
        await add_call(store, DAY, [
            {"user_text": "What is the weather in Paris?", "reply_text": "Sunny and mild.",
             "spoken_text": "Sunny and mild.", "timings": {"stt_ms": 100.0, "llm_ms": 300.0}},
        ]),
        await add_call(store, DAY + timedelta(days=1), [
            {"user_text": "Tell me a story about dragons.",
             "reply_text": "Once upon a time a dragon lived in a cave.",
             "spoken_text": "Once upon a time", "interrupted": True,
             "timings": {"stt_ms": 200.0}},
            {"user_text": "Thanks, goodbye.", "reply_text": "Goodbye!",
             "spoken_text": "Goodbye!", "timings": {"stt_ms": 300.0, "llm_ms": 500.0}},
        ], voice_profile_id=new_id()),
        await add_call(store, DAY + timedelta(days=2), []),
    ]


async def get_json(admin: Admin, path: str, status: int = 200) -> Any:
    response = await admin.client.get(path)
    body = await response.json()
    assert response.status == status, (path, body)
    return body


async def test_calls_list_newest_first_with_counts_and_pages(admin: Admin) -> None:
    calls = await seed(store_of(admin))
    page = await get_json(admin, f"{API}/calls")
    assert [c["id"] for c in page["items"]] == [c.id for c, _ in reversed(calls)]
    assert (page["total"], page["limit"], page["offset"]) == (3, 50, 0)
    middle = page["items"][1]
    assert middle == {
        "id": calls[1][0].id,
        "started_at": "2025-03-11T09:00:00Z",
        "ended_at": "2025-03-11T09:02:00Z",
        "end_reason": "hangup",
        "turns": 2,
        "interrupted_turns": 1,
        "voice_profile_id": calls[1][0].voice_profile_id,
        "has_recording": False,
        "recording_deleted": False,
    }
    assert [c["turns"] for c in page["items"]] == [0, 2, 1]

    page = await get_json(admin, f"{API}/calls?limit=1&offset=1")
    assert [c["id"] for c in page["items"]] == [calls[1][0].id] and page["total"] == 3
    page = await get_json(admin, f"{API}/calls?limit=2&offset=2")
    assert [c["id"] for c in page["items"]] == [calls[0][0].id]
    page = await get_json(admin, f"{API}/calls?offset=10")
    assert page["items"] == [] and page["total"] == 3
    for query, message in (("limit=0", "limit must be 1-200"), ("limit=201", "1-200"),
                           ("limit=ten", "limit must be an integer"),
                           ("offset=-1", "offset must be"), ("offset=1.5", "integer")):
        body = await get_json(admin, f"{API}/calls?{query}", 400)
        assert message in body["error"], query


async def test_calls_filter_by_date_or_datetime(admin: Admin) -> None:
    calls = await seed(store_of(admin))
    ids = [c.id for c, _ in calls]

    async def listed(query: str) -> list[str]:
        page = await get_json(admin, f"{API}/calls?{query}")
        assert page["total"] == len(page["items"])
        return [c["id"] for c in page["items"]]

    assert await listed("since=2025-03-11") == [ids[2], ids[1]]
    assert await listed("until=2025-03-11") == [ids[1], ids[0]]  # a date includes its day
    assert await listed("since=2025-03-11&until=2025-03-11") == [ids[1]]
    assert await listed("since=2025-03-11T09:00:00Z") == [ids[2], ids[1]]
    assert await listed("until=2025-03-11T09:00:00%2B00:00") == [ids[0]]  # instants: exclusive
    assert await listed("since=2025-03-11T09:30:00%2B01:00&until=2025-03-12T08:00:00") == [
        ids[1]]
    page = await get_json(admin, f"{API}/calls?since=2025-03-11T09:00:00.000Z&limit=1")
    assert [c["id"] for c in page["items"]] == [ids[2]] and page["total"] == 2
    for query in ("since=yesterday", "until=2025-13-01", "since=2025-03-11T25:00"):
        body = await get_json(admin, f"{API}/calls?{query}", 400)
        assert "must be an ISO date or datetime" in body["error"], query
    body = await get_json(admin, f"{API}/calls?since=2025-03-12&until=2025-03-11", 400)
    assert body["error"] == "since must be before until"


async def test_call_detail_has_its_turns(admin: Admin) -> None:
    calls = await seed(store_of(admin))
    call, turns = calls[1]
    body = await get_json(admin, f"{API}/calls/{call.id}")
    assert body["id"] == call.id and body["interrupted_turns"] == 1
    assert [t["id"] for t in body["turns"]] == [t.id for t in turns]
    first = body["turns"][0]
    assert first == {
        "id": turns[0].id,
        "index": 0,
        "started_at": "2025-03-11T09:00:00Z",
        "ended_at": "2025-03-11T09:00:05Z",
        "user_text": "Tell me a story about dragons.",
        "reply_text": "Once upon a time a dragon lived in a cave.",
        "spoken_text": "Once upon a time",
        "interrupted": True,
        "cut_off": False,
        "timings": {"stt_ms": 200.0},
        "user_audio_start_ms": None,
        "user_audio_end_ms": None,
        "agent_audio_start_ms": None,
        "agent_audio_end_ms": None,
        "audio_url": f"/admin/api/calls/{call.id}/turns/{turns[0].id}/audio",
    }


async def test_unknown_and_malformed_ids(admin: Admin) -> None:
    calls = await seed(store_of(admin))
    call, turns = calls[1]
    unknown = new_id()
    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/recording"),
                           ("GET", "/export"), ("GET", f"/turns/{turns[0].id}/audio")):
        response = await admin.client.request(method, f"{API}/calls/{unknown}{suffix}")
        assert response.status == 404, suffix
        assert (await response.json())["error"] == f"call {unknown} not found"
        for bad in ("nope", "..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e", "12345"):
            url = URL(f"{API}/calls/{bad}{suffix}", encoded=True)
            response = await admin.client.request(method, url)
            assert response.status == 400, (method, bad, suffix)
            assert await response.json() == {"error": "invalid id"}
    body = await get_json(admin, f"{API}/calls/{call.id}/turns/{unknown}/audio", 404)
    assert body["error"] == f"turn {unknown} not found in call {call.id}"
    # A turn of another call is not found through this one.
    other_turn = calls[0][1][0].id
    await get_json(admin, f"{API}/calls/{call.id}/turns/{other_turn}/audio", 404)
    await get_json(admin, f"{API}/calls/{call.id}/turns/..%2fx/audio", 400)
    # The router never lets a dot segment climb out of the API either.
    response = await admin.client.get(URL(f"{API}/calls/../../../etc/passwd", encoded=True))
    assert response.status == 404 and "root:" not in await response.text()


async def test_search_turns(admin: Admin) -> None:
    calls = await seed(store_of(admin))
    body = await get_json(admin, f"{API}/search?q=dragon")
    assert body["fts"] is True
    assert [t["id"] for t in body["items"]] == [calls[1][1][0].id]
    assert body["items"][0]["call_id"] == calls[1][0].id
    assert body["items"][0]["audio_url"].startswith(f"/admin/api/calls/{calls[1][0].id}/")
    body = await get_json(admin, f"{API}/search?q=PARIS%20weather")
    assert [t["call_id"] for t in body["items"]] == [calls[0][0].id]
    body = await get_json(admin, f"{API}/search?q=goodbye&limit=1")
    assert len(body["items"]) == 1
    body = await get_json(admin, f"{API}/search?q=%22%3B%20DROP%20TABLE%20turn%20--")
    assert body["items"] == []  # FTS syntax and SQL from the query are just words
    for query in ("", "q=", "q=%20%20"):
        body = await get_json(admin, f"{API}/search?{query}", 400)
        assert body["error"] == "q is required"
    await get_json(admin, f"{API}/search?q=x&limit=0", 400)
    await get_json(admin, f"{API}/search?q={'x' * 201}", 400)


async def test_stats(admin: Admin) -> None:
    assert await get_json(admin, f"{API}/stats") == {
        "calls": 0, "turns": 0, "interrupted_turns": 0, "latency_ms": {}}
    await seed(store_of(admin))
    body = await get_json(admin, f"{API}/stats")
    assert (body["calls"], body["turns"], body["interrupted_turns"]) == (3, 3, 1)
    assert body["latency_ms"]["stt_ms"] == pytest.approx({"p50": 200.0, "p90": 280.0,
                                                          "count": 3})
    assert body["latency_ms"]["llm_ms"] == pytest.approx({"p50": 400.0, "p90": 480.0,
                                                          "count": 2})


async def test_export_is_an_attachment_with_everything(admin: Admin) -> None:
    calls = await seed(store_of(admin))
    call, turns = calls[1]
    response = await admin.client.get(f"{API}/calls/{call.id}/export")
    assert response.status == 200 and response.content_type == "application/json"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="call-{call.id}.json"')
    body = json.loads(await response.read())
    assert body["id"] == call.id and body["end_reason"] == "hangup"
    assert body["voice_profile_id"] == call.voice_profile_id
    assert body["started_at"] == "2025-03-11T09:00:00Z"
    assert [t["user_text"] for t in body["turns"]] == [t.user_text for t in turns]
    assert body["turns"][0]["interrupted"] is True


def recording(admin: Admin, call_id: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A 20 s call: the user speaks (a 440 Hz tone) at 2-3 s, the agent (880 Hz) at
    3.5-5 s and again late, at 15-16 s, so a segment cut must seek into the file."""
    rate = 48000
    user = np.zeros(20 * rate, np.int16)
    agent = np.zeros(20 * rate, np.int16)
    user[2 * rate:3 * rate] = tone(1.0, rate, 440)
    agent[int(3.5 * rate):5 * rate] = tone(1.5, rate, 880)
    agent[15 * rate:16 * rate] = tone(1.0, rate, 660)
    folder = admin.data_dir / "recordings" / call_id
    write_ogg_opus(folder / "user.ogg", user)
    write_ogg_opus(folder / "agent.ogg", agent)
    return user, agent


def loud_span(pcm: np.ndarray[Any, Any], rate: int) -> tuple[float, float]:
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 3000)
    return loud[0] / rate, loud[-1] / rate


def main_frequency(pcm: np.ndarray[Any, Any], rate: int) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(pcm))) * rate / len(pcm))


async def recorded_call(admin: Admin) -> tuple[CallRecord, list[TurnRecord]]:
    store = store_of(admin)
    call, turns = await add_call(store, DAY, [
        {"user_text": "Hello?", "reply_text": "Hi, how can I help?",
         "user_audio_start_ms": 2000, "user_audio_end_ms": 3000,
         "agent_audio_start_ms": 3500, "agent_audio_end_ms": 5000},
        {"user_text": "Later", "reply_text": "Late reply.",
         "agent_audio_start_ms": 15000, "agent_audio_end_ms": 16000},
    ])
    recording(admin, call.id)
    assert await store.set_call_recording(call.id, f"recordings/{call.id}/user.ogg",
                                          f"recordings/{call.id}/agent.ogg", 1234)
    return call, turns


@SQLITE_ONLY
async def test_recordings_and_turn_segments(admin: Admin) -> None:
    call, turns = await recorded_call(admin)
    summary = (await get_json(admin, f"{API}/calls"))["items"][0]
    assert summary["has_recording"] is True and summary["recording_deleted"] is False

    folder = admin.data_dir / "recordings" / call.id
    for track in ("user", "agent"):
        response = await admin.client.get(f"{API}/calls/{call.id}/recording?track={track}")
        assert response.status == 200 and response.content_type == "audio/ogg"
        data = await response.read()
        assert data == (folder / f"{track}.ogg").read_bytes()
        assert len(decode_to(data, 16000)) == pytest.approx(20 * 16000, abs=1600)
    default = await admin.client.get(f"{API}/calls/{call.id}/recording")
    assert await default.read() == (folder / "user.ogg").read_bytes()
    body = await get_json(admin, f"{API}/calls/{call.id}/recording?track=both", 400)
    assert body["error"] == "track must be user or agent, got 'both'"

    async def segment(turn: TurnRecord, track: str) -> tuple[np.ndarray[Any, Any], int]:
        response = await admin.client.get(
            f"{API}/calls/{call.id}/turns/{turn.id}/audio?track={track}")
        assert response.status == 200 and response.content_type == "audio/wav"
        pcm, rate, channels = read_wav(await response.read())
        assert channels == 1
        return pcm, rate

    # Each cut is the turn's span plus 150 ms either side, aligned to the millisecond.
    for turn, track, (start, end), freq in ((turns[0], "user", (2.0, 3.0), 440),
                                            (turns[0], "agent", (3.5, 5.0), 880),
                                            (turns[1], "agent", (15.0, 16.0), 660)):
        pcm, rate = await segment(turn, track)
        assert len(pcm) / rate == pytest.approx(end - start + 0.3, abs=0.005)
        first, last = loud_span(pcm, rate)
        assert first == pytest.approx(0.15, abs=0.01) and last == pytest.approx(
            end - start + 0.15, abs=0.01), (track, first, last)
        assert main_frequency(pcm, rate) == pytest.approx(freq, abs=3)
    body = await get_json(admin, f"{API}/calls/{call.id}/turns/{turns[1].id}/audio", 404)
    assert body["error"] == f"turn {turns[1].id} has no user audio in the recording"


@SQLITE_ONLY
async def test_missing_deleted_or_absent_recordings_are_404_with_the_reason(
    admin: Admin
) -> None:
    store = store_of(admin)
    calls = await seed(store)
    call = calls[0][0]
    body = await get_json(admin, f"{API}/calls/{call.id}/recording", 404)
    assert body["error"] == f"call {call.id} has no user recording"

    recorded, recorded_turns = await recorded_call(admin)
    (admin.data_dir / "recordings" / recorded.id / "agent.ogg").unlink()
    body = await get_json(admin, f"{API}/calls/{recorded.id}/recording?track=agent", 404)
    assert body["error"] == f"the agent recording file of call {recorded.id} is missing"
    assert await store.mark_recording_deleted(recorded.id)
    for path in ("recording?track=user", f"turns/{recorded_turns[0].id}/audio"):
        body = await get_json(admin, f"{API}/calls/{recorded.id}/{path}", 404)
        assert "was deleted (retention policy)" in body["error"]
    summary = await get_json(admin, f"{API}/calls/{recorded.id}")
    assert summary["has_recording"] is False and summary["recording_deleted"] is True


@SQLITE_ONLY
async def test_stored_paths_outside_the_data_folder_are_never_served(admin: Admin,
                                                                      tmp_path: Path) -> None:
    store = store_of(admin)
    outside = tmp_path / "outside"
    write_ogg_opus(outside / "secret.ogg", tone(1.0, 48000, 300))
    secret = (outside / "secret.ogg").read_bytes()
    link = admin.data_dir / "recordings" / "sneaky" / "user.ogg"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside / "secret.ogg")
    for stored in ("../outside/secret.ogg", str(outside / "secret.ogg"),
                   "recordings/../../outside/secret.ogg", "recordings/sneaky/user.ogg"):
        call, turns = await add_call(store, DAY, [
            {"user_audio_start_ms": 0, "user_audio_end_ms": 500}])
        await store.set_call_recording(call.id, stored, None, 1)
        for path in ("recording", f"turns/{turns[0].id}/audio"):
            response = await admin.client.get(f"{API}/calls/{call.id}/{path}")
            data = await response.read()
            assert response.status == 404, (stored, path)
            assert secret not in data and data.startswith(b'{"error"')
            assert "points outside the data folder" in json.loads(data)["error"]
        # Deleting the call leaves the file it pointed at alone.
        assert (await admin.client.delete(f"{API}/calls/{call.id}")).status == 204
        assert (outside / "secret.ogg").read_bytes() == secret


async def test_deleting_a_call_removes_its_rows_and_recording(admin: Admin) -> None:
    store = store_of(admin)
    calls = await seed(store)
    call, _ = await recorded_call(admin)
    folder = admin.data_dir / "recordings" / call.id
    assert folder.is_dir()
    response = await admin.client.delete(f"{API}/calls/{call.id}")
    assert response.status == 204
    assert not folder.exists()
    assert await store.get_call(call.id) is None and await store.turns(call.id) == []
    await get_json(admin, f"{API}/calls/{call.id}", 404)
    assert (await admin.client.delete(f"{API}/calls/{call.id}")).status == 404
    page = await get_json(admin, f"{API}/calls")
    assert page["total"] == 3 and call.id not in {c["id"] for c in page["items"]}
    assert (await get_json(admin, f"{API}/search?q=hello"))["items"] == []
    # The others are untouched.
    assert len(await store.turns(calls[1][0].id)) == 2


@SQLITE_ONLY
async def test_a_live_call_cannot_be_deleted(admin: Admin) -> None:
    call, _ = await recorded_call(admin)
    admin.state.calls[call.id] = object()  # type: ignore[assignment]  # only its key matters
    try:
        body = (await admin.client.delete(f"{API}/calls/{call.id}"))
        assert body.status == 409
        assert (await body.json())["error"] == f"call {call.id} is still in progress"
    finally:
        del admin.state.calls[call.id]
    assert (admin.data_dir / "recordings" / call.id / "user.ogg").is_file()
    assert rms(decode_to((admin.data_dir / "recordings" / call.id / "user.ogg").read_bytes(),
                         16000)) > 100


@SQLITE_ONLY
async def test_a_turn_past_the_end_or_a_broken_file_is_a_json_error(admin: Admin) -> None:
    store = store_of(admin)
    call, _ = await recorded_call(admin)
    late = TurnRecord(id=new_id(), call_id=call.id, index=5, started_at=DAY,
                      user_audio_start_ms=60_000, user_audio_end_ms=61_000)
    await store.save_turn(late)
    body = await get_json(admin, f"{API}/calls/{call.id}/turns/{late.id}/audio", 404)
    assert body["error"] == f"the user recording of call {call.id} ends before turn {late.id}"

    (admin.data_dir / "recordings" / call.id / "user.ogg").write_bytes(b"OggS" + b"\x00" * 999)
    turn_id = (await store.turns(call.id))[0].id
    body = await get_json(admin, f"{API}/calls/{call.id}/turns/{turn_id}/audio", 422)
    assert body["error"].startswith("could not read the user recording: "), body
