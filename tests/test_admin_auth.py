"""Who may use the admin API: bearer tokens (set, or the server's own), loopback-only
mode, writes from other origins, write rate limits.

The server is real (aiohttp on 127.0.0.1, SQLite); the models are fakes, since no route
here needs one. A non-loopback client is made the way a trusted reverse proxy does it
(aiohttp-remotes): a middleware in front of the app replaces request.remote.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from avatar_rtc.admin.auth import LOOPBACK_ONLY, PROXY_HEADERS, is_loopback
from avatar_rtc.admin.origin import is_same_origin as same_origin_as
from avatar_rtc.admin.ratelimit import RateLimiter
from avatar_rtc.admin.token_file import TokenFileError, load_or_create
from avatar_rtc.settings import SettingsError
from avatar_rtc.storage import new_id
from tests.admin_helpers import API, Admin, ClientFactory, admin_server
from tests.fakes import fake_backends

pytestmark = pytest.mark.timeout(60)

TOKEN = "correct-horse-battery-staple"


def remote_from_header(request_header: str = "X-Test-Remote") -> Any:
    """Sets request.remote from a test header, as a proxy-aware middleware would."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        remote = request.headers.get(request_header)
        if remote is not None:
            request = request.clone(remote=remote)
        return await handler(request)

    return middleware


@pytest.fixture
def server(aiohttp_client: ClientFactory, tmp_path: Path) -> Any:
    def start(**overrides: Any) -> Any:
        return admin_server(aiohttp_client, fake_backends(), tmp_path / "data",
                            middlewares=[remote_from_header()], **overrides)

    return start


@pytest.fixture
async def with_token(server: Any) -> AsyncIterator[Admin]:
    async with server(admin__token=TOKEN) as admin:
        yield admin


async def test_a_missing_or_malformed_header_is_401(with_token: Admin) -> None:
    for headers in ({}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"},
                    {"Authorization": "Bearer   "}, {"Authorization": TOKEN}):
        response = await with_token.client.get(f"{API}/profiles", headers=headers)
        assert response.status == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "missing bearer token" in (await response.json())["error"]


async def test_a_wrong_token_is_403_and_the_right_one_passes(with_token: Admin) -> None:
    client = with_token.client
    for wrong in ("nope", TOKEN + "x", TOKEN[:-1], "ünïcödé"):
        response = await client.get(f"{API}/stats",
                                    headers={"Authorization": f"Bearer {wrong}"})
        assert response.status == 403, wrong
        assert (await response.json())["error"] == "invalid admin token"
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = await client.get(f"{API}/stats",
                                    headers={"Authorization": f"{scheme} {TOKEN}"})
        assert response.status == 200, scheme
    # With a token set, loopback is no free pass, and a remote client with it is let in.
    assert (await client.get(f"{API}/calls")).status == 401
    response = await client.get(f"{API}/calls", headers={
        "Authorization": f"Bearer {TOKEN}", "X-Test-Remote": "203.0.113.9"})
    assert response.status == 200


async def test_every_api_route_is_guarded(with_token: Admin) -> None:
    some = new_id()
    routes = [
        ("GET", "backends"), ("GET", "profiles"), ("POST", "profiles"),
        ("GET", f"profiles/{some}"), ("PATCH", f"profiles/{some}"),
        ("DELETE", f"profiles/{some}"), ("GET", f"profiles/{some}/audio"),
        ("POST", f"profiles/{some}/synthesize"), ("GET", "calls"), ("GET", f"calls/{some}"),
        ("DELETE", f"calls/{some}"), ("GET", f"calls/{some}/recording"),
        ("GET", f"calls/{some}/turns/{some}/audio"), ("GET", f"calls/{some}/export"),
        ("GET", "search?q=x"), ("GET", "stats"),
    ]
    for method, path in routes:
        response = await with_token.client.request(method, f"{API}/{path}")
        assert response.status == 401, (method, path)


