"""One rank rule for every figure: nearest-rank, so a report's p99 is the verdict's p99."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chaos.stats import mean, median, percentile, summary


def test_nearest_rank_returns_a_measured_value():
    xs = list(range(1, 101))
    assert percentile(xs, 50) == 50 and percentile(xs, 99) == 99 and percentile(xs, 99.5) == 100
    assert percentile([3, 1, 2], 0) == 1 and percentile([3, 1, 2], 100) == 3
    assert percentile([], 50) is None and mean([]) is None and summary([])["p99"] is None


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=50),
       st.floats(min_value=0, max_value=100))
def test_rank_is_ceil_of_q_percent_of_n(xs, q):
    got = percentile(xs, q)
    assert got in xs
    below = sum(1 for x in xs if x <= got)
    assert below >= len(xs) * q / 100 - 1e-9  # at least q% of the values are at or below it


def test_summary_and_median():
    s = summary([4.0, 1.0, 3.0, 2.0])
    assert s == {"p50": 2.0, "p90": 4.0, "p99": 4.0, "max": 4.0, "mean": 2.5}
    assert median([1.0, 3.0]) == 2.0
