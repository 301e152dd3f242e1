"""Async facade over the database.

peewee is synchronous, so all database work runs on one dedicated worker
thread, never on the event loop. One thread also means one connection and
writes applied in submission order. A call that returns has committed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import peewee

from . import repo
from .db import (
    check_server,
    execute,
    fetch_one,
    is_postgres,
    is_sqlite,
    open_database,
    redacted,
)
from .errors import StorageError, StoreClosedError
from .migrations import migrate
from .models import bind_thread
from .records import CallRecord, TurnRecord, VoiceProfileRecord
from .search import has_index

_P = ParamSpec("_P")
_T = TypeVar("_T")

THREAD_NAME_PREFIX = "avatar-db"

# A write waits busy_timeout (db.SQLITE_PRAGMAS) for a lock another process holds;
# a call's rows then try this many more times, so a long backup or a stuck admin
# tool delays its turns instead of losing them.
LOCKED_RETRIES = 5
LOCKED_BACKOFF_S = 0.5

log = logging.getLogger(__name__)


def _locked(exc: peewee.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def _retry_locked(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Runs ``fn`` on the store's thread, again while the database stays locked. On
    the thread: the writes queued behind it keep their order."""
    for attempt in range(LOCKED_RETRIES + 1):
        try:
            return fn(*args, **kwargs)
        except peewee.OperationalError as exc:
            if not _locked(exc) or attempt == LOCKED_RETRIES:
                raise
            log.warning("database locked (%s): write retried (%d of %d)", exc, attempt + 1,
                        LOCKED_RETRIES)
            time.sleep(LOCKED_BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


class Store:
    """Use ``await Store.open(url)``; the constructor is internal."""

    def __init__(self, db: peewee.Database, executor: ThreadPoolExecutor) -> None:
        self._db = db
        self._executor = executor
        self._closed = False
        self.schema_version = 0
        self.search_uses_fts = False

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect to ``url`` (see db.open_database) and migrate the schema."""
        db = open_database(url)
        executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=THREAD_NAME_PREFIX,
            initializer=bind_thread,
            initargs=(db,),
        )
        store = cls(db, executor)
        try:
            await store._run(store._open_sync, url)
        except BaseException:
            await store.close()
            raise
        return store

    def _open_sync(self, url: str) -> None:
        try:
            self._db.connect(reuse_if_open=True)
        except peewee.OperationalError as exc:
            # The driver's reason (refused, bad password, no such database), and where.
            raise StorageError(f"cannot connect to {redacted(url)}: {exc}") from None
        check_server(self._db)
        self.schema_version = migrate(self._db)
        self.search_uses_fts = has_index(self._db)

    async def close(self) -> None:
        """Finish queued work, close the connection and stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            # Queued after all earlier work (FIFO), so nothing submitted before is lost.
            await loop.run_in_executor(self._executor, self._db.close)
        finally:
            # No wait: even if we were cancelled, the queued close still runs first.
            self._executor.shutdown(wait=False)

    @property
    def closed(self) -> bool:
        return self._closed

    async def _run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self._closed:
            raise StoreClosedError("store is closed")
        # If the awaiting task is cancelled the work still runs to completion,
        # so a write that was started is never half-applied.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    # --- cluster-wide locks --------------------------------------------------

    @property
    def shared(self) -> bool:
        """True on PostgreSQL: other servers may use this database at the same time."""
        return is_postgres(self._db)

    async def try_lock(self, key: int) -> bool:
        """PostgreSQL only: take the advisory lock ``key`` for this connection, or
        False at once when another connection holds it. Release with ``unlock``."""
        row = await self._run(fetch_one, self._db, "SELECT pg_try_advisory_lock(%s)", (key,))
        return bool(row and row[0])

    async def unlock(self, key: int) -> None:
        await self._run(execute, self._db, "SELECT pg_advisory_unlock(%s)", (key,))

    async def _write(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """A call's row or turn: retried while another process holds the lock."""
        return await self._run(_retry_locked, fn, *args, **kwargs)  # type: ignore[arg-type]

    # --- calls -------------------------------------------------------------

    async def create_call(self, call: CallRecord) -> None:
        await self._write(repo.create_call, self._db, call)

    async def end_call(self, call_id: str, ended_at: datetime, end_reason: str) -> bool:
        """Record how the call ended. The first end wins; returns whether it applied."""
        return await self._write(repo.end_call, self._db, call_id, ended_at, end_reason)

    async def set_call_recording(
        self,
        call_id: str,
        user_audio_path: str | None,
        agent_audio_path: str | None,
        recording_bytes: int,
    ) -> bool:
        return await self._write(
            repo.set_call_recording,
            self._db,
            call_id,
            user_audio_path,
            agent_audio_path,
            recording_bytes,
        )

    async def mark_recording_deleted(self, call_id: str) -> bool:
        return await self._run(repo.mark_recording_deleted, self._db, call_id)

    async def recorded_calls(self) -> list[CallRecord]:
        """Calls whose recording is kept (paths set, not deleted), oldest first."""
        return await self._run(repo.recorded_calls)

    async def get_call(self, call_id: str) -> CallRecord | None:
        return await self._run(repo.get_call, call_id)

    async def list_calls(
        self,
        limit: int = 50,
        offset: int = 0,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[list[CallRecord], int]:
        """Newest first, ``since <= started_at < until``; returns (page, total matching)."""
        return await self._run(repo.list_calls, self._db, limit, offset, since, until)

    async def delete_call(self, call_id: str) -> bool:
        """Delete a call and its turns. Recording files on disk are the caller's."""
        return await self._run(repo.delete_call, self._db, call_id)

    # --- turns -------------------------------------------------------------

    async def save_turn(self, turn: TurnRecord) -> None:
        """Insert or update (by id) a turn; committed when this returns."""
        await self._write(repo.save_turn, self._db, turn)

    async def turns(self, call_id: str) -> list[TurnRecord]:
        return await self._run(repo.turns, call_id)

    async def turn_counts(self, call_ids: list[str]) -> dict[str, tuple[int, int]]:
        """call id -> (turns, interrupted turns), for a page of calls in one query."""
        return await self._run(repo.turn_counts, call_ids)

    async def search_turns(self, query: str, limit: int = 50) -> list[TurnRecord]:
        """Turns whose user_text or reply_text contain every word of ``query``."""
        return await self._run(repo.search_turns, self._db, query, limit, self.search_uses_fts)

    async def check_search_index(self) -> None:
        """Raises if the full-text index drifted from the turn table (SQLite FTS5; the
        LIKE fallback keeps no index, PostgreSQL's column is generated from the row).
        rank=1 makes SQLite compare the content too."""
        if self.search_uses_fts and is_sqlite(self._db):
            await self._run(execute, self._db,
                            "INSERT INTO turn_fts(turn_fts, rank) VALUES ('integrity-check', 1)")

    async def pragma(self, name: str) -> Any:
        """A SQLite setting as the store's own connection sees it (journal_mode,
        busy_timeout, …): per-connection ones differ from what another client reads."""
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        if not is_sqlite(self._db):
            raise ValueError("pragmas are SQLite's; this store is not SQLite")
        row = await self._run(fetch_one, self._db, f"PRAGMA {name}")
        return None if row is None else row[0]

    async def stats(self) -> dict[str, Any]:
        """{"calls", "turns", "interruptions", "cut_off",
        "latency_ms": {stage: {"count", "p50", "p90"}}}"""
        return await self._run(repo.stats, self._db)

    # --- voice profiles ----------------------------------------------------

    async def create_profile(self, profile: VoiceProfileRecord) -> None:
        await self._run(repo.create_profile, self._db, profile)

    async def get_profile(self, profile_id: str) -> VoiceProfileRecord | None:
        return await self._run(repo.get_profile, profile_id)

    async def list_profiles(
        self, limit: int = 50, offset: int = 0, newest_first: bool = False
    ) -> tuple[list[VoiceProfileRecord], int]:
        """By name (or newest first); returns (page, total)."""
        return await self._run(repo.list_profiles, self._db, limit, offset, newest_first)

    async def update_profile(self, profile: VoiceProfileRecord) -> VoiceProfileRecord | None:
        """Replace a profile's fields (not created_at), stamp updated_at; None if missing."""
        return await self._run(repo.update_profile, self._db, profile)

    async def delete_profile(self, profile_id: str) -> bool:
        return await self._run(repo.delete_profile, self._db, profile_id)
