"""Offers that never connect, per-address limits and the /offer rate limit, with real
aiortc peers against a real server (fake models) on 127.0.0.1. Other callers come from
127.0.0.2 and 127.0.0.3: loopback source addresses that the server tells apart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from avatar_rtc.state import STATE
from tests.fake_server import ClientFactory, base_url, settings_for, start
from tests.offer_client import Dialed, connect, dial, offer_sdp, post_offer

pytestmark = pytest.mark.timeout(60)


async def close_all(*dialed: Dialed) -> None:
    await asyncio.gather(*(d.pc.close() for d in dialed))


async def test_offers_that_never_connect_do_not_lock_callers_out(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client, app = await start(aiohttp_client, settings_for(
        tmp_path, server__max_calls=1, server__max_pending_offers=3,
        server__max_pending_per_address=2, server__connect_timeout_s=2.0))
    url, registry = base_url(client), app[STATE].registry
    silent = [await dial(url), await dial(url)]  # they never apply the answer
    assert [d.status for d in silent] == [200, 200]
    third = await dial(url)
    assert third.status == 503 and int(third.headers["Retry-After"]) >= 1
    assert third.body["error"] == "too many calls connecting from 127.0.0.1: 2 at once"
    caller = await dial(url, source="127.0.0.2")  # pending offers are not calls
    assert caller.status == 200
    other = await dial(url, source="127.0.0.3")
    assert other.status == 503
    assert other.body["error"] == "too many calls connecting: 3 at once"
    assert await connect(caller) < 2.0
    health = await (await client.get("/health")).json()
    assert (health["calls"], health["pending"]) == (1, 2)
    await asyncio.sleep(2.5)  # the silent ones time out; the call goes on
    assert (registry.connected(), registry.pending(), len(registry)) == (1, 0, 1)
    store = app[STATE].store
    assert store is not None
    await asyncio.gather(*app[STATE].background)
    for d in silent:
        record = await store.get_call(d.body["session_id"])
        assert record is not None and record.end_reason == "connect_timeout"
    await close_all(*silent, third, caller, other)


async def test_only_connected_calls_fill_max_calls(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """Two offers answered while the one slot is free: the first to connect gets it,
    the other is closed as it connects."""
    client, app = await start(aiohttp_client, settings_for(tmp_path, server__max_calls=1))
    url, state = base_url(client), app[STATE]
    first, second = await dial(url), await dial(url, source="127.0.0.2")
    assert (first.status, second.status) == (200, 200)
    await connect(first)
    await asyncio.gather(connect(second), return_exceptions=True)
    for _ in range(40):
        if len(state.registry) == 1:
            break
        await asyncio.sleep(0.1)
    assert (state.registry.connected(), len(state.registry)) == (1, 1)
    await asyncio.gather(*state.background)
    assert state.store is not None
    record = await state.store.get_call(second.body["session_id"])
    assert record is not None and record.end_reason == "server_full"
    late = await dial(url, source="127.0.0.3")
    assert late.status == 503 and "server full" in late.body["error"]
    await close_all(first, second, late)


async def test_offers_over_the_rate_get_429_with_retry_after(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client, _ = await start(aiohttp_client, settings_for(tmp_path, server__offer_rate_per_min=3))
    url = base_url(client)
    for _ in range(3):
        status, body, _headers = await post_offer(url, b"{}")
        assert status == 400
    status, body, headers = await post_offer(url, b"{}")
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 20
    assert body["error"].startswith("too many offers: at most 3 a minute")
    status, _, _ = await post_offer(url, b"{}", source="127.0.0.2")  # a bucket each
    assert status == 400


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        # The case: aiortc's createAnswer raised ValueError (a 500).
        (lambda sdp: sdp.replace("a=sendrecv\r\n", "", 1), "m=audio section has no direction"),
        (lambda sdp: sdp.replace("a=setup:actpass", "a=setup:bogus"), "SDP rejected"),
        (lambda sdp: sdp.replace("a=mid:0", "a=mid:1"), "duplicate a=mid"),
    ],
    ids=["no-direction", "bad-setup", "duplicate-mid"],
)
async def test_offers_aiortc_fails_on_are_400_and_leave_nothing_open(
    aiohttp_client: ClientFactory, tmp_path: Path, mutate: object, message: str
) -> None:
    client, app = await start(aiohttp_client, settings_for(tmp_path))
    pc, sdp = await offer_sdp()
    assert callable(mutate)
    status, body, _ = await post_offer(base_url(client), {"type": "offer", "sdp": mutate(sdp)})
    await pc.close()
    assert status == 400, body
    assert message in body["error"]
    await asyncio.sleep(0.1)
    assert len(app[STATE].registry) == 0 and not app[STATE].calls
