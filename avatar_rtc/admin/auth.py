"""Who may use the admin API: a bearer token, or loopback clients when none is set."""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from avatar_rtc.http_errors import ApiError

LOOPBACK_ONLY = "admin API is loopback-only: set admin.token"


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


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <admin.token>'",
                       headers={"WWW-Authenticate": "Bearer"})
    return credentials.strip()


def check_access(request: web.Request, token: str) -> None:
    if not token:
        if not is_loopback(request.remote):
            raise ApiError(403, LOOPBACK_ONLY)
        return
    given = _bearer(request)
    # Constant time, on bytes: compare_digest refuses non-ASCII str.
    if not hmac.compare_digest(given.encode(errors="surrogateescape"), token.encode()):
        raise ApiError(403, "invalid admin token")


def auth_middleware(token: str) -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        check_access(request, token)
        return await handler(request)

    return auth
