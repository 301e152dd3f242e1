"""Retention once across the servers sharing a database and a recordings folder: the
sweep's lease on real PostgreSQL (advisory lock) and SQLite (flock), and two
sweepers at once deleting each expired recording exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from avatar_rtc.lease import lease
from avatar_rtc.recordings import SWEEP_LEASE, recording_dir, sweep, sweep_once
from avatar_rtc.storage import CallRecord, Store, new_id
from tests.test_recordings_retention import NOW, nothing_live, policy, recorded_call

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def two_stores(database_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two servers' stores: two connections to one database."""
    first = await Store.open(database_url)
    second = await Store.open(database_url)
    yield first, second
    await first.close()
    await second.close()


async def test_one_server_at_a_time_holds_the_lease(two_stores: tuple[Store, Store],
                                                    tmp_path: Path) -> None:
    first, second = two_stores
    async with lease(first, tmp_path, SWEEP_LEASE) as held:
        assert held
        async with lease(second, tmp_path, SWEEP_LEASE) as also:
            assert not also  # tried, not waited for
        async with lease(second, tmp_path, "another-job") as other:
            assert other  # leases of other names are independent
    async with lease(second, tmp_path, SWEEP_LEASE) as held:
        assert held  # released at the end of the block


async def test_two_sweepers_delete_each_expired_recording_once(
        two_stores: tuple[Store, Store], tmp_path: Path) -> None:
    first, second = two_stores
    expired = [await recorded_call(first, tmp_path, 40.0 + i, 1000) for i in range(12)]
    kept = await recorded_call(first, tmp_path, 1.0, 1000)
    rules = policy(retention_days=30)
    reports = await asyncio.gather(*(
        sweep_once(store, tmp_path, rules, nothing_live)
        for _ in range(3) for store in (first, second)))
    deleted = [call_id for r in reports if r is not None for call_id in r.deleted]
    assert sorted(deleted) == sorted(expired)  # each exactly once, none twice
    assert not any(r.missing for r in reports if r is not None)
    for call_id in expired:
        call = await second.get_call(call_id)
        assert call is not None and call.recording_deleted
    assert recording_dir(tmp_path, kept).exists()


async def test_a_row_not_ended_is_a_call_live_elsewhere_for_a_day(
        two_stores: tuple[Store, Store], tmp_path: Path) -> None:
    store, _ = two_stores
    live_elsewhere = await recorded_call(store, tmp_path, 0.01, 1000)
    crashed = await recorded_call(store, tmp_path, 2.0, 1000)
    for call_id in (live_elsewhere, crashed):  # rows as a server writes them at start
        call = await store.get_call(call_id)
        assert call is not None
        await store.delete_call(call_id)
        await store.create_call(CallRecord(
            id=call_id, started_at=call.started_at, user_audio_path=call.user_audio_path,
            agent_audio_path=call.agent_audio_path))
    assert new_id() != live_elsewhere
    report = await sweep(store, tmp_path, policy(retention_days=1, max_disk_mb=0.0001),
                         nothing_live, NOW + timedelta(hours=1))
    assert report.deleted == [crashed]
    assert recording_dir(tmp_path, live_elsewhere).exists()
