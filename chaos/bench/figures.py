"""The bench's figures: medians over runs, percentiles of one run, rounding for the JSON."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable


def median(xs: Iterable[float]) -> float:
    xs = list(xs)
    return float(statistics.median(xs)) if xs else float("nan")


def percentile(sorted_xs: list[float], q: float) -> float:
    if not sorted_xs:
        return float("nan")
    return sorted_xs[max(0, math.ceil(q * len(sorted_xs)) - 1)]


def rounded(x: float, nd: int = 4) -> float:
    return round(float(x), nd)

