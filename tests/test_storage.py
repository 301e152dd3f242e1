"""Storage layer: records round trip, schema, search, queries, threading.

Tests of the SQL run on both engines (the `database_url` fixture: a SQLite file, then a
database on a real PostgreSQL server, tests/postgres.py)."""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import peewee
import pytest

from avatar_rtc.storage import (
    CallRecord,
    SchemaTooNewError,
    StorageError,
    Store,
    StoreClosedError,
    TurnRecord,
    VoiceProfileRecord,
    default_url,
    new_id,
)
from avatar_rtc.storage import search as search_module
from avatar_rtc.storage.migrations import LATEST_VERSION
from avatar_rtc.storage.models import Call
from tests.postgres import PgServer

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
# For tests of what happens before any SQL: one engine is enough.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def db_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(database_url)
    yield opened
    await opened.close()


def sql_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows from another client than the store's: sqlite3 or psycopg."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return list(conn.execute(sql))
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []


def percentile(sorted_values: list[float], q: float) -> float:
    """The reference: linear interpolation between closest ranks (numpy's default)."""
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def make_call(started_at: datetime = T0, **fields: Any) -> CallRecord:
    return CallRecord(id=new_id(), started_at=started_at, **fields)


def make_turn(call_id: str, index: int, **fields: Any) -> TurnRecord:
    fields.setdefault("started_at", T0 + timedelta(seconds=index))
    return TurnRecord(id=new_id(), call_id=call_id, index=index, **fields)


def make_profile(name: str = "joe", **fields: Any) -> VoiceProfileRecord:
    return VoiceProfileRecord(
        id=new_id(), name=name, backend="piper", created_at=T0, updated_at=T0, **fields
    )


# --- round trips ------------------------------------------------------------


async def test_call_round_trip_normalises_to_utc(store: Store) -> None:
    paris = timezone(timedelta(hours=2))
    call = make_call(
        started_at=datetime(2025, 3, 1, 14, 0, 0, 1, tzinfo=paris),
        ended_at=datetime(2025, 3, 1, 12, 5, tzinfo=UTC),
        end_reason="hangup",
        user_agent="Mozilla/5.0",
        remote_addr="10.0.0.7",
        voice_profile_id=new_id(),
        settings={"llm": {"model": "qwen", "temperature": 0.7}, "barge_in": True},
        user_audio_path="rec/u.wav",
        agent_audio_path="rec/a.wav",
        recording_deleted=True,
        recording_bytes=123_456_789_012,
    )
    await store.create_call(call)
    loaded = await store.get_call(call.id)
    assert loaded == call
    assert loaded is not None
    assert loaded.started_at.tzinfo == UTC
    assert loaded.started_at == datetime(2025, 3, 1, 12, 0, 0, 1, tzinfo=UTC)
    assert await store.get_call(new_id()) is None


async def test_minimal_call_defaults(store: Store) -> None:
    call = make_call()
    await store.create_call(call)
    assert await store.get_call(call.id) == call


async def test_turn_round_trip(store: Store) -> None:
    call = make_call()
    await store.create_call(call)
    turn = make_turn(
        call.id,
        0,
        ended_at=T0 + timedelta(seconds=4),
        user_text="What's the weather?",
        reply_text="It is sunny. Anything else?",
        spoken_text="It is sunny.",
        interrupted=True,
        cut_off=False,
        timings={"stt": 120.5, "llm_first_token": 310.25, "tts_first_audio": 95.0},
        user_audio_start_ms=0,
        user_audio_end_ms=1800,
        agent_audio_start_ms=2100,
        agent_audio_end_ms=3900,
    )
    bare = make_turn(call.id, 1)
    await store.save_turn(turn)
    await store.save_turn(bare)
    assert await store.turns(call.id) == [turn, bare]


async def test_profile_round_trip_and_crud(store: Store) -> None:
    profile = make_profile(
        "narrator",
        description="calm",
        reference_audio_path="voices/n.wav",
        reference_text="The quick brown fox.",
        params={"voice": "en_US-joe-medium", "speed": 1.1},
    )
    await store.create_profile(profile)
    assert await store.get_profile(profile.id) == profile

    renamed = VoiceProfileRecord(
        id=profile.id,
        name="storyteller",
        backend="f5-tts",
        created_at=T0 + timedelta(days=9),  # ignored: creation time is kept
        updated_at=T0,
        params={"speed": 0.9},
    )
    updated = await store.update_profile(renamed)
    assert updated is not None
    assert (updated.name, updated.backend, updated.params) == (
        "storyteller",
        "f5-tts",
        {"speed": 0.9},
    )
    assert updated.created_at == T0
    assert updated.updated_at > T0
    assert updated.reference_audio_path is None
    assert await store.get_profile(profile.id) == updated
    assert await store.update_profile(make_profile()) is None

    for name in ["b", "a", "c"]:
        await store.create_profile(make_profile(name))
    page, total = await store.list_profiles(limit=2, offset=1)
    assert total == 4
    assert [p.name for p in page] == ["b", "c"]

    assert await store.delete_profile(profile.id)
    assert not await store.delete_profile(profile.id)
    assert await store.get_profile(profile.id) is None


