"""Latency percentiles over stored turn timings."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def latency_summary(timings: Iterable[dict[str, float]]) -> dict[str, dict[str, float]]:
    """stage -> {"count", "p50", "p90"} in milliseconds."""
    by_stage: dict[str, list[float]] = {}
    for entry in timings:
        for stage, ms in entry.items():
            by_stage.setdefault(stage, []).append(ms)
    summary: dict[str, dict[str, float]] = {}
    for stage in sorted(by_stage):
        values = sorted(by_stage[stage])
        summary[stage] = {
            "count": len(values),
            "p50": percentile(values, 50),
            "p90": percentile(values, 90),
        }
    return summary
