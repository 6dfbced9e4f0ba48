"""The latency pane during an outage: gaps, not fast bars; the headline says it is failing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import rendered
from vrm_tui.core.backend import Backend
from vrm_tui.telemetry import stub_status
from vrm_tui.telemetry.accesslog import TrafficStats
from vrm_tui.telemetry.health import Probe
from vrm_tui.telemetry.realtime import failing_for_s, judge
from vrm_tui.tui.widgets.common import scale, sparkline
from vrm_tui.tui.widgets.latency import measured

RUST = "127.0.0.1:3001"
NOW = 1_795_683_780


def _line(at: float, status: str, seconds: str = "0.005") -> str:
    return json.dumps({"msec": at, "route": "balanced", "upstream_addr": RUST,
                       "upstream_status": status, "upstream_response_time": seconds,
                       "status": int(status) if status.isdigit() else 502})


def test_a_slot_without_a_success_is_a_gap_and_the_scale_is_shown() -> None:
    assert sparkline([1.0, None, 8.0, None]) == "▁ █ "
    assert scale([1.0, None, 8.0, None]) == "1.0ms…8.0ms"
    assert sparkline([None, None]) == "  " and scale([None]) == "no data"
    assert sparkline([5.0, 5.0]) == "▁▁"


def test_failures_at_the_end_of_the_window_show_as_gaps_and_as_failing_time() -> None:
    stats = TrafficStats({RUST: Backend.RUST})
    stats.feed([_line(NOW - 50 + i * 0.5, "200") for i in range(60)])  # 30 s of successes
    stats.feed([_line(NOW - 19 + i * 0.5, "502") for i in range(38)])  # then 19 s failing
    rust = stats.snapshot("1m", now=NOW).backends[Backend.RUST]
    series = measured(rust, rust.p95_series)
    assert series[-1] is None and series[-9] is None and series[-12] is not None
    assert "▁" not in sparkline(series)[-9:] and sparkline(series).endswith(" " * 9)
    assert 18 <= failing_for_s(rust) <= 20
    assert rust.p95_ms is not None, "the window still has old successes: hence the headline"


def test_an_idle_end_of_window_is_not_called_failing() -> None:
    stats = TrafficStats({RUST: Backend.RUST})
    stats.feed([_line(NOW - 50 + i * 0.5, "200") for i in range(20)])
    rust = stats.snapshot("1m", now=NOW).backends[Backend.RUST]
    assert failing_for_s(rust) == 0.0


TS = "127.0.0.1:3002"


def _request(at: float, addrs: str, statuses: str, final: int) -> str:
    return json.dumps({"msec": at, "route": "balanced", "upstream_addr": addrs,
                       "upstream_status": statuses, "upstream_response_time": "0.005, 0.004",
                       "status": final})


def test_ten_second_error_rate_beside_the_window_and_the_clients_view() -> None:
    stats = TrafficStats({RUST: Backend.RUST, TS: Backend.TYPESCRIPT})
    stats.feed([_line(NOW - 55 + i * 0.1, "200") for i in range(450)])  # 45 s healthy
    # then 5 s of rust failing every request; nginx retries each GET on typescript
    stats.feed([_request(NOW - 5 + i * 0.1, f"{RUST}, {TS}", "502, 200", 200)
                for i in range(50)])
    rust = stats.snapshot("1m", now=NOW).backends[Backend.RUST]
    assert rust.error_rate is not None and rust.error_rate < 0.11, "the window hides it"
    assert rust.recent_error_rate is not None and rust.recent_error_rate >= 0.5
    assert rust.client_error_rate == 0.0, "the clients saw every request answered"
    assert rust.last_answer_at is not None and rust.last_answer_at > NOW - 1
    stats.feed([_request(NOW + 0.5, f"{RUST}, {TS}", "502, 504", 504)])
    after = stats.snapshot("1m", now=NOW + 1).backends[Backend.RUST]
    assert after.client_errors == 1


def test_a_probe_timeout_or_a_silent_backend_with_requests_in_flight_is_hanging() -> None:
    stats = TrafficStats({RUST: Backend.RUST})
    stats.feed([_line(NOW - 40 + i * 0.1, "200") for i in range(300)])  # 10 req/s until -10 s
    rust = stats.snapshot("1m", now=NOW).backends[Backend.RUST]
    timed_out = Probe("u", False, None, None, error="no answer within 1s", timed_out=True)
    assert judge(rust, NOW, timed_out).word == "hanging"
    assert judge(rust, NOW, None, in_flight=12, share=0.5).word == "hanging"
    assert "12 requests are in flight" in judge(rust, NOW, None, in_flight=12).reason
    assert judge(rust, NOW, None, in_flight=0).word == "idle", "quiet, nothing waiting"
    assert judge(rust, NOW, None, in_flight=12, share=0.0).word == "idle", "rolled back"


def test_stub_status_parses_the_requests_in_flight() -> None:
    page = ("Active connections: 291 \nserver accepts handled requests\n 16630948 16630948 "
            "31070465 \nReading: 6 Writing: 179 Waiting: 106 \n")
    assert stub_status.parse(page).in_flight == 178, "the status request itself is one"
    with pytest.raises(ValueError):
        stub_status.parse("<html>not found</html>")


def test_a_slow_end_of_a_busy_second_counts_in_its_percentiles() -> None:
    # Only the first 2,000 answers of each second were kept: at 4,000 a second, a slowdown in
    # the second half of every second never reached the pane's p95.
    stats = TrafficStats({RUST: Backend.RUST})
    for second in range(5):
        at = NOW - 5 + second
        stats.feed([_line(at + i / 8000, "200", "0.002") for i in range(2000)])
        stats.feed([_line(at + 0.5 + i / 8000, "200", "0.200") for i in range(2000)])
    rust = stats.snapshot("1m", now=NOW).backends[Backend.RUST]
    assert rust.requests == 20000 and rust.p95_ms == pytest.approx(200, rel=0.01)
    assert rust.p50_ms is not None and 2 <= rust.p50_ms <= 200


def test_prometheus_steps_without_a_value_are_gaps_never_zero() -> None:
    """Issue 22: after 60 s of 100% errors the 15m line read `███████████▁ 0.0ms…24ms`:
    missing values (no sample, NaN: nothing finished) were drawn as 0 ms."""
    from vrm_tui.telemetry.prometheus import on_grid

    values: list[list[object]] = [[100, "20"], [110, "NaN"], [130, "24"]]
    series = on_grid(values, 100, 160, 10)
    assert series == [20.0, None, None, 24.0, None, None, None]
    assert "▁" not in sparkline(series)[-3:] and scale(series) == "20ms…24ms"


async def test_the_15m_line_says_when_prometheus_stopped_answering(tmp_path: Path) -> None:
    """A stale source says so with its age, instead of a line that looks current."""
    from tests.tui.test_snapshots import _app, _feed
    from vrm_tui.tui.messages import HistoryUpdate, SourceFailed
    from vrm_tui.tui.polls import Source
    from vrm_tui.tui.widgets.latency import LatencyPane

    app = _app(tmp_path)
    _feed(app)
    app.post_message(HistoryUpdate({"rust": {"p95": [20.0, None, 24.0]},
                                    "typescript": {"p95": [80.0, 81.0, 90.0]}}))
    async with app.run_test(size=(200, 60)) as pilot:
        pane = app.query_one(LatencyPane)
        await pilot.pause(0.1)
        assert "p95 from Prometheus" in rendered(pane) and "STALE" not in rendered(pane)
        app.post_message(SourceFailed(Source.HISTORY, "PrometheusUnavailable: Prometheus not "
                                                      "running at http://127.0.0.1:9090"))
        await pilot.pause(0.1)
        assert "STALE, 0s ago (Prometheus: Prometheus not running" in rendered(pane)


def test_a_backend_whose_own_probe_answers_is_not_the_one_hanging() -> None:
    """Issue 22: rust hung at 50%; typescript's probe was `● up 2.1ms`, yet the pane said
    `typescript ⧖ hanging … while 1 requests are in flight at nginx` (nginx's count is for
    every upstream). Its own probe answering clears it."""
    stats = TrafficStats({"127.0.0.1:3002": Backend.TYPESCRIPT})
    stats.feed([json.dumps({"msec": NOW - 40 + i * 0.1, "route": "balanced",
                            "upstream_addr": "127.0.0.1:3002", "upstream_status": "200",
                            "upstream_response_time": "0.002", "status": 200})
                for i in range(300)])  # answered until 10 s ago, then nothing came
    typescript = stats.snapshot("1m", now=NOW).backends[Backend.TYPESCRIPT]
    up = Probe("u", True, 200, 2.1)
    assert judge(typescript, NOW, up, in_flight=1, share=0.5).word != "hanging"
    assert judge(typescript, NOW, None, in_flight=1, share=0.5).word == "hanging", \
        "without its probe, silence with requests in flight still reads as a hang"


def test_slow_answers_are_slow_not_hanging() -> None:
    """Issue 22: requests answered in ~2 s were shown as `⧖ hanging p50 - p95 -` because the
    1 s health probe timed out; the answers decide."""
    stats = TrafficStats({RUST: Backend.RUST})
    stats.feed([_line(NOW - 30 + i * 0.5, "200", "2.0") for i in range(60)])  # every 0.5 s
    rust = stats.snapshot("1m", now=NOW).backends[Backend.RUST]
    timed_out = Probe("u", False, None, None, error="no answer within 1s", timed_out=True)
    now = judge(rust, NOW, timed_out, in_flight=4, share=0.5)
    assert now.word == "slow" and "requests are answered" in now.reason
    silent = stats.snapshot("1m", now=NOW + 10).backends[Backend.RUST]
    assert judge(silent, NOW + 10, timed_out, in_flight=4).word == "hanging"
