"""The canary's read timeout, derived from how long typescript takes.

A hung rust held clients for the whole PROXY_UPSTREAM_TIMEOUT (30 s) even after the guard
rolled back in 2.6 s. While rust takes traffic, nginx gives a rust attempt only
max(2 s, 4 x typescript's p99) (never more than the upstream timeout): a canary never
holds a client much longer than typescript would. Requests safe to repeat are then retried
on typescript; the rest fail fast (504) and count against rust in the gates.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from vrm_tui.core.backend import Backend
from vrm_tui.core.stats import percentile
from vrm_tui.system.logfiles import last_lines
from vrm_tui.telemetry.accesslog import parse_request

FLOOR_MS = 2000
FACTOR = 4
SAMPLE_LINES = 5000
MIN_SAMPLES = 20  # fewer typescript answers than this: not enough to derive a timeout


def derive(typescript_p99_ms: float | None, upstream_timeout_s: int) -> int:
    """max(FLOOR_MS, FACTOR x typescript p99), capped by the upstream timeout; the upstream
    timeout itself when typescript's latency is unknown (no basis to be stricter)."""
    ceiling = upstream_timeout_s * 1000
    if typescript_p99_ms is None:
        return ceiling
    return int(min(ceiling, max(FLOOR_MS, FACTOR * typescript_p99_ms)))


def timeout_for(access_log: Path, addresses: Mapping[str, Backend],
                upstream_timeout_s: int) -> int:
    """The canary timeout (ms) for now: derived from typescript's recent answers."""
    return derive(typescript_p99(access_log, addresses), upstream_timeout_s)


def typescript_p99(access_log: Path, addresses: Mapping[str, Backend],
                   lines: int = SAMPLE_LINES) -> float | None:
    """typescript's p99 over its successful attempts in the last `lines` of the access log;
    None with fewer than MIN_SAMPLES (or no readable log)."""
    try:
        tail = last_lines(access_log, lines)
    except OSError:
        return None
    latencies = []
    for line in tail:
        request = parse_request(line, addresses)
        if request is None:
            continue
        latencies += [a.latency_ms for a in request.attempts
                      if a.backend == Backend.TYPESCRIPT and not a.failed
                      and a.latency_ms is not None]
    return percentile(latencies, 0.99) if len(latencies) >= MIN_SAMPLES else None
