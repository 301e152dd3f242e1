"""Parsing of path and query parameters shared by the admin routes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from avatar_rtc.http_errors import ApiError
from avatar_rtc.storage import canonical_id

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


def parse_id(text: str) -> str:
    value = canonical_id(text)
    if value is None:
        raise ApiError(400, "invalid id")
    return value


def path_id(request: web.Request, key: str = "id") -> str:
    return parse_id(request.match_info[key])


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be {low}-{high}, got {value}")
    return value


def limit_param(request: web.Request) -> int:
    return _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)


def page_params(request: web.Request) -> tuple[int, int]:
    """(limit, offset) from ?limit=1..200 (default 50) &offset=>=0."""
    return limit_param(request), _int_param(request, "offset", 0, 0, 2**62)


def page_json(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def time_param(request: web.Request, name: str, *, end_of_day: bool = False) -> datetime | None:
    """An ISO date or datetime; naive values are UTC. A bare date as an upper bound
    means the end of that day, so `until=2025-01-31` includes the 31st."""
    text = request.query.get(name)
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            value = datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
            return value + timedelta(days=1) if end_of_day else value
        value = datetime.fromisoformat(text)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ApiError(400, f"{name} must be an ISO date or datetime, got {text!r}") from None


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z suffix."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
