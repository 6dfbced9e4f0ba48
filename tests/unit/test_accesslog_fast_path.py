"""The access log's fast path (issue 22, ten times the traffic): lines in nginx.conf's own
format are matched field by field and counted in groups instead of each going through
`json.loads`; every figure must be what the plain JSON path says of the same requests."""

from __future__ import annotations

import json
import re
from dataclasses import asdict

from tests.support import REPO
from vrm_tui.core.backend import Backend
from vrm_tui.telemetry import accesslog
from vrm_tui.telemetry.accesslog import TrafficStats, parse_request

RUST, TS = "127.0.0.1:3001", "127.0.0.1:3002"
ADDRESSES = {RUST: Backend.RUST, TS: Backend.TYPESCRIPT}
NOW = 1_795_683_780


def _log_format() -> str:
    """nginx.conf's `vrm_json` format, as nginx concatenates it."""
    conf = (REPO / "nginx" / "nginx.conf").read_text()
    block = conf.split("log_format vrm_json escape=json", 1)[1].split(";", 1)[0]
    return "".join(re.findall(r"'([^']*)'", block))


def _line(fmt: str, at: float, uri: str = "/api/v1/vision/metrics", status: int = 200,
          addr: str = RUST, upstream_status: str = "200", seconds: str = "0.004",
          backend: str = "rust", route: str = "balanced") -> str:
    """One line as nginx writes it: `uri` already escaped the way escape=json does."""
    values = {"time_iso8601": "2026-11-26T09:01:30+00:00", "msec": f"{at:.3f}",
              "remote_addr": "127.0.0.1", "request_method": "GET", "request_uri": uri,
              "status": str(status), "request_time": "0.005",
              "body_bytes_sent": "412", "upstream_addr": addr,
              "upstream_status": upstream_status, "upstream_response_time": seconds,
              "vrm_backend_name": backend, "upstream_http_x_vrm_backend": backend,
              "vrm_route": route, "vrm_generation": "7", "request_id": "3f9c0e7a9b5e4d2c"}
    return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], fmt)


def _lines() -> list[str]:
    fmt = _log_format()
    lines = []
    for i in range(600):  # 3 s at 200 lines a second, with what an outage logs
        at = NOW - 3 + i / 200 + (0.004 if i % 7 == 0 else 0)  # some finish out of order
        kind = i % 10
        if kind == 1:  # rust failed, nginx retried on typescript
            lines.append(_line(fmt, at, addr=f"{RUST}, {TS}", upstream_status="502, 200",
                               seconds="0.001, 0.003", backend="typescript"))
        elif kind == 2:  # no answer at all
            lines.append(_line(fmt, at, status=504, upstream_status="504", seconds="1.000"))
        elif kind == 3:  # an escaped URI: not the fast path, the same counts
            lines.append(_line(fmt, at, uri='/api/v1/vision/metrics?q=\\"x\\"',
                               backend="typescript", addr=TS, seconds="0.012"))
        elif kind == 4:  # a route vrm does not count
            lines.append(_line(fmt, at, uri="/vrm/served", route="status", addr=""))
        elif kind == 5:  # the client gave up
            lines.append(_line(fmt, at, status=499, upstream_status="-", seconds="-"))
        else:
            lines.append(_line(fmt, at, addr=TS if i % 2 else RUST,
                               backend="typescript" if i % 2 else "rust",
                               seconds=f"0.00{i % 9}"))
    return lines


def test_nginx_lines_take_the_fast_path() -> None:
    """nginx.conf's format and the matcher agree (a changed format would silently cost the
    TUI its CPU budget at 3,000 req/s)."""
    lines = _lines()
    matched = [line for line in lines if accesslog._NGINX_LINE.match(line)]
    assert len(matched) == len(lines) - 60, "all but the escaped URIs"


def test_the_fast_path_counts_what_json_says() -> None:
    lines = _lines()
    # The same requests, re-serialized with spaces: no fast-path match, each one json.loads.
    plain = [json.dumps(json.loads(line)) for line in lines]
    assert not any(accesslog._NGINX_LINE.match(line) for line in plain)
    for fast_line, json_line in zip(lines, plain, strict=True):
        assert parse_request(fast_line, ADDRESSES) == parse_request(json_line, ADDRESSES)
    fast, slow = TrafficStats(ADDRESSES), TrafficStats(ADDRESSES)
    for start in range(0, len(lines), 150):  # in reads of 150 lines, as a tail delivers them
        fast.feed(lines[start:start + 150])
        slow.feed(plain[start:start + 150])
    assert fast.total == slow.total == 540 and fast.last_answer == slow.last_answer
    for window in ("1m", "15m"):
        assert asdict(fast.snapshot(window, now=NOW)) == asdict(slow.snapshot(window, now=NOW))
    for backend in Backend:
        assert asdict(fast.since(backend, NOW - 3)) == asdict(slow.since(backend, NOW - 3))
    assert fast.snapshot("1m", now=NOW).backends[Backend.RUST].retried == 60


def test_lines_off_the_fast_path_keep_their_place_in_the_log() -> None:
    """A line the fast path leaves to json (an escaped URI) is counted after the lines before
    it: counted first, it opened its second early and theirs went into it as late lines."""
    fmt = _log_format()
    stats = TrafficStats(ADDRESSES)
    stats.feed([_line(fmt, NOW - 2.5), _line(fmt, NOW - 1.5, uri='/x?q=\\"y\\"')])
    assert [(sec.at, sec.backends[Backend.RUST].attempts) for sec in stats.seconds] == [
        (NOW - 3, 1), (NOW - 2, 1)]
