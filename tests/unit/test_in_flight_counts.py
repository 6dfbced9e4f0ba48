"""Requests in flight per backend, without nginx: how the pools are wired to count them, how
/vrm/served's counts are read, and how a backend's own count decides a hang (issue 22 item 3:
nginx's count over all upstreams blamed typescript for rust's hang)."""

from __future__ import annotations

import json
import re

import pytest

from vrm_tui.core.backend import Backend
from vrm_tui.core.errors import ProxyUnreachable
from vrm_tui.core.paths import StateDir
from vrm_tui.core.split import Split
from vrm_tui.telemetry.accesslog import TrafficStats
from vrm_tui.telemetry.health import Probe
from vrm_tui.telemetry.realtime import judge
from vrm_tui.traffic import live, nginx
from vrm_tui.traffic.served import InFlight, parse_served

NOW = 1_795_683_780
RUST, TS = "127.0.0.1:3001", "127.0.0.1:3002"


def _upstreams(text: str) -> dict[str, str]:
    return dict(re.findall(r"upstream (\w+) \{\n(.*?)\n\}", text, re.S))


def _rendered(rust: str, ts: str) -> str:
    paths = live.live_split(StateDir(nginx.TEMPLATE.parent / "x"))
    return nginx.render_upstream(Split(50), 3, rust, ts, "ab", paths, 30_000, 2_000)


def test_every_pool_counts_its_attempts_before_keepalive_wraps_its_balancer() -> None:
    for rust, ts, canary in ((RUST, TS, True), ("rust.internal:3001", "ts.internal:3002", False)):
        text = _rendered(rust, ts)
        pools = _upstreams(text)
        order = {"vrm_typescript_first": '"typescript", "rust"',
                 "vrm_typescript_only": '"typescript"',
                 "vision_rust": '"rust"', "vision_typescript": '"typescript"',
                 "vrm_rust_first": None if canary else '"rust", "typescript"'}
        for name, names in order.items():
            body = pools[name]
            hook = (".balance()" if names is None else f".attempt({names})")
            assert hook in body, (name, body)
            assert body.index("balancer_by_lua_block") < body.index("keepalive"), body
        assert 'init_worker_by_lua_block { require("vrm_split").worker_start() }' in text
        assert 'log_by_lua_block { require("vrm_split").done() }' in text
        assert "in_flight = true" in text, "served() reports counts only where they are wired"
        assert nginx.upstream_shape(text).rust_address == rust


def test_without_the_lua_module_nothing_counts() -> None:
    text = nginx.render_upstream(Split(50), 3, RUST, TS, "ab")
    assert "lua" not in text


def test_served_counts_are_read_and_their_absence_is_unknown() -> None:
    body: dict[str, object] = {"generation": 4, "rust": 50, "typescript": 50, "worker_pid": 9}
    assert parse_served(json.dumps(body).encode(), "x").in_flight is None
    body["in_flight"] = {"rust": 7, "typescript": 0}
    flight = parse_served(json.dumps(body).encode(), "x").in_flight
    assert flight == InFlight(7, 0) and flight.of(Backend.RUST) == 7
    body["in_flight"] = "7"
    with pytest.raises(ProxyUnreachable, match="not vrm's config"):
        parse_served(json.dumps(body).encode(), "x")


def _silent(backend: Backend, address: str) -> TrafficStats:
    stats = TrafficStats({address: backend})
    stats.feed([json.dumps({"msec": NOW - 40 + i * 0.1, "route": "balanced",
                            "upstream_addr": address, "upstream_status": "200",
                            "upstream_response_time": "0.002", "status": 200})
                for i in range(300)])  # 10 req/s, answered until 10 s ago, then nothing
    return stats


def test_only_a_backend_with_its_own_requests_waiting_is_hanging() -> None:
    rust = _silent(Backend.RUST, RUST).snapshot("1m", now=NOW).backends[Backend.RUST]
    typescript = _silent(Backend.TYPESCRIPT, TS).snapshot("1m", now=NOW).backends[
        Backend.TYPESCRIPT]
    up = Probe("u", True, 200, 2.1)
    # nginx has 12 in flight, all on rust: typescript is idle however silent it is.
    assert judge(typescript, NOW, None, 12, 0.5, waiting=0).word == "idle"
    now = judge(rust, NOW, up, 12, 0.5, waiting=12)
    assert now.word == "hanging", "its own requests wait, none are answered: /health aside"
    assert "no answer for 10 s; 12 waiting at nginx" in now.reason
    assert judge(rust, NOW, None, 12, 0.0, waiting=3).word == "hanging", \
        "rolled back, yet 3 requests still wait on it"
    timed_out = Probe("u", False, None, None, error="no answer within 1s", timed_out=True)
    reason = judge(rust, NOW, timed_out, waiting=0).reason
    assert reason == "health probe: no answer within 1s; 0 waiting at nginx", reason


def test_answers_arriving_above_the_baseline_are_slow_not_hanging() -> None:
    stats = TrafficStats({RUST: Backend.RUST})
    stats.feed([json.dumps({"msec": NOW - 20 + i * 0.1, "route": "balanced",
                            "upstream_addr": RUST, "upstream_status": "200",
                            "upstream_response_time": "0.800", "status": 200})
                for i in range(200)])  # answered all along, in 800 ms
    rust = stats.snapshot("1m", now=NOW).backends[Backend.RUST]
    above = "probe 812 ms > 40 ms (its recent baseline)"
    now = judge(rust, NOW, Probe("u", True, 200, 812.0), waiting=8, degraded=above)
    assert now.word == "slow" and now.reason.startswith(above), now
    assert judge(rust, NOW, Probe("u", True, 200, 3.0), waiting=8).word == "ok"
