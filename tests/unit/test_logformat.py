"""Access-log lines formatted for people (the log viewer and `vrm logs`)."""

from __future__ import annotations

import json
from datetime import datetime

from vrm_tui.telemetry.logformat import format_line

NAMES = {"127.0.0.1:3001": "rust", "127.0.0.1:3002": "typescript"}
MSEC = 1795683690.123


def _entry(**fields: object) -> str:
    base: dict[str, object] = {
        "time": "2026-11-26T09:01:30+00:00", "msec": MSEC, "method": "GET",
        "uri": "/api/v1/vision/metrics", "status": 200, "upstream_addr": "127.0.0.1:3001",
        "upstream_status": "200", "upstream_response_time": "0.004", "backend": "rust",
        "route": "balanced"}
    return json.dumps({**base, **fields})


def _clock() -> str:
    return datetime.fromtimestamp(MSEC).strftime("%H:%M:%S.%f")[:-3]


def test_an_access_line_reads_time_method_path_status_backend_upstream_time() -> None:
    assert format_line(_entry(), NAMES) == f"{_clock()} GET /api/v1/vision/metrics 200 rust 4.0ms"


def test_a_retried_request_lists_each_attempt_and_keeps_the_file_label() -> None:
    line = "access.log: " + _entry(upstream_addr="127.0.0.1:3001, 127.0.0.1:3002",
                                   upstream_status="502, 200",
                                   upstream_response_time="0.001, 0.020", backend="typescript")
    assert format_line(line, NAMES) == (
        f"access.log: {_clock()} GET /api/v1/vision/metrics 200 typescript 20ms"
        "  (attempts: rust 502 1.0ms, typescript 200 20ms)")


def test_a_request_nginx_answered_itself_has_no_backend() -> None:
    line = _entry(upstream_addr="", upstream_status="", upstream_response_time="", backend="",
                  status=429)
    assert format_line(line, NAMES).endswith(" 429 - -")


def test_other_lines_pass_through_unchanged() -> None:
    for line in ('2026/11/26 09:01:30 [emerg] 12#12: bind() failed', "error.log: [bold] {x",
                 '{"no": "msec"}', "not json {", "", '{"msec": "soon"}'):
        assert format_line(line, NAMES) == line
