"""The admin API's limit on write requests, per client."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from avatar_rtc.ratelimit import RateLimiter

__all__ = ["WRITE_METHODS", "RateLimiter", "rate_limit_middleware"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def rate_limit_middleware(rate_per_min: int) -> Middleware | None:
    """None when unlimited (rate 0)."""
    if rate_per_min <= 0:
        return None
    limiter = RateLimiter(rate_per_min)

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in WRITE_METHODS:
            limiter.check(request.remote or "unknown", "write requests")
        return await handler(request)

    return rate_limit
