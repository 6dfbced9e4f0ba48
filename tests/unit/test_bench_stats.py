from __future__ import annotations

import math
import random

import pytest

from vrm_tui.bench.histogram import Histogram
from vrm_tui.bench.stats import mann_whitney_greater, median_ratio


def test_histogram_percentiles_are_within_one_percent() -> None:
    rng = random.Random(5)
    values = [rng.lognormvariate(-4, 1.0) for _ in range(50000)]  # seconds, ~18 ms median
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    ordered = sorted(values)
    for q in (50, 90, 99, 99.9):
        exact = ordered[math.ceil(q / 100 * len(ordered)) - 1] * 1000
        assert histogram.percentile_ms(q) == pytest.approx(exact, rel=0.01), q
    assert histogram.percentile_ms(100) == pytest.approx(max(values) * 1000)
    merged = Histogram()
    merged.merge(histogram)
    assert merged.total == 50000 and merged.percentile_ms(50) == histogram.percentile_ms(50)


def test_mann_whitney_detects_a_slower_candidate_and_not_an_equal_one() -> None:
    rng = random.Random(2)
    base = [rng.gauss(10, 2) for _ in range(200)]
    same = [rng.gauss(10, 2) for _ in range(200)]
    slower = [rng.gauss(11, 2) for _ in range(200)]
    assert mann_whitney_greater(same, base).p_value > 0.02
    assert mann_whitney_greater(slower, base).p_value < 0.001
    faster = mann_whitney_greater(base, slower)
    assert faster.p_value > 0.99 and faster.effect < 0.5


def test_mann_whitney_textbook_value() -> None:
    # U for x=[1,2,3] vs y=[4,5,6]: every x below every y, U_x = 0
    result = mann_whitney_greater([1, 2, 3], [4, 5, 6])
    assert result.u == 0 and result.effect == 0


def test_median_ratio_interval_covers_the_true_speedup() -> None:
    rng = random.Random(9)
    fast = [rng.lognormvariate(2.0, 0.3) for _ in range(400)]
    slow = [3 * rng.lognormvariate(2.0, 0.3) for _ in range(400)]
    found = median_ratio(slow, fast)
    assert found.low <= 3.0 <= found.high and found.low > 2.5