async def test_pages_and_the_public_voice_list_need_no_token(with_token: Admin) -> None:
    client = with_token.client
    for path, marker in (("/admin/", "profile"), ("/admin/calls", "call")):
        response = await client.get(path, headers={"X-Test-Remote": "198.51.100.4"})
        assert response.status == 200, path
        assert response.content_type == "text/html"
        assert marker in (await response.text()).lower()
    response = await client.get("/admin", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/admin/"
    response = await client.get("/api/voices")
    assert response.status == 200
    assert await response.json() == {"default": "fake", "items": []}


async def test_loopback_only_mode_lets_in_loopback_clients_that_came_through_no_proxy(
        server: Any) -> None:
    async with server(admin__loopback_only=True) as admin:
        client = admin.client
        assert not (admin.data_dir / "admin-token").exists()
        assert (await client.get(f"{API}/stats")).status == 200  # really from 127.0.0.1
        for remote in ("203.0.113.7", "10.0.0.1", "192.168.1.20", "2001:db8::1"):
            response = await client.get(f"{API}/stats", headers={"X-Test-Remote": remote})
            assert response.status == 403, remote
            assert (await response.json())["error"] == LOOPBACK_ONLY
        # A reverse proxy on this host connects from loopback: its headers give it away,
        # whatever address they name.
        for header in PROXY_HEADERS:
            for value in ("127.0.0.1", "for=127.0.0.1", "203.0.113.7"):
                response = await client.delete(f"{API}/calls/{new_id()}",
                                               headers={header: value})
                assert response.status == 403, (header, value)
                error = (await response.json())["error"]
                assert "came through a proxy" in error and header in error
                assert "set admin.token" in error
        # DNS rebinding: another site's name pointed at 127.0.0.1.
        for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example", ""):
            response = await client.get(f"{API}/stats", headers={"Host": host})
            assert response.status == 403, host
            assert "open it as 127.0.0.1 or localhost" in (await response.json())["error"]
        for host in ("localhost", "LOCALHOST:8080", "127.0.0.1:1", "[::1]:8080", "a.localhost"):
            response = await client.get(f"{API}/stats", headers={"Host": host})
            assert response.status == 200, host
        # A token sent anyway changes nothing when none is configured.
        response = await client.get(f"{API}/stats", headers={
            "X-Test-Remote": "203.0.113.7", "Authorization": "Bearer whatever"})
        assert response.status == 403


async def test_without_a_token_the_server_makes_one_and_keeps_it(
        server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="avatar_rtc")
    async with server(admin__loopback_only=False) as admin:
        path = admin.data_dir / "admin-token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = path.read_text().strip()
        assert len(token) >= 40
        client = admin.client
        # Loopback is no free pass.
        response = await client.get(f"{API}/stats")
        assert response.status == 401
        error = (await response.json())["error"]
        assert "Bearer <admin.token>" in error and "the file admin-token" in error
        assert str(admin.data_dir) not in error
        response = await client.get(f"{API}/stats", headers={"Authorization": "Bearer nope"})
        assert response.status == 403
        response = await client.get(f"{API}/stats", headers={
            "Authorization": f"Bearer {token}", "X-Test-Remote": "203.0.113.7"})
        assert response.status == 200
    # The log names the file, never the token.
    assert str(path) in caplog.text
    assert token not in caplog.text
    # The next start uses the same token, and keeps it to the server's user.
    path.chmod(0o644)
    async with server(admin__loopback_only=False) as admin:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().strip() == token
        response = await admin.client.get(f"{API}/stats",
                                          headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200


def test_a_token_file_that_cannot_be_written_is_a_settings_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("a file where the data folder should be")
    with pytest.raises(TokenFileError) as info:
        load_or_create(not_a_dir)
    assert isinstance(info.value, SettingsError)
    assert str(not_a_dir / "admin-token") in str(info.value)
    assert "admin.loopback_only" in str(info.value)


async def test_the_token_is_read_from_the_authorization_header_only(with_token: Admin) -> None:
    client = with_token.client
    for query in ("token", "access_token", "admin_token"):
        response = await client.delete(f"{API}/calls/{new_id()}?{query}={TOKEN}")
        assert response.status == 401, query
    for cookie in (f"token={TOKEN}", f"avatarAdminToken={TOKEN}", f"Authorization=Bearer {TOKEN}"):
        response = await client.delete(f"{API}/calls/{new_id()}", headers={"Cookie": cookie})
        assert response.status == 401, cookie


async def test_writes_from_another_origin_are_refused(with_token: Admin) -> None:
    client = with_token.client
    own = str(client.make_url("")).rstrip("/")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{API}/calls/{new_id()}"
    for origin in ("https://evil.example", "http://127.0.0.1", "http://127.0.0.1:1",
                   "http://localhost:" + own.rsplit(":", 1)[1], "null", "garbage"):
        for method in ("DELETE", "POST", "PATCH"):
            response = await client.request(method, url, headers={**auth, "Origin": origin})
            assert response.status == 403, (method, origin)
            error = (await response.json())["error"]
            assert error.startswith("cross-origin request refused"), error
    response = await client.delete(url, headers={**auth, "Origin": own,
                                                 "Sec-Fetch-Site": "cross-site"})
    assert response.status == 403
    assert "Sec-Fetch-Site: cross-site" in (await response.json())["error"]
    # The server's own pages, and clients that are no browser, get through to the route.
    for headers in ({"Origin": own, "Sec-Fetch-Site": "same-origin"}, {}):
        response = await client.delete(url, headers={**auth, **headers})
        assert response.status == 404, headers
    # Reads are answered (no other origin can read them: CORS is closed).
    response = await client.get(f"{API}/stats", headers={**auth, "Origin": "https://evil.example"})
    assert response.status == 200
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_origins_compared_by_host_and_port() -> None:
    assert same_origin_as("http://example.org", "example.org")
    assert same_origin_as("https://example.org", "EXAMPLE.org:443")
    assert same_origin_as("https://example.org:8443", "example.org:8443")
    assert same_origin_as("https://[::1]:8080", "[::1]:8080")
    assert not same_origin_as("https://example.org", "example.org:8443")
    assert not same_origin_as("http://example.org.evil", "example.org")
    assert not same_origin_as("ftp://example.org", "example.org")
    assert not same_origin_as("http://example.org/path", "example.org")
    assert not same_origin_as("null", "example.org")
    assert not same_origin_as("", "example.org")


def test_loopback_addresses() -> None:
    for remote in ("127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1", "fe80::1%lo"):
        assert is_loopback(remote) == (remote != "fe80::1%lo"), remote
    for remote in (None, "", "localhost", "10.0.0.1", "::ffff:10.0.0.1", "0.0.0.0", "garbage"):
        assert not is_loopback(remote), remote


async def test_writes_are_rate_limited_per_client(server: Any) -> None:
    async with server(admin__write_rate_per_min=3) as admin:
        client = admin.client
        url = f"{API}/profiles/{new_id()}"
        for _ in range(3):
            assert (await client.delete(url)).status == 404  # counted, whatever the outcome
        response = await client.patch(url, json={"name": "x"})
        assert response.status == 429
        retry = int(response.headers["Retry-After"])
        assert 1 <= retry <= 20  # one token refills in 60/3 s
        assert "at most 3 a minute" in (await response.json())["error"]
        assert (await client.post(f"{API}/profiles")).status == 429
        # Reads are not limited, and another client has its own bucket.
        for _ in range(10):
            assert (await client.get(f"{API}/stats")).status == 200
        other = await client.delete(url, headers={"X-Test-Remote": "::1"})
        assert other.status == 404


async def test_no_limit_when_the_rate_is_zero(server: Any) -> None:
    async with server(admin__write_rate_per_min=0) as admin:
        url = f"{API}/calls/{new_id()}"
        for _ in range(50):
            assert (await admin.client.delete(url)).status == 404


def test_token_bucket_refills_at_the_configured_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(6, clock=lambda: now[0])  # one token every 10 s, bursts of 6
    assert [limiter.take("a") for _ in range(6)] == [0.0] * 6
    assert limiter.take("a") == pytest.approx(10.0)
    assert limiter.take("b") == 0.0
    now[0] += 5.0
    assert limiter.take("a") == pytest.approx(5.0)
    now[0] += 5.0
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(10.0)
    now[0] += 3600.0  # never more than a burst's worth saved up
    assert [limiter.take("a") for _ in range(7)][-2:] == [0.0, pytest.approx(10.0)]