@SQLITE_ONLY
async def test_naive_datetime_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.create_call(make_call(started_at=datetime(2025, 1, 1)))


# --- call updates -------------------------------------------------------------


async def test_end_call_first_reason_wins(store: Store) -> None:
    call = make_call()
    await store.create_call(call)
    end = T0 + timedelta(minutes=3)
    assert await store.end_call(call.id, end, "hangup")
    assert not await store.end_call(call.id, end + timedelta(hours=1), "shutdown")
    assert not await store.end_call(new_id(), end, "hangup")
    loaded = await store.get_call(call.id)
    assert loaded is not None
    assert (loaded.ended_at, loaded.end_reason) == (end, "hangup")


async def test_recording_fields(store: Store) -> None:
    call = make_call()
    await store.create_call(call)
    assert await store.set_call_recording(call.id, "u.wav", "a.wav", 4096)
    loaded = await store.get_call(call.id)
    assert loaded is not None
    assert (loaded.user_audio_path, loaded.agent_audio_path) == ("u.wav", "a.wav")
    assert (loaded.recording_bytes, loaded.recording_deleted) == (4096, False)
    assert await store.mark_recording_deleted(call.id)
    loaded = await store.get_call(call.id)
    assert loaded is not None and loaded.recording_deleted


async def test_save_turn_is_an_idempotent_upsert(store: Store) -> None:
    call = make_call()
    await store.create_call(call)
    turn = make_turn(call.id, 0, user_text="hi")
    await store.save_turn(turn)
    await store.save_turn(turn)
    done = TurnRecord(
        id=turn.id,
        call_id=call.id,
        index=0,
        started_at=turn.started_at,
        ended_at=T0 + timedelta(seconds=2),
        user_text="hi",
        reply_text="hello there",
        spoken_text="hello",
        interrupted=True,
        timings={"llm": 200.0},
    )
    await store.save_turn(done)
    assert await store.turns(call.id) == [done]


async def test_turn_needs_existing_call(store: Store) -> None:
    with pytest.raises(peewee.IntegrityError):
        await store.save_turn(make_turn(new_id(), 0))


# --- schema -------------------------------------------------------------------


def _versions(url: str) -> list[int]:
    return [v for (v,) in sql_rows(url, "SELECT version FROM schema_version ORDER BY version")]


def _columns(url: str, table: str) -> list[str]:
    if url.startswith("sqlite"):
        return [row[1] for row in sql_rows(url, f"PRAGMA table_info({table})")]
    return [name for (name,) in sql_rows(
        url, "SELECT column_name FROM information_schema.columns WHERE table_name = "
        f"'{table}' AND table_schema = 'public' AND is_generated = 'NEVER' "
        "ORDER BY ordinal_position")]


