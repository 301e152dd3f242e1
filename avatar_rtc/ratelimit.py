"""Per-client token buckets: the admin API's writes and `POST /offer` each have one."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from avatar_rtc.http_errors import ApiError

# Full buckets are forgotten past this many clients, so the table cannot grow forever.
_PRUNE_AT = 1024


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`rate_per_min` requests a minute per key, in bursts of up to that many."""

    def __init__(self, rate_per_min: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_min = rate_per_min
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

    def check(self, key: str, what: str) -> None:
        """Takes one token for `key`, or raises a 429 with Retry-After; `what` names
        the requests in the message."""
        wait_s = self.take(key)
        if wait_s > 0:
            retry = max(1, math.ceil(wait_s))
            raise ApiError(
                429,
                f"too many {what}: at most {self.rate_per_min} a minute; retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )

    def _prune(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if self._refilled(b, now) >= self.capacity]
        for key in full:
            del self._buckets[key]
