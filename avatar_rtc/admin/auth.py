"""Who may use the admin API: a bearer token (set, or made by the server at startup),
or, in loopback-only mode, clients on this host that came through no proxy."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from avatar_rtc.admin.token_file import FILE_NAME, load_or_create
from avatar_rtc.bearer import require_bearer
from avatar_rtc.http_errors import ApiError
from avatar_rtc.settings import Settings

LOOPBACK_ONLY = ("admin API is loopback-only (admin.loopback_only): use it from this host, "
                 "or set admin.token")
# What reverse proxies add. Behind one on this host every request comes from loopback,
# so in loopback-only mode a request carrying one of these is someone else's.
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP", "X-Forwarded-Host",
                 "X-Forwarded-Proto", "Via")
# Where the server's own token is, without the absolute path (no need to tell strangers).
OWN_TOKEN_HINT = f"none is set, so the server's is in the file {FILE_NAME} in its data folder"


def is_loopback_host(host: str) -> bool:
    """The request's Host names this machine: localhost or a loopback address."""
    try:
        name = (URL.build(scheme="http", authority=host).host or "").lower().rstrip(".")
    except (ValueError, TypeError):
        return False
    return name == "localhost" or name.endswith(".localhost") or is_loopback(name)


def is_loopback(remote: str | None) -> bool:
    """The peer address aiohttp saw (never X-Forwarded-For, which anyone can send)."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@dataclass
class AdminAccess:
    """The token the API wants; the server's own is filled in at startup."""

    token: str
    loopback_only: bool
    data_dir: Path
    own: bool = False  # the token is the server's own, from its file

    @classmethod
    def from_settings(cls, settings: Settings) -> AdminAccess:
        admin = settings.admin
        return cls(admin.token, admin.loopback_only and not admin.token,
                   Path(settings.storage.data_dir))

    async def startup(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: without a token or loopback-only mode, the server's own token."""
        if not self.token and not self.loopback_only:
            self.token = await asyncio.to_thread(load_or_create, self.data_dir)
            self.own = True
        yield


def check_access(request: web.Request, access: AdminAccess) -> None:
    if access.token:
        require_bearer(request, access.token, setting="admin.token", what="admin token",
                       hint=OWN_TOKEN_HINT if access.own else "")
        return
    if not access.loopback_only:  # only before startup made the token
        raise ApiError(503, "admin API is starting: its token is not ready yet")
    proxied = next((h for h in PROXY_HEADERS if h in request.headers), None)
    if proxied is not None:
        raise ApiError(403, f"admin API is loopback-only and this request came through a "
                            f"proxy ({proxied} header): set admin.token to use it through one")
    if not is_loopback(request.remote):
        raise ApiError(403, LOOPBACK_ONLY)
    # A page of another site whose name was rebound to 127.0.0.1 (DNS rebinding) is
    # same-origin to itself; its Host header still names that site.
    if not is_loopback_host(request.host):
        raise ApiError(403, f"admin API is loopback-only: open it as 127.0.0.1 or localhost, "
                            f"not {request.host[:100]!r}, or set admin.token")


def auth_middleware(access: AdminAccess) -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        check_access(request, access)
        return await handler(request)

    return auth