async def test_migrations_idempotent(database_url: str) -> None:
    for _ in range(3):
        store = await Store.open(database_url)
        assert store.schema_version == LATEST_VERSION == 3
        assert store.search_uses_fts
        await store.close()
    assert _versions(database_url) == [1, 2, 3]
    if database_url.startswith("sqlite"):
        names = {n for (n,) in sql_rows(database_url,
                                        "SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"schema_version", "call", "turn", "voice_profile", "turn_fts"} <= names
    else:
        names = {n for (n,) in sql_rows(database_url, "SELECT tablename FROM pg_tables "
                                                      "WHERE schemaname = 'public'")}
        assert names == {"schema_version", "call", "turn", "voice_profile"}
        indexes = {n for (n,) in sql_rows(database_url, "SELECT indexname FROM pg_indexes "
                                                        "WHERE tablename = 'turn'")}
        assert "turn_search" in indexes


async def test_the_same_schema_on_both_engines(database_url: str, tmp_path: Path) -> None:
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    for url in {database_url, reference}:
        await (await Store.open(url)).close()
    for table in ("schema_version", "call", "turn", "voice_profile"):
        assert _columns(database_url, table) == _columns(reference, table), table


async def test_schema_too_new_is_a_clear_error(database_url: str) -> None:
    await (await Store.open(database_url)).close()
    sql_rows(database_url, "INSERT INTO schema_version (version, applied_at) VALUES (7, 'x')")
    with pytest.raises(SchemaTooNewError, match="version 7"):
        await Store.open(database_url)
    assert _versions(database_url) == [1, 2, 3, 7]


async def test_servers_starting_together_migrate_once(postgres_url: str) -> None:
    # Without the advisory lock, each would find version 0 and all would migrate.
    stores = await asyncio.gather(*(Store.open(postgres_url) for _ in range(4)))
    try:
        assert {s.schema_version for s in stores} == {LATEST_VERSION}
    finally:
        for opened in stores:
            await opened.close()
    assert _versions(postgres_url) == [1, 2, 3]


async def test_postgresql_refusals_are_precise(pg_server: PgServer) -> None:
    with pytest.raises(StorageError, match="no database name"):
        await Store.open(pg_server.url("").rstrip("/"))
    with pg_server.connect() as conn:
        conn.execute("CREATE DATABASE ascii_db OWNER avatar TEMPLATE template0 "
                     "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'")
    try:
        with pytest.raises(StorageError, match=r"encoding is SQL_ASCII.*UTF8"):
            await Store.open(pg_server.url("ascii_db"))
    finally:
        pg_server.drop_database("ascii_db")
    with pytest.raises(StorageError, match=r"cannot connect to postgresql://avatar:\*\*\*@"
                       r".*password authentication failed"):
        await Store.open(pg_server.url("postgres", password="wrong"))


async def test_sqlite_pragmas(db_path: Path) -> None:
    store = await Store.open(db_url(db_path))
    assert await store.pragma("journal_mode") == "wal"
    assert await store.pragma("foreign_keys") == 1
    assert await store.pragma("synchronous") == 1  # NORMAL
    assert await store.pragma("busy_timeout") == 5000
    with pytest.raises(ValueError, match="not a pragma"):
        await store.pragma("journal_mode; DROP TABLE call")
    with sqlite3.connect(db_path) as conn:  # WAL is persistent, seen by any client
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    await store.close()


async def test_default_url_creates_data_dir(tmp_path: Path) -> None:
    url = default_url(tmp_path / "nested" / "data")
    assert url.startswith("sqlite:////") and url.endswith("/avatar_rtc.db")
    store = await Store.open(url)
    await store.close()
    assert (tmp_path / "nested" / "data" / "avatar_rtc.db").exists()


# --- search -------------------------------------------------------------------


@pytest.fixture(params=["fts5", "like", "postgres"])
async def search_store(
    request: pytest.FixtureRequest, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Store]:
    if request.param == "like":
        monkeypatch.setattr(search_module, "fts5_available", lambda db: False)
    url = (request.getfixturevalue("postgres_url") if request.param == "postgres"
           else db_url(db_path))
    opened = await Store.open(url)
    assert opened.search_uses_fts == (request.param != "like")
    yield opened
    await opened.close()


async def _ids(store: Store, query: str) -> set[str]:
    return {t.id for t in await store.search_turns(query)}


async def _check_fts_index(store: Store) -> None:
    """Fails if the FTS index drifted from the turn table (rank=1: compare content)."""
    await store.check_search_index()


async def test_search_follows_inserts_updates_and_deletes(search_store: Store) -> None:
    store = search_store
    call, other = make_call(), make_call()
    await store.create_call(call)
    await store.create_call(other)
    weather = make_turn(call.id, 0, user_text="What is the Weather in Paris?", reply_text="Sunny.")
    pasta = make_turn(call.id, 1, user_text="And dinner?", reply_text="Try the carbonara tonight")
    other_turn = make_turn(other.id, 0, user_text="weather in Oslo", reply_text="Snowing.")
    for turn in (weather, pasta, other_turn):
        await store.save_turn(turn)

    assert await _ids(store, "weather") == {weather.id, other_turn.id}
    assert await _ids(store, "CARBONARA") == {pasta.id}  # reply_text, any case
    assert await _ids(store, "weather paris") == {weather.id}  # every word must match
    assert await _ids(store, "nothing-like-this") == set()
    assert await _ids(store, '"unbalanced OR ( * ') == set()  # no syntax leaks through
    assert await store.search_turns("   ") == []
    assert len(await store.search_turns("weather", limit=1)) == 1

    await store.save_turn(
        TurnRecord(
            id=pasta.id,
            call_id=call.id,
            index=1,
            started_at=pasta.started_at,
            user_text="And dinner?",
            reply_text="Try the risotto",
        )
    )
    assert await _ids(store, "carbonara") == set()
    assert await _ids(store, "risotto") == {pasta.id}
    await _check_fts_index(store)

    assert await store.delete_call(call.id)
    assert await _ids(store, "weather") == {other_turn.id}
    assert await _ids(store, "risotto") == set()
    await _check_fts_index(store)


async def test_words_are_letters_and_digits_on_every_engine(search_store: Store) -> None:
    store = search_store
    call = make_call()
    await store.create_call(call)
    marks = make_turn(call.id, 0, user_text="It is 3.5 degrees, see example.com step-by-step")
    french = make_turn(call.id, 1, reply_text="Le café est prêt à l'école")
    names = make_turn(call.id, 2, user_text="snake_case_name and HTTPServer, Привет")
    for turn in (marks, french, names):
        await store.save_turn(turn)
    # PostgreSQL's parser alone would keep "3.5", "example.com", "step-by-step" whole.
    for query in ("3", "5 degrees", "example com", "example.com", "step by", "step-by-step",
                  "deg"):
        assert await _ids(store, query) == {marks.id}, query
    for query in ("snake", "case_name", "httpserv", "Привет"):
        assert await _ids(store, query) == {names.id}, query
    assert await _ids(store, "café") == {french.id}
    if store.search_uses_fts:  # an index folds accents and non-ASCII case; LIKE does not
        for query in ("cafe", "CAFÉ", "pret", "ECOLE", "ПРИВЕТ"):
            expected = names.id if query == "ПРИВЕТ" else french.id
            assert await _ids(store, query) == {expected}, query


async def test_best_matches_first_where_there_is_an_index(search_store: Store) -> None:
    store = search_store
    call = make_call()
    await store.create_call(call)
    strong = make_turn(call.id, 0, user_text="dragon, dragon, dragon!", reply_text="A dragon.")
    weak = make_turn(call.id, 1, user_text="Once a dragon flew over the hills and the sea "
                                           "to the far, far away castle of the old king.")
    await store.save_turn(strong)
    await store.save_turn(weak)
    found = [t.id for t in await store.search_turns("dragon")]
    # Ranked where there is an index; newest first with LIKE.
    assert found == ([strong.id, weak.id] if store.search_uses_fts else [weak.id, strong.id])


async def test_fts_index_added_to_database_created_without_it(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(search_module, "fts5_available", lambda db: False)
        store = await Store.open(db_url(db_path))
        call = make_call()
        await store.create_call(call)
        turn = make_turn(call.id, 0, user_text="remember the alpaca")
        await store.save_turn(turn)
        await store.close()
    store = await Store.open(db_url(db_path))
    try:
        assert store.search_uses_fts
        assert await _ids(store, "alpaca") == {turn.id}  # existing rows were indexed
    finally:
        await store.close()


# --- queries ------------------------------------------------------------------


async def test_delete_call_cascades_turns(store: Store) -> None:
    call, kept = make_call(), make_call()
    await store.create_call(call)
    await store.create_call(kept)
    for i in range(3):
        await store.save_turn(make_turn(call.id, i))
    await store.save_turn(make_turn(kept.id, 0))

    assert await store.delete_call(call.id)
    assert not await store.delete_call(call.id)
    assert await store.get_call(call.id) is None
    assert await store.turns(call.id) == []
    assert len(await store.turns(kept.id)) == 1
    assert (await store.stats())["turns"] == 1


async def test_list_calls_pagination_and_date_filter(store: Store) -> None:
    calls = [make_call(started_at=T0 + timedelta(hours=h)) for h in range(10)]
    for call in reversed(calls):
        await store.create_call(call)
    newest_first = list(reversed(calls))

    page, total = await store.list_calls(limit=3)
    assert total == 10
    assert page == newest_first[:3]
    page, total = await store.list_calls(limit=3, offset=9)
    assert (page, total) == (newest_first[9:], 10)
    assert await store.list_calls(limit=3, offset=10) == ([], 10)

    # since is inclusive, until exclusive; other time zones compare correctly.
    tokyo = timezone(timedelta(hours=9))
    page, total = await store.list_calls(
        limit=2, since=(T0 + timedelta(hours=2)).astimezone(tokyo), until=T0 + timedelta(hours=6)
    )
    assert total == 4
    assert page == [calls[5], calls[4]]
    page, total = await store.list_calls(since=T0 + timedelta(hours=8))
    assert (page, total) == ([calls[9], calls[8]], 2)


async def test_stats_percentiles_on_known_data(store: Store) -> None:
    empty = await store.stats()
    assert empty == {"calls": 0, "turns": 0, "interruptions": 0, "cut_off": 0, "latency_ms": {}}

    call = make_call()
    await store.create_call(call)
    await store.create_call(make_call())
    for i in range(10):
        timings = {"stt": float(i + 1)}
        if i < 4:
            timings["llm"] = 100.0 * (i + 1)
        await store.save_turn(
            make_turn(call.id, i, timings=timings, interrupted=i % 3 == 0, cut_off=i == 9)
        )
    stats = await store.stats()
    assert (stats["calls"], stats["turns"], stats["interruptions"], stats["cut_off"]) == (
        2,
        10,
        4,
        1,
    )
    assert stats["latency_ms"]["stt"] == pytest.approx({"count": 10, "p50": 5.5, "p90": 9.1})
    assert stats["latency_ms"]["llm"] == pytest.approx({"count": 4, "p50": 250.0, "p90": 370.0})


async def test_stats_match_the_reference_percentiles(store: Store) -> None:
    rng = random.Random(7)
    by_stage: dict[str, list[float]] = {}
    for _ in range(3):
        call = make_call()
        await store.create_call(call)
        for i in range(rng.randint(1, 60)):
            timings = {stage: round(rng.uniform(0, 2000), 3)
                       for stage in ("stt_ms", "llm_first_token_ms", "Z_tts", "asr.v2")
                       if rng.random() < 0.7}
            for stage, ms in timings.items():
                by_stage.setdefault(stage, []).append(ms)
            await store.save_turn(make_turn(call.id, i, timings=timings))
    stats = await store.stats()
    assert list(stats["latency_ms"]) == sorted(by_stage)  # by name, code point order
    for stage, values in by_stage.items():
        values.sort()
        assert stats["latency_ms"][stage] == pytest.approx(
            {"count": len(values), "p50": percentile(values, 50),
             "p90": percentile(values, 90)}), stage


async def test_stats_never_read_turns_into_python(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = make_call()
    await store.create_call(call)
    for i in range(30):
        await store.save_turn(make_turn(call.id, i, timings={"stt": float(i), "llm": 1.0}))
    fetched: list[int] = []  # rows read back, per statement
    original: Any = peewee.Database.execute_sql

    def counting_execute_sql(self: peewee.Database, *args: Any, **kwargs: Any) -> Any:
        fetched.append(0)
        return CountingCursor(original(self, *args, **kwargs), fetched)

    monkeypatch.setattr(peewee.Database, "execute_sql", counting_execute_sql)
    stats = await store.stats()
    assert stats["turns"] == 30 and stats["latency_ms"]["stt"]["count"] == 30
    assert fetched and max(fetched) <= 2  # one row per stage at most, not one per turn


class CountingCursor:
    """A DB-API cursor that counts the rows read from it."""

    def __init__(self, cursor: Any, counts: list[int]) -> None:
        self._cursor = cursor
        self._counts = counts

    def fetchone(self) -> Any:
        row = self._cursor.fetchone()
        self._counts[-1] += row is not None
        return row

    def fetchall(self) -> Any:
        rows = self._cursor.fetchall()
        self._counts[-1] += len(rows)
        return rows

    def fetchmany(self, size: int = 1) -> Any:
        rows = self._cursor.fetchmany(size)
        self._counts[-1] += len(rows)
        return rows

    def __iter__(self) -> Any:
        for row in self._cursor:
            self._counts[-1] += 1
            yield row

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


# --- threading and lifecycle ----------------------------------------------------


async def test_database_work_never_runs_on_the_event_loop_thread(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[threading.Thread] = []
    original: Any = peewee.Database.execute_sql  # untyped in the stubs

    def recording_execute_sql(self: peewee.Database, *args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(peewee.Database, "execute_sql", recording_execute_sql)
    store = await Store.open(database_url)
    call = make_call()
    await store.create_call(call)
    await store.save_turn(make_turn(call.id, 0, user_text="hello"))
    await store.search_turns("hello")
    await store.list_calls()
    await store.stats()
    await store.delete_call(call.id)
    await store.close()

    loop_thread = threading.current_thread()
    assert seen
    assert loop_thread not in seen
    assert {t.name.split("_")[0] for t in seen} == {"avatar-db"}
    assert len({t.ident for t in seen}) == 1  # one dedicated thread


@SQLITE_ONLY
async def test_models_refuse_the_event_loop_thread(store: Store) -> None:
    with pytest.raises(peewee.InterfaceError, match="no database bound"):
        Call.select().count()


async def test_concurrent_save_turn_from_many_tasks(store: Store) -> None:
    call = make_call()
    await store.create_call(call)
    turns = [make_turn(call.id, i, user_text=f"turn {i}") for i in range(200)]
    # Each turn saved twice, concurrently: upserts must neither fail nor duplicate.
    await asyncio.gather(*(store.save_turn(t) for t in turns + turns))
    assert await store.turns(call.id) == turns


async def test_closed_store(database_url: str) -> None:
    store = await Store.open(database_url)
    call = make_call()
    pending = asyncio.ensure_future(store.create_call(call))
    await asyncio.sleep(0)  # let the write get queued before close
    await store.close()
    await store.close()  # idempotent
    await pending
    assert store.closed
    with pytest.raises(StoreClosedError):
        await store.get_call(call.id)
    reopened = await Store.open(database_url)
    try:
        assert await reopened.get_call(call.id) == call
    finally:
        await reopened.close()


async def test_two_open_stores_stay_separate(tmp_path: Path) -> None:
    first = await Store.open(db_url(tmp_path / "a.db"))
    second = await Store.open(db_url(tmp_path / "b.db"))
    try:
        call = make_call()
        await first.create_call(call)
        assert await first.get_call(call.id) == call
        assert await second.get_call(call.id) is None
    finally:
        await first.close()
        await second.close()


def test_serve_says_why_the_database_cannot_be_opened(tmp_path: Path) -> None:
    from tests.conftest import free_port

    url = f"postgresql://avatar:s3cret@127.0.0.1:{free_port()}/avatar"  # nobody listens
    done = subprocess.run(
        [sys.executable, "-m", "avatar_rtc", "serve", "--storage-database-url", url,
         "--storage-data-dir", str(tmp_path), "--port", str(free_port())],
        capture_output=True, text=True, timeout=120, check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 1, done.stderr
    assert "avatar-rtc serve: cannot connect to postgresql://avatar:***@127.0.0.1" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout and "Traceback" not in done.stderr


async def test_a_postgresql_database_of_version_1_gains_the_search_index(
    postgres_url: str
) -> None:
    from avatar_rtc.storage import repo
    from avatar_rtc.storage.db import open_database
    from avatar_rtc.storage.migrations import MIGRATIONS, migrate
    from avatar_rtc.storage.models import bind_thread

    call = make_call()
    turn = make_turn(call.id, 0, user_text="An older turn about zeppelins")

    def at_version_1() -> None:  # as a release before migration 2 left it
        db = open_database(postgres_url)
        bind_thread(db)
        try:
            db.connect()
            assert migrate(db, MIGRATIONS[:1]) == 1
            repo.create_call(db, call)
            repo.save_turn(db, turn)
            db.close()
        finally:
            bind_thread(None)

    await asyncio.to_thread(at_version_1)
    store = await Store.open(postgres_url)
    try:
        assert store.schema_version == LATEST_VERSION
        assert await _ids(store, "zeppelin") == {turn.id}
    finally:
        await store.close()


@pytest.mark.parametrize("ci", ["true", ""])
def test_without_a_postgresql_server_ci_fails_and_elsewhere_skips(
    ci: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests import postgres

    monkeypatch.setattr(postgres, "PG_ROOT", tmp_path)  # nothing installed there
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="no PostgreSQL server under"):
        postgres.start_server()


async def test_a_dropped_postgresql_connection_is_replaced_between_transactions(
    pg_server: PgServer, postgres_url: str
) -> None:
    store = await Store.open(postgres_url)
    try:
        first = make_call()
        await store.create_call(first)
        name = postgres_url.rsplit("/", 1)[1]
        # What a server restart or an idle timeout does to the store's connection.
        killed = pg_server.query(name, "SELECT pg_terminate_backend(pid) FROM "
                                       "pg_stat_activity WHERE datname = current_database() "
                                       "AND pid <> pg_backend_pid()")
        assert killed == [(True,)]
        assert await store.get_call(first.id) == first  # a read, then a write
        second = make_call()
        await store.create_call(second)
        assert (await store.list_calls())[1] == 2
    finally:
        await store.close()
