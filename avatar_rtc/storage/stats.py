"""Statistics over stored turns, computed by the database: counts, and latency
percentiles per timing stage, without reading every turn into Python."""

from __future__ import annotations

from typing import Any

import peewee

from .db import fetch_all, is_postgres
from .models import Call, Turn

PERCENTILES = (50, 90)

# One row per (turn, stage): the stage's name and its milliseconds, from the JSON
# object in turn.timings (text on both engines).
_TIMINGS_SQLITE = (
    "SELECT j.key AS stage, CAST(j.value AS REAL) AS ms "
    "FROM turn, json_each(turn.timings) AS j"
)
_TIMINGS_POSTGRES = (
    "SELECT j.key AS stage, CAST(j.value AS double precision) AS ms "
    "FROM turn, json_each_text(CAST(turn.timings AS json)) AS j"
)


def _percentile_sql(q: int) -> tuple[str, str]:
    """(bounds columns, final column) for the q-th percentile by linear interpolation
    between closest ranks (numpy's default): position (n-1)*q/100, in integers so both
    engines divide alike (and no % sign, which psycopg would take for a placeholder)."""
    low = f"(n - 1) * {q} / 100"
    bounds = (
        f"MAX(CASE WHEN i = {low} THEN ms END) AS p{q}_low, "
        f"MAX(CASE WHEN i = {low} + 1 THEN ms END) AS p{q}_high"
    )
    fraction = f"((n - 1) * {q} - {low} * 100) / 100.0"
    final = f"p{q}_low + (COALESCE(p{q}_high, p{q}_low) - p{q}_low) * {fraction}"
    return bounds, final


def _latency_sql(db: peewee.Database) -> str:
    parts = [_percentile_sql(q) for q in PERCENTILES]
    return (
        f"WITH timing AS ({_TIMINGS_POSTGRES if is_postgres(db) else _TIMINGS_SQLITE}), "
        "ranked AS (SELECT stage, ms, "
        "ROW_NUMBER() OVER (PARTITION BY stage ORDER BY ms) - 1 AS i, "
        "COUNT(*) OVER (PARTITION BY stage) AS n FROM timing), "
        f"bounds AS (SELECT stage, n, {', '.join(b for b, _ in parts)} "
        "FROM ranked GROUP BY stage, n) "
        f"SELECT stage, n, {', '.join(f for _, f in parts)} FROM bounds"
    )


def latency_summary(db: peewee.Database) -> dict[str, dict[str, float]]:
    """stage -> {"count", "p50", "p90"} in milliseconds, stages sorted by name."""
    rows = fetch_all(db, _latency_sql(db))
    # Sorted here, not by ORDER BY: PostgreSQL would sort by its collation.
    return {
        str(stage): {
            "count": int(count),
            **{f"p{q}": float(value) for q, value in zip(PERCENTILES, values, strict=True)},
        }
        for stage, count, *values in sorted(rows, key=lambda row: str(row[0]))
    }


def _count_true(field: peewee.Field) -> Any:
    return peewee.fn.SUM(peewee.Case(None, [(field == True, 1)], 0))  # noqa: E712


def counts() -> dict[str, int]:
    """{"calls", "turns", "interruptions", "cut_off"}, in one query."""
    calls = Call.select(peewee.fn.COUNT(Call.id))
    query = Turn.select(
        calls.alias("calls"),
        peewee.fn.COUNT(Turn.seq),
        _count_true(Turn.interrupted),
        _count_true(Turn.cut_off),
    )
    row: Any = query.tuples().get()  # typed as a model by peewee's stubs
    return {
        "calls": int(row[0] or 0),
        "turns": int(row[1] or 0),
        "interruptions": int(row[2] or 0),
        "cut_off": int(row[3] or 0),
    }
