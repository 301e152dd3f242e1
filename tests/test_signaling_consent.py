"""ICE consent on a busy machine: two real aioice connections on loopback, one of which
answers consent checks late (as an event loop lagging behind does) or not at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aioice
import aioice.ice
import pytest
from aioice import stun

from signaling import consent
from signaling.consent import patient_consent
from signaling.ice import restrict_host_addresses


@pytest.fixture(autouse=True)
def fast_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    restrict_host_addresses(["127.0.0.1"])
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.1)  # aioice's own check
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 3)
    monkeypatch.setattr(consent, "INTERVAL_S", 0.1)
    monkeypatch.setattr(consent, "EXPIRY_S", 1.0)
    monkeypatch.setattr(consent, "RETRANSMISSIONS", 1)  # a check waits 1.5 s at most
    yield
    patient_consent()  # as the server and the replay client install it
    restrict_host_addresses([])


async def _pair() -> tuple[aioice.Connection, aioice.Connection]:
    a = aioice.Connection(ice_controlling=True, components=1)
    b = aioice.Connection(ice_controlling=False, components=1)
    await asyncio.gather(a.gather_candidates(), b.gather_candidates())
    for near, far in ((a, b), (b, a)):
        for candidate in far.local_candidates:
            await near.add_remote_candidate(candidate)
        await near.add_remote_candidate(None)
        near.remote_username, near.remote_password = far.local_username, far.local_password
    await asyncio.gather(a.connect(), b.connect())
    return a, b


def _answer_late(connection: aioice.Connection, delay_s: float | None) -> None:
    """The connection's STUN answers leave `delay_s` late; None: never."""
    loop = asyncio.get_running_loop()
    for protocol in connection._protocols:
        send = protocol.send_stun

        def late(message: stun.Message, addr: Any, send: Any = send) -> None:
            if message.message_class != stun.Class.RESPONSE:
                send(message, addr)
            elif delay_s is not None:
                loop.call_later(delay_s, send, message, addr)

        protocol.send_stun = late  # type: ignore[method-assign]


def _restart_consent(connection: aioice.Connection) -> None:
    """Its consent task started before the test chose the rule: start it again."""
    connection._query_consent_task.cancel()  # type: ignore[union-attr]
    connection._query_consent_task = asyncio.create_task(connection.query_consent())


async def _still_connected(a: aioice.Connection, b: aioice.Connection) -> bool:
    try:
        await a.send(b"ping")
        return await asyncio.wait_for(b.recv(), 2.0) == b"ping"
    except ConnectionError:
        return False


@pytest.fixture
async def connections() -> AsyncIterator[tuple[aioice.Connection, aioice.Connection]]:
    a, b = await _pair()
    yield a, b
    await asyncio.gather(a.close(), b.close())


@pytest.mark.parametrize("patient", [False, True])
async def test_late_answers_keep_consent(
    patient: bool, connections: tuple[aioice.Connection, aioice.Connection]
) -> None:
    patient_consent(patient)
    a, b = connections
    _answer_late(b, 0.7)  # > aioice's 0.5 s wait for an answer it never resends
    _restart_consent(a)
    await asyncio.sleep(2.5)  # aioice gives up after 3 late answers (~1 s here)
    assert await _still_connected(a, b) is patient


async def test_a_peer_that_never_answers_still_loses_consent(
    connections: tuple[aioice.Connection, aioice.Connection]
) -> None:
    patient_consent()
    a, b = connections
    _answer_late(b, None)
    _restart_consent(a)
    await asyncio.sleep(1.0)
    assert await _still_connected(a, b)  # within EXPIRY_S of the last answer
    await asyncio.sleep(3.0)  # EXPIRY_S plus one unanswered check
    assert not await _still_connected(a, b)
