"""One health classification for `vrm status` and the TUI; "degraded" is relative to the
service's own recent probes."""

from __future__ import annotations

from vrm_tui.stack.runtime import ServiceState
from vrm_tui.status import ServiceStatus, classify
from vrm_tui.telemetry.health import FALLBACK_DEGRADED_MS, Baselines, Probe, degraded_above_ms

RUNNING = ServiceState("vision-manager-rust", "running", 42)


def _ok(latency: float) -> Probe:
    return Probe("u", True, 200, latency)


def test_words_for_every_case() -> None:
    assert classify(ServiceState("x", "exited"), None).word == "down"
    assert classify(ServiceState("x", "exited"), None).reason == "process exited"
    assert classify(ServiceState("x", "not installed"), None).word == "absent"
    assert classify(RUNNING, Probe("u", False, None, None, error="refused")).word == "down"
    hung = Probe("u", False, None, None, error="no answer within 1s", timed_out=True)
    assert classify(RUNNING, hung).word == "hanging"
    assert classify(RUNNING, _ok(2.0)).word == "up"


def test_degraded_is_relative_to_the_backends_own_baseline() -> None:
    baselines = Baselines()
    assert baselines.limit_ms("rust", _ok(3.0)) == FALLBACK_DEGRADED_MS, "no baseline yet"
    for _ in range(10):
        baselines.limit_ms("rust", _ok(3.0))
    limit = baselines.limit_ms("rust", _ok(303.0))
    assert limit == 103.0, "max(3 x 3 ms, 3 ms + 100 ms)"
    assert ServiceStatus(RUNNING, _ok(303.0), limit).health.word == "degraded"
    assert baselines.limit_ms("rust", _ok(3.0)) == 103.0, "a slow probe is not the new normal"
    assert degraded_above_ms([200.0] * 10) == 600.0, "a slow backend's normal is its own"
    assert ServiceStatus(RUNNING, _ok(400.0), 600.0).health.word == "up"
