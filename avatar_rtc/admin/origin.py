"""Cross-site request forgery: admin writes only from this server's own pages.

The token travels in the Authorization header, which a cross-site form cannot send;
this refuses, besides, any write a browser says comes from another origin.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from avatar_rtc.admin.ratelimit import WRITE_METHODS
from avatar_rtc.http_errors import ApiError


def is_same_origin(origin: str, host: str) -> bool:
    try:
        url = URL(origin)
        own = URL.build(scheme=url.scheme, authority=host)
    except (ValueError, TypeError):
        return False
    if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/"):
        return False
    # The scheme is not compared: behind a TLS proxy the page is https, this side http.
    # yarl fills in the scheme's default port on both sides.
    return url.host.lower() == (own.host or "").lower() and url.port == own.port


def check_origin(request: web.Request) -> None:
    """403 for a write that a browser marks as cross-site or from another origin. Clients
    that send no Origin (curl, scripts) are no browser: their bearer token decides."""
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        raise ApiError(403, "cross-site request refused (Sec-Fetch-Site: cross-site): "
                            "admin writes come from this server's admin pages only")
    origin = request.headers.get("Origin")
    if origin is not None and not is_same_origin(origin, request.host):
        raise ApiError(403, f"cross-origin request refused: Origin {origin[:100]!r} is not "
                            f"this server ({request.host[:100]})")


@web.middleware
async def same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in WRITE_METHODS:
        check_origin(request)
    return await handler(request)
