"""Every summary figure of the framework (checkers, reports, benchmarks) from one rank rule, so a report's p99
and the verdict beside it are the same number.

Percentiles use the **nearest-rank** rule: the q-th percentile of n sorted values is the value at rank
``ceil(q / 100 * n)`` (1-based, at least 1). It always returns a value that was measured (no interpolation),
and p100 is the maximum.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile, ``q`` in 0..100; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = int(max(1, -(-len(ordered) * q // 100)))  # ceil(n * q / 100), without 0.57 * 100 = 56.99...
    return ordered[min(len(ordered), rank) - 1]


def summary(values: Iterable[float]) -> dict[str, float | None]:
    """{p50, p90, p99, max, mean} of ``values`` (all None for none)."""
    xs = list(values)
    return {"p50": percentile(xs, 50), "p90": percentile(xs, 90), "p99": percentile(xs, 99),
            "max": max(xs) if xs else None, "mean": mean(xs)}


def mean(values: Iterable[float]) -> float | None:
    """Arithmetic mean; None for no values."""
    xs = list(values)
    return statistics.fmean(xs) if xs else None


def median(values: Iterable[float]) -> float:
    """The median of repeated runs (the middle value, the mean of the two middle ones); NaN for none."""
    xs = list(values)
    return float(statistics.median(xs)) if xs else float("nan")
