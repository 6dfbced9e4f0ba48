"""Benchmark texts: the proxy's 429s apart from backend errors, stress's stopping reason,
and one progress bar over a run's phases."""

from __future__ import annotations

from typing import Any

from vrm_tui.bench import modes, report
from vrm_tui.bench.engine import Result


def _result(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"requests": 500, "ok": 236, "failed": 264, "rate_limited": 264,
                            "backend_errors": 0, "rps": 90.0, "statuses": {"200": 236,
                                                                         "429": 264},
                            "errors": {}, "latency": {k: 5.0 for k in ("p50_ms", "p90_ms",
                                                                       "p99_ms", "max_ms")}}
    return base | fields


def test_the_proxys_429s_are_named_apart_from_backend_errors() -> None:
    found = {"mode": "benchmark", "results": {
        "proxy": _result(),
        "rust": _result(ok=497, failed=3, rate_limited=0, backend_errors=3,
                        statuses={"200": 497, "503": 2}, errors={"timeout": 1})}}
    lines = report.failures(found)
    assert lines == ["proxy: 429 rate-limited by the proxy: 264; backend errors: 0",
                     "rust: 429 rate-limited by the proxy: 0; backend errors: 3 "
                     "(HTTP 503 2, timeout 1)"]
    assert all(line in report.table(found) for line in lines)


def _stress(stopped: str, best: float = 11093.0) -> dict[str, Any]:
    return {"max_sustainable_rps": best, "stopped": stopped, "cap": 256, "steps": [],
            "limit": "error rate <= 1%, p99 <= 1000 ms"}


def test_stress_at_its_own_cap_reports_a_floor_not_a_maximum() -> None:
    assert report.stress_verdict(_stress("cap")) == (
        "at least 11093.0 req/s: stopped at the c=256 cap before reaching the limit "
        "(error rate <= 1%, p99 <= 1000 ms)")
    assert report.stress_verdict(_stress("limit")).startswith("max sustainable 11093.0 req/s")
    assert report.stress_verdict(_stress("stopped")).startswith("at least 11093.0 req/s")
    assert report.stress_verdict(_stress("limit", 0.0)).startswith("no step within the limit")


def test_progress_over_phases_only_goes_forward() -> None:
    seen: list[float] = []
    result = Result("t", "http://x", "closed", 1)
    for phase in range(3):
        share = modes.share(lambda _p, _r, f: seen.append(f), phase, 3)
        assert share is not None
        for fraction in (0.0, 0.55, 0.3, 1.0):  # a phase's own estimate may dip
            share("phase", result, fraction)
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert seen[1] == 0.55 / 3


def test_a_phase_that_overshoots_does_not_make_the_next_jump_back() -> None:
    """Issue 22: the TUI's bar went from 55% back to 30% between phases: a duration run's
    last report said more than all of its phase (1.1), so the next phase began below it."""
    seen: list[float] = []
    result = Result("t", "http://x", "closed", 1)
    for phase in range(2):
        share = modes.share(lambda _p, _r, f: seen.append(f), phase, 2)
        assert share is not None
        for fraction in (0.0, 0.5, 1.1):
            share("phase", result, fraction)
    assert seen == sorted(seen), seen
    assert max(seen) == 1.0
