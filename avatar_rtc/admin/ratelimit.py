"""Per-client token buckets for the admin API's write requests."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from avatar_rtc.http_errors import ApiError

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Full buckets are forgotten past this many clients, so the table cannot grow forever.
_PRUNE_AT = 1024


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`rate_per_min` requests a minute per key, in bursts of up to that many."""

    def __init__(self, rate_per_min: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(rate_per_min)
        self.refill_per_s = rate_per_min / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        return min(self.capacity, bucket.tokens + (now - bucket.updated) * self.refill_per_s)

    def take(self, key: str) -> float:
        """Takes one token; returns 0 if allowed, else the seconds until one is free."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_AT:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        bucket.tokens, bucket.updated = self._refilled(bucket, now), now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.refill_per_s

    def _prune(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if self._refilled(b, now) >= self.capacity]
        for key in full:
            del self._buckets[key]


def rate_limit_middleware(rate_per_min: int) -> Middleware | None:
    """None when unlimited (rate 0)."""
    if rate_per_min <= 0:
        return None
    limiter = RateLimiter(rate_per_min)

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in WRITE_METHODS:
            wait_s = limiter.take(request.remote or "unknown")
            if wait_s > 0:
                raise ApiError(
                    429,
                    f"too many write requests: at most {rate_per_min} a minute; "
                    f"retry in {math.ceil(wait_s)} s",
                    headers={"Retry-After": str(math.ceil(wait_s))},
                )
        return await handler(request)

    return rate_limit
