"""What counts as a client's failure after nginx's retries (issue 20: the TUI showed
"clients 0.0%" while every client routed to a hung rust gave up, logged 499)."""

from __future__ import annotations

import json

from vrm_tui.core.backend import Backend
from vrm_tui.telemetry.accesslog import TrafficStats, client_failed


def _line(status: int, upstream_status: str, at: float) -> str:
    return json.dumps({"msec": at, "method": "GET", "uri": "/api/v1/vision/metrics",
                       "status": status, "route": "balanced",
                       "upstream_addr": "127.0.0.1:3001", "upstream_status": upstream_status,
                       "upstream_response_time": "9.000", "backend": "rust"})


def test_a_client_that_gave_up_or_timed_out_failed() -> None:
    assert client_failed(499) and client_failed(504) and client_failed(None)
    assert not client_failed(200) and not client_failed(404) and not client_failed(429)


def test_the_client_error_rate_counts_499() -> None:
    stats = TrafficStats({"127.0.0.1:3001": Backend.RUST})
    stats.feed([_line(499, "-", 100.0), _line(200, "200", 100.2)])
    sec = stats.seconds[-1]
    assert sec.backends[Backend.RUST].first_failed == 1
