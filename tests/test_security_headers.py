"""Headers on every response, CORS closed, and /metrics behind its token.

A real server (create_app on 127.0.0.1, SQLite) on fake models: no route here needs one.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from avatar_rtc.security_headers import SECURITY_HEADERS
from tests.admin_helpers import API, ClientFactory, admin_server
from tests.fakes import fake_backends

pytestmark = pytest.mark.timeout(60)

STATIC = Path(__file__).resolve().parent.parent / "static"
EVIL = "https://evil.example"


def no_cors(response: Any) -> None:
    allowed = [h for h in response.headers if h.lower().startswith("access-control-")]
    assert not allowed, allowed


@web.middleware
async def leaky_cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A handler that opens CORS by mistake: the server still sends no such header."""
    response = await handler(request)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


async def test_every_response_carries_the_security_headers(aiohttp_client: ClientFactory,
                                                            tmp_path: Path) -> None:
    async with admin_server(aiohttp_client, fake_backends(), tmp_path / "data",
                            middlewares=[leaky_cors], admin__token="t0ken") as admin:
        client = admin.client
        cases = [
            ("GET", "/", 200), ("GET", "/admin/", 200), ("GET", "/admin/calls", 200),
            ("GET", "/admin", 302), ("GET", "/static/call/main.js", 200),
            ("GET", "/static/call.css", 200), ("GET", "/static/admin/api.js", 200),
            ("GET", "/health", 200), ("GET", "/metrics", 200), ("GET", "/api/voices", 200),
            ("GET", "/nowhere", 404), ("GET", "/static/nowhere.js", 404),
            ("DELETE", "/health", 405), ("POST", "/offer", 400),
            ("GET", f"{API}/stats", 401), ("DELETE", f"{API}/calls/x", 403),
        ]
        for method, path, status in cases:
            headers = {"Origin": EVIL} if path.endswith("/x") else {}
            response = await client.request(method, path, headers=headers,
                                            allow_redirects=False)
            assert response.status == status, (method, path)
            for name, value in SECURITY_HEADERS.items():
                assert response.headers.get(name) == value, (method, path, name)
            no_cors(response)
        response = await client.get(f"{API}/stats", headers={"Authorization": "Bearer t0ken"})
        assert response.status == 200
        assert response.headers["X-Frame-Options"] == "DENY"
        no_cors(response)


def test_the_policy_says_what_the_pages_need() -> None:
    csp = dict(part.split(" ", 1) for part in SECURITY_HEADERS["Content-Security-Policy"]
               .split("; "))
    assert csp["default-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert csp["connect-src"] == "'self'"
    assert "unsafe" not in SECURITY_HEADERS["Content-Security-Policy"]
    assert "blob:" in csp["media-src"]  # the admin pages play recordings from blob: URLs


class _InlineFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.inline.append("<script> without src")
        if tag == "style":
            self.inline.append("<style>")
        self.inline += [f"{tag} {name}=" for name in names
                        if name == "style" or name.startswith("on")]


@pytest.mark.parametrize("page", sorted(p.relative_to(STATIC).as_posix()
                                        for p in STATIC.rglob("*.html")))
def test_pages_have_no_inline_script_or_style(page: str) -> None:
    """What the policy would block: the pages must not need it."""
    finder = _InlineFinder()
    finder.feed((STATIC / page).read_text(encoding="utf-8"))
    assert finder.inline == []


def test_scripts_set_no_style_attribute_nor_eval() -> None:
    """Style attributes (also through el()'s attrs) and eval are what the policy blocks;
    setting element.style properties is allowed."""
    blocked = re.compile(r"setAttribute\(\s*[\"']style|\bstyle\s*:|cssText|\beval\(|new Function")
    for script in STATIC.rglob("*.js"):
        assert not blocked.search(script.read_text(encoding="utf-8")), script


async def test_a_preflight_from_another_origin_gets_no_permission(
        aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    async with admin_server(aiohttp_client, fake_backends(), tmp_path / "data") as admin:
        for path in (f"{API}/profiles", f"{API}/calls/x", "/offer", "/metrics", "/health", "/"):
            response = await admin.client.options(path, headers={
                "Origin": EVIL, "Access-Control-Request-Method": "DELETE",
                "Access-Control-Request-Headers": "authorization, content-type"})
            assert response.status in (403, 405), path
            no_cors(response)
            assert "error" in await response.json()
        response = await admin.client.get("/health", headers={"Origin": EVIL})
        assert response.status == 200
        no_cors(response)


async def test_metrics_token(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    async with admin_server(aiohttp_client, fake_backends(), tmp_path / "open") as admin:
        response = await admin.client.get("/metrics")
        assert response.status == 200  # empty: open, as before
        assert "avatar_" in await response.text()
    async with admin_server(aiohttp_client, fake_backends(), tmp_path / "closed",
                            server__metrics_token="scrape-t0ken") as admin:
        client = admin.client
        for headers in ({}, {"Cookie": "token=scrape-t0ken"}, {"Authorization": "scrape-t0ken"}):
            response = await client.get("/metrics?token=scrape-t0ken", headers=headers)
            assert response.status == 401, headers
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert "server.metrics_token" in (await response.json())["error"]
        response = await client.get("/metrics", headers={"Authorization": "Bearer scrape-t0ke"})
        assert response.status == 403
        assert (await response.json())["error"] == "invalid metrics token"
        response = await client.get("/metrics", headers={"Authorization": "Bearer scrape-t0ken"})
        assert response.status == 200
        assert response.content_type == "text/plain"
        assert "avatar_" in await response.text()
        # The admin token is another one.
        assert (await client.get(f"{API}/stats", headers={
            "Authorization": "Bearer scrape-t0ken"})).status == 200  # loopback-only mode
