"""The statistics every table and benchmark uses: a run's spread, a percentile, a slope."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def describe(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max, sample standard deviation and count of a non-empty sequence."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys over xs; None under two points or when every x is the same."""
    if len(xs) < 2:
        return None
    try:
        return statistics.linear_regression(xs, ys).slope
    except statistics.StatisticsError:  # constant xs
        return None
