"""Conversions between Python values and their stored text form."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def time_to_db(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive value is ambiguous; guessing would silently shift history.
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
    # Always UTC with microseconds: fixed width, so the text sorts in time order
    # and range filters work on any backend without native timezone support.
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def time_from_db(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def opt_time_to_db(value: datetime | None) -> str | None:
    return None if value is None else time_to_db(value)


def opt_time_from_db(text: str | None) -> datetime | None:
    return None if text is None else time_from_db(text)


def json_to_db(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def json_from_db(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def timings_from_db(text: str) -> dict[str, float]:
    return {str(k): float(v) for k, v in json_from_db(text).items()}


def json_list_to_db(value: list[dict[str, Any]]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_list_from_db(text: str) -> list[dict[str, Any]]:
    value = json.loads(text or "[]")
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON list, got {type(value).__name__}")
    return [item for item in value if isinstance(item, dict)]
