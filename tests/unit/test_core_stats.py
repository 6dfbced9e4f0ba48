from __future__ import annotations

import json
import random

import pytest

from vrm_tui.bench.histogram import Histogram
from vrm_tui.core.stats import mann_whitney_greater, median_ratio, nearest_rank, percentile


def test_histogram_percentiles_are_within_one_percent() -> None:
    rng = random.Random(5)
    values = [rng.lognormvariate(-4, 1.0) for _ in range(50000)]  # seconds, ~18 ms median
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    ordered = sorted(values)
    for q in (50, 90, 99, 99.9):
        exact = ordered[nearest_rank(len(ordered), q / 100) - 1] * 1000
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
    equal = mann_whitney_greater(same, base)
    assert equal is not None and equal.p_value > 0.02
    slowed = mann_whitney_greater(slower, base)
    assert slowed is not None and slowed.p_value < 0.001
    faster = mann_whitney_greater(base, slower)
    assert faster is not None
    assert faster.p_value > 0.99 and faster.effect < 0.5


def test_mann_whitney_textbook_value() -> None:
    # U for x=[1,2,3] vs y=[4,5,6]: every x below every y, U_x = 0
    result = mann_whitney_greater([1, 2, 3], [4, 5, 6])
    assert result is not None
    assert result.u == 0 and result.effect == 0


def test_median_ratio_interval_covers_the_true_speedup() -> None:
    rng = random.Random(9)
    fast = [rng.lognormvariate(2.0, 0.3) for _ in range(400)]
    slow = [3 * rng.lognormvariate(2.0, 0.3) for _ in range(400)]
    found = median_ratio(slow, fast)
    assert found is not None
    assert found.low <= 3.0 <= found.high and found.low > 2.5


def test_one_percentile_definition_nearest_rank() -> None:
    """Pinned: p95 of 1..20 is 19 (nearest rank), the same number in panes, gates, reports."""
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 0.95) == 19
    assert percentile(values, 0.5) == 10
    assert percentile(values, 1.0) == 20
    assert percentile(values, 0.01) == 1
    assert percentile([], 0.5) is None
    assert nearest_rank(20, 0.95) == 19
    histogram = Histogram()
    for value in values:
        histogram.record(value / 1000)
    p95 = histogram.percentile_ms(95)
    assert p95 is not None and abs(p95 - 19) / 19 < 0.01


def test_the_gates_and_the_panes_use_the_same_percentile() -> None:
    from vrm_tui.core.backend import Backend
    from vrm_tui.telemetry.accesslog import TrafficStats

    stats = TrafficStats({"127.0.0.1:1": Backend.RUST})
    now = 1_700_000_000
    stats.feed([json.dumps({"msec": now + 0.5, "route": "balanced",
                            "upstream_addr": "127.0.0.1:1", "upstream_status": "200",
                            "upstream_response_time": f"{v / 1000:.3f}"}) for v in range(1, 21)])
    window = stats.snapshot("1m", now=now + 1).backends[Backend.RUST]
    assert window.p95_ms == percentile(stats.since(Backend.RUST, now).latencies, 0.95) == 19
