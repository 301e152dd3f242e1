"""Slow and oversized requests over raw sockets: each is answered 400/408/413 or cut
off, and the server answers others meanwhile. Real server (fake models), 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from avatar_rtc.state import STATE
from tests.fake_server import ClientFactory, settings_for, start

pytestmark = pytest.mark.timeout(60)

HEAD = b"POST /offer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


async def exchange(client: TestClient[Any, Any], data: bytes, *, eof: bool = False,
                   wait_s: float = 5.0) -> bytes:
    """Sends `data` raw and returns the first answer that comes back; b"" when the
    server closed unanswered, or answered and hung up while `data` was still being sent
    (a reset)."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(data)
        await writer.drain()
        if eof:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(1 << 16), wait_s)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply else 0


async def healthy(client: TestClient[Any, Any]) -> float:
    started = time.monotonic()
    response = await client.get("/health")
    assert response.status == 200
    return time.monotonic() - started


async def test_a_slow_loris_is_cut_off_and_others_are_served_meanwhile(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client, _ = await start(aiohttp_client,
                           settings_for(tmp_path, server__keepalive_timeout_s=2.0))
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    started = time.monotonic()

    async def drip() -> None:  # the head, one byte a second
        for byte in HEAD + b"X-Slow: " + b"a" * 100:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1.0)

    dripping = asyncio.create_task(drip())
    for _ in range(3):
        assert await healthy(client) < 1.0
        await asyncio.sleep(0.3)
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, unanswered
    assert time.monotonic() - started < 5.0
    dripping.cancel()
    await asyncio.gather(dripping, return_exceptions=True)
    writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        # Answered 400 as soon as the line is too long, so mostly a reset mid-send.
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n",
         {400, 0}),
        (b"GET /health HTTP/1.1\r\nHost: x\r\n"
         + b"".join(b"X-%d: a\r\n" % i for i in range(200)) + b"\r\n", {400}),
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
        (HEAD + b"Content-Length: 200000\r\n\r\n" + b"a" * 200_000, {413}),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
         + (b"8000\r\n" + b"a" * 0x8000 + b"\r\n") * 4 + b"0\r\n\r\n", {413}),
        (HEAD + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", {400}),
    ],
    ids=["1MB-header", "200-headers", "20kB-path", "body-over-limit", "chunked-over-limit",
         "two-lengths"],
)
async def test_oversized_or_ambiguous_requests_are_refused(
    aiohttp_client: ClientFactory, tmp_path: Path, request_bytes: bytes, expected: set[int]
) -> None:
    client, _ = await start(aiohttp_client, settings_for(tmp_path))
    reply = await exchange(client, request_bytes)
    assert status_of(reply) in expected, reply[:200]
    assert await healthy(client) < 1.0


async def test_a_content_length_lie_holds_nothing(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client, app = await start(aiohttp_client,
                              settings_for(tmp_path, server__keepalive_timeout_s=1.5))
    # Claims more than it sends, then hangs up: nothing to answer, nothing kept.
    reply = await exchange(client, HEAD + b"Content-Length: 1000\r\n\r\n{\"type\"", eof=True)
    assert reply == b""
    # Claims more and stalls: the body deadline answers 408 and closes.
    stalled = asyncio.create_task(exchange(client, HEAD + b"Content-Length: 1000\r\n\r\n{"))
    assert await healthy(client) < 1.0
    reply = await stalled
    assert status_of(reply) == 408 and b"body not received within 1.5 s" in reply
    # Claims less than it sends: the rest is a malformed second request.
    reply = await exchange(client, HEAD + b"Content-Length: 2\r\n\r\n{}GARBAGE\r\n\r\n")
    assert status_of(reply) == 400
    assert len(app[STATE].registry) == 0
