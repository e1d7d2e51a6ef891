"""The bench's rounding for the JSON; medians and percentiles are chaos.stats' (one rank rule everywhere)."""

from __future__ import annotations

from chaos.stats import median, percentile

__all__ = ["median", "percentile", "rounded"]


def rounded(x: float, nd: int = 4) -> float:
    return round(float(x), nd)
