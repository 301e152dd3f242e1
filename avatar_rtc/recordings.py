"""Call recordings on disk: where they live, saving them, and the retention sweeper.

Layout: ``<data_dir>/recordings/<call_id>/{user,agent}.ogg``; the call row holds those
paths relative to data_dir. The sweeper (at startup, then every SWEEP_INTERVAL_S)
deletes recordings older than ``recording.retention_days`` and, while all of them
together exceed ``recording.max_disk_mb`` (MiB), the oldest ones; each deleted call's
row is marked ``recording_deleted``. Files of live calls are never touched. Servers
sharing the database and data_dir sweep one at a time, under a lease (avatar_rtc.lease).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from avatar_rtc.call import Call
from avatar_rtc.lease import lease
from avatar_rtc.persist import turn_record
from avatar_rtc.settings import RecordingSettings, Settings
from avatar_rtc.state import STATE, AppState
from avatar_rtc.storage import Store, canonical_id, utc_now
from media.recorder import AGENT_FILE, USER_FILE, CallRecorder

log = logging.getLogger(__name__)

RECORDINGS_DIR = "recordings"
SWEEP_INTERVAL_S = 600.0
MIB = 1024 * 1024
# A call row not ended is live on some server, or was cut off by a crash: after this
# (far longer than server.call_max_s allows) the sweeper takes it for the latter.
LIVE_ELSEWHERE = timedelta(days=1)
SWEEP_LEASE = "recordings-sweep"  # one server of a cluster sweeps at a time


def recording_dir(root: Path, call_id: str) -> Path:
    return root / RECORDINGS_DIR / call_id


def relative_paths(call_id: str) -> tuple[str, str]:
    """The (user, agent) paths a call row stores, relative to data_dir."""
    return (f"{RECORDINGS_DIR}/{call_id}/{USER_FILE}", f"{RECORDINGS_DIR}/{call_id}/{AGENT_FILE}")


def new_recorder(settings: Settings, call_id: str) -> CallRecorder | None:
    """A recorder for a new call, or None when recording is off. No I/O here."""
    if not settings.recording.enabled:
        return None
    return CallRecorder(recording_dir(settings.storage.root, call_id),
                        bitrate_kbps=settings.recording.bitrate_kbps)


def _relative(path: Path | None, root: Path) -> str | None:
    return None if path is None else path.relative_to(root).as_posix()


# Calls that have ended but whose recording is not saved yet: as good as live to the
# sweeper (the row would otherwise be marked deleted, then un-marked by the save).
_saving: set[str] = set()


def save_recording(store: Store, call: Call, root: Path) -> Coroutine[Any, Any, None]:
    """Once the call's recording is finalized, store its files (paths relative to
    ``root``) and size, and the exact offsets of its turns (saved with estimates as
    each ended: the last second of audio is placed only when the recorder closes).

    The call counts as busy from this call on, not from when the coroutine starts.
    """
    _saving.add(call.id)
    return _save_recording(store, call, root)


async def _save_recording(store: Store, call: Call, root: Path) -> None:
    try:
        await _store_recording(store, call, root)
    finally:
        _saving.discard(call.id)


async def _store_recording(store: Store, call: Call, root: Path) -> None:
    result = await call.finish_recording()
    if result is None:
        return
    if result.error:
        log.warning("call %s recording: %s", call.id, result.error)
    try:
        await store.set_call_recording(
            call.id, _relative(result.user_path, root), _relative(result.agent_path, root),
            result.bytes,
        )
        for turn in call.conversation.finished_turns:
            await store.save_turn(turn_record(call.id, turn, call.recording_offset))
    except Exception as exc:  # e.g. the call deleted meanwhile by the admin API
        log.warning("call %s: recording not saved: %s: %s", call.id, type(exc).__name__, exc)


# --- retention ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Folder:
    call_id: str
    path: Path
    bytes: int
    newest: datetime  # newest file modification time


@dataclass(frozen=True)
class _Candidate:
    call_id: str
    age_from: datetime  # the call's start, or the folder's mtime when no row knows it
    bytes: int
    has_row: bool


@dataclass
class SweepReport:
    deleted: list[str] = field(default_factory=list)  # call ids, oldest first
    expired: int = 0  # of those, past retention
    over_cap: int = 0  # of those, deleted for the disk cap
    missing: list[str] = field(default_factory=list)  # rows whose files were already gone
    freed_bytes: int = 0
    total_bytes: int = 0  # all recordings after the sweep, live calls included


def _scan(recordings: Path) -> dict[str, _Folder] | None:
    """Every call folder under ``recordings`` with its size; None if there is none."""
    if not recordings.is_dir():
        return None
    folders: dict[str, _Folder] = {}
    for entry in os.scandir(recordings):
        if canonical_id(entry.name) != entry.name or not entry.is_dir(follow_symlinks=False):
            continue  # not ours: never counted, never touched
        size, newest = 0, 0.0
        for dirpath, _dirs, files in os.walk(entry.path):
            for name in files:
                try:
                    stat = os.lstat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                size += stat.st_size
                newest = max(newest, stat.st_mtime)
        if newest == 0.0:
            try:
                newest = entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue  # deleted meanwhile (the admin API): nothing to sweep
        folders[entry.name] = _Folder(entry.name, Path(entry.path), size,
                                      datetime.fromtimestamp(newest, UTC))
    return folders


async def sweep(
    store: Store,
    root: Path,
    policy: RecordingSettings,
    live: Callable[[], Collection[str]],
    now: datetime | None = None,
) -> SweepReport:
    """One pass of retention and the disk cap over ``root``/recordings.

    ``live`` returns the ids of calls in progress (calls whose recording is still
    being saved count too); it is asked again before each deletion. Folders no row
    refers to (a crash, a deleted call) age by their mtime.
    """
    now = now or utc_now()
    report = SweepReport()

    def busy() -> set[str]:
        return {*live(), *_saving}

    live_at_start = busy()
    rows = await store.recorded_calls()  # oldest first
    folders = await asyncio.to_thread(_scan, root / RECORDINGS_DIR)
    if folders is None:
        return report  # no recordings folder (or a wrong data_dir): mark nothing
    candidates: list[_Candidate] = []
    for row in rows:
        if row.id in live_at_start:
            continue
        if row.ended_at is None and now - row.started_at < LIVE_ELSEWHERE:
            continue  # most likely live on another server sharing the folder
        folder = folders.get(row.id)
        if folder is None:
            # Deleted behind our back: the row must not promise a recording.
            report.missing.append(row.id)
            await store.mark_recording_deleted(row.id)
            continue
        candidates.append(_Candidate(row.id, row.started_at, folder.bytes, True))
    known = {row.id for row in rows}
    for folder in folders.values():
        if folder.call_id not in known and folder.call_id not in live_at_start:
            candidates.append(_Candidate(folder.call_id, folder.newest, folder.bytes, False))
    candidates.sort(key=lambda c: c.age_from)

    total = sum(folder.bytes for folder in folders.values())
    expire_before = now - timedelta(days=policy.retention_days)
    cap = policy.max_disk_mb * MIB
    for candidate in candidates:
        expired = policy.retention_days > 0 and candidate.age_from < expire_before
        over_cap = policy.max_disk_mb > 0 and total > cap
        if not (expired or over_cap):
            break  # oldest first, and the total only shrinks: nothing later is due
        if candidate.call_id in busy():
            continue  # started, or ended and not saved yet, since the scan
        if not await _delete(folders[candidate.call_id].path):
            continue
        if candidate.has_row:
            await store.mark_recording_deleted(candidate.call_id)
        total -= candidate.bytes
        report.deleted.append(candidate.call_id)
        report.freed_bytes += candidate.bytes
        if expired:
            report.expired += 1
        else:
            report.over_cap += 1
    report.total_bytes = total
    if report.deleted or report.missing:
        log.info("recordings: deleted %d (%d expired, %d over the %.0f MiB cap, %.1f MiB "
                 "freed), %d already gone; %.1f MiB left", len(report.deleted),
                 report.expired, report.over_cap, policy.max_disk_mb,
                 report.freed_bytes / MIB, len(report.missing), total / MIB)
    return report


async def _delete(path: Path) -> bool:
    try:
        await asyncio.to_thread(shutil.rmtree, path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        log.error("recordings: cannot delete %s: %s", path, exc)
        return False
    return True


async def sweep_once(store: Store, root: Path, policy: RecordingSettings,
                     live: Callable[[], Collection[str]]) -> SweepReport | None:
    """A sweep by whichever of the servers sharing the database and ``root`` holds the
    lease; None here when another one is sweeping (it sees every server's files).

    A call live on another server is not in ``live``; its row is not ended, which
    the sweep respects (see LIVE_ELSEWHERE).
    """
    async with lease(store, root, SWEEP_LEASE) as held:
        if not held:
            log.debug("recordings: another server is sweeping")
            return None
        return await sweep(store, root, policy, live)


async def _sweep_forever(state: AppState) -> None:
    while True:
        store = state.store
        if store is not None and not store.closed:
            try:
                await sweep_once(store, state.settings.storage.root, state.settings.recording,
                                 lambda: state.calls.keys())
            except Exception:
                log.exception("recordings: sweep failed")
        await asyncio.sleep(SWEEP_INTERVAL_S)


async def sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: sweeps at startup, then every SWEEP_INTERVAL_S."""
    task = asyncio.create_task(_sweep_forever(app[STATE]), name="recordings-sweeper")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
