"""Hostile bodies on POST /offer (hypothesis): wrong JSON, junk, huge strings, and a real
aiortc offer with lines deleted, duplicated, garbled or swapped. Never a 500; the
server keeps serving, a real call connects right after the flood, and no offer stays
pending past the connect timeout. The HTTP/SDP layer is the subject, so one server
has fake models; one flood goes to the real embedded server."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer, LoopThread
from tests.fake_server import serve_fake
from tests.offer_client import connect, dial, offer_sdp

pytestmark = pytest.mark.timeout(120)

CONNECT_TIMEOUT_S = 1.0
FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def post(port: int, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/offer", body=body,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def assert_answered(status: int, body: bytes, allowed: set[int]) -> None:
    assert status in allowed, (status, body[:300])
    data = json.loads(body)
    assert ("sdp" in data) if status == 200 else isinstance(data["error"], str), data


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def fuzzed(server_loop: LoopThread,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """No rate or pending limits: every mutated offer that parses reaches aiortc."""
    server = serve_fake(server_loop, tmp_path_factory.mktemp("fuzz"),
                  server__offer_rate_per_min=0, server__max_pending_offers=0,
                  server__max_pending_per_address=0,
                  server__connect_timeout_s=CONNECT_TIMEOUT_S)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def real_sdp(server_loop: LoopThread) -> str:
    async def make() -> str:
        pc, sdp = await offer_sdp()
        await pc.close()
        return sdp

    sdp: str = server_loop.run(make())
    return sdp


def port_of(server: LiveServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def settle_and_call(server: LiveServer, fds_before: int | None = None) -> None:
    """After the flood: nothing pending once the timeout passed, and a real call is
    answered and connects."""
    deadline = time.monotonic() + CONNECT_TIMEOUT_S + 5
    registry = server.state.registry
    while (registry.pending() or len(registry)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (registry.pending(), len(registry)) == (0, 0)

    async def call() -> float:
        dialed = await dial(server.url, source="127.0.0.2")
        try:
            return await connect(dialed, timeout_s=5.0)
        finally:
            await dialed.pc.close()

    assert server.loop.run(call()) < 5.0
    if fds_before is not None:  # the failed offers' sockets are all closed
        server.loop.run(asyncio.sleep(0.5))
        assert open_fds() <= fds_before + 10


# JSON of every shape, and objects that look like offers with wrong members.
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(
    max_size=40)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=8), inner, max_size=4), max_leaves=12)


def offer_like(sdp: str) -> st.SearchStrategy[dict[str, Any]]:
    huge = st.integers(30_000, 120_000).map(lambda n: "v=0\r\n" + "a=x\r\n" * (n // 5))
    return st.fixed_dictionaries({}, optional={
        "type": st.just("offer") | json_values,
        "sdp": st.just(sdp) | st.text(max_size=200) | huge | json_values,
        "voice": st.none() | st.text(max_size=20) | json_values,
        "echo_cancellation": st.none() | st.booleans() | json_values,
    })


def bodies(sdp: str) -> st.SearchStrategy[bytes]:
    nested = st.integers(100, 5000).map(lambda n: ("[" * n + "]" * n).encode())
    return st.one_of(
        st.binary(max_size=500),
        json_values.map(lambda v: json.dumps(v).encode()),
        offer_like(sdp).map(lambda v: json.dumps(v).encode()),
        nested,
    )


MUTATIONS = ("delete", "duplicate", "garble", "swap")
mutations = st.lists(
    st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 200), st.integers(0, 200),
              st.text(st.characters(codec="utf-8"), max_size=12)),
    min_size=1, max_size=3)


def mutate(sdp: str, edits: list[tuple[str, int, int, str]]) -> str:
    lines = sdp.split("\r\n")[:-1]
    for kind, i, j, junk in edits:
        i, j = i % len(lines), j % len(lines)
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(j, lines[i])
        elif kind == "garble":
            k = j % (len(lines[i]) + 1)
            lines[i] = lines[i][:k] + junk + lines[i][k + len(junk):]
        else:
            lines[i], lines[j] = lines[j], lines[i]
        if not lines:
            return ""
    return "\r\n".join(lines) + "\r\n"


def test_junk_bodies_never_get_a_500(fuzzed: LiveServer, real_sdp: str) -> None:
    port = port_of(fuzzed)

    @FUZZ
    @given(bodies(real_sdp))
    def flood(body: bytes) -> None:
        assert_answered(*post(port, body), allowed={200, 400, 413})

    flood()
    settle_and_call(fuzzed)


def test_mutated_offers_never_get_a_500_and_leave_nothing_open(
    fuzzed: LiveServer, real_sdp: str
) -> None:
    port = port_of(fuzzed)
    fds_before = open_fds()
    seen: set[int] = set()

    @settings(FUZZ, max_examples=80)  # each accepted one makes a peer connection
    @given(mutations)
    def flood(edits: list[tuple[str, int, int, str]]) -> None:
        body = json.dumps({"type": "offer", "sdp": mutate(real_sdp, edits)}).encode()
        status, answer = post(port, body)
        assert_answered(status, answer, allowed={200, 400})
        seen.add(status)

    flood()
    assert seen == {200, 400}  # both sides of the checks were reached
    settle_and_call(fuzzed, fds_before)


@pytest.mark.slow
@pytest.mark.timeout(600)  # the first test of a session to load the models waits for them
def test_the_embedded_server_survives_a_flood_of_offers_that_never_connect(
    start_server: Callable[..., LiveServer], real_sdp: str
) -> None:
    """Default limits, but no rate limit: the flood's answered offers stay pending
    (its sender never starts ICE), yet a caller from another address connects."""
    server = start_server(server__offer_rate_per_min=0,
                          server__connect_timeout_s=CONNECT_TIMEOUT_S)
    port = port_of(server)
    seen: set[int] = set()

    @settings(FUZZ, max_examples=40)
    @given(mutations)
    def flood(edits: list[tuple[str, int, int, str]]) -> None:
        body = json.dumps({"type": "offer", "sdp": mutate(real_sdp, edits)}).encode()
        status, answer = post(port, body)
        assert_answered(status, answer, allowed={200, 400, 503})
        seen.add(status)

    flood()
    for _ in range(4):  # the four offers that filled every slot
        status, answer = post(port, json.dumps({"type": "offer", "sdp": real_sdp}).encode())
        assert_answered(status, answer, allowed={200, 503})
    registry = server.state.registry
    assert registry.pending() <= server.state.settings.server.max_pending_per_address

    async def call() -> float:  # at once, not after the pending ones time out
        dialed = await dial(server.url, source="127.0.0.2")
        try:
            return await connect(dialed, timeout_s=5.0)
        finally:
            await dialed.pc.close()

    assert server.loop.run(call()) < CONNECT_TIMEOUT_S + 5
    settle_and_call(server)
