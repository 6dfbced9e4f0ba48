"""The latency pane during an outage: gaps, not fast bars; the headline says it is failing."""

from __future__ import annotations

import json

from vrm_tui.telemetry.accesslog import TrafficStats
from vrm_tui.tui.widgets.common import scale, sparkline
from vrm_tui.tui.widgets.latency import failing_for_s, measured

RUST = "127.0.0.1:3001"
NOW = 1_795_683_780


def _line(at: float, status: str, seconds: str = "0.005") -> str:
    return json.dumps({"msec": at, "route": "balanced", "upstream_addr": RUST,
                       "upstream_status": status, "upstream_response_time": seconds})


def test_a_slot_without_a_success_is_a_gap_and_the_scale_is_shown() -> None:
    assert sparkline([1.0, None, 8.0, None]) == "▁ █ "
    assert scale([1.0, None, 8.0, None]) == "1.0ms…8.0ms"
    assert sparkline([None, None]) == "  " and scale([None]) == "no data"
    assert sparkline([5.0, 5.0]) == "▁▁"


def test_failures_at_the_end_of_the_window_show_as_gaps_and_as_failing_time() -> None:
    stats = TrafficStats({RUST: "rust"})
    stats.feed([_line(NOW - 50 + i * 0.5, "200") for i in range(60)])  # 30 s of successes
    stats.feed([_line(NOW - 19 + i * 0.5, "502") for i in range(38)])  # then 19 s failing
    rust = stats.snapshot("1m", now=NOW).backends["rust"]
    series = measured(rust, rust.p95_series)
    assert series[-1] is None and series[-9] is None and series[-12] is not None
    assert "▁" not in sparkline(series)[-9:] and sparkline(series).endswith(" " * 9)
    assert 18 <= failing_for_s(rust) <= 20
    assert rust.p95_ms is not None, "the window still has old successes: hence the headline"


def test_an_idle_end_of_window_is_not_called_failing() -> None:
    stats = TrafficStats({RUST: "rust"})
    stats.feed([_line(NOW - 50 + i * 0.5, "200") for i in range(20)])
    rust = stats.snapshot("1m", now=NOW).backends["rust"]
    assert failing_for_s(rust) == 0.0
