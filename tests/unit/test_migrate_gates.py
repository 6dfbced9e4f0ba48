from __future__ import annotations

import json
import random

import pytest

from vrm_tui.migrate.gates import (
    MAX_STRATUM_SAMPLES,
    BackendEvidence,
    StepEvidence,
    attempt_outcome,
    evaluate,
    proxy_gate,
    stratified_slower,
    stratum,
)
from vrm_tui.migrate.plan import Plan
from vrm_tui.telemetry.backend_metrics import VramReading
from vrm_tui.telemetry.health import Probe

GET = stratum("GET", "/api/v1/vision/metrics")
POST = stratum("POST", "/api/v1/vision/process?x=1", "resnet50")
HEALTHY = Probe("http://rust/health", True, 200, 1.0)
VRAM = VramReading("rust", 2.0, 8.0, 1)
PLAN = Plan(min_samples=50)


def _fill(evidence: BackendEvidence, key: str, n: int, median_ms: float, rng: random.Random,
          failures: int = 0) -> None:
    for _ in range(n):
        evidence.record(key, "ok", rng.lognormvariate(0, 0.3) * median_ms)
    for _ in range(failures):
        evidence.record(key, "error")


def test_outcomes_count_timeouts_as_failures() -> None:
    assert [attempt_outcome(s) for s in ("200", "404", "502", "504", "-", " 503 ")] == \
        ["ok", "ok", "error", "timeout", "timeout", "error"]
    evidence = BackendEvidence()
    evidence.record(GET, "timeout", 60000.0, retried=True)
    evidence.record(GET, "ok", 3.0)
    assert (evidence.attempts, evidence.failures, evidence.timeouts, evidence.retried) == \
        (2, 1, 1, 1)
    assert evidence.latencies == {GET: [3.0]}  # a failure's time is not a latency sample
    assert POST == "POST /api/v1/vision/process resnet50"


def test_evidence_round_trips_through_json_and_keeps_recent_latencies() -> None:
    step = StepEvidence()
    for i in range(MAX_STRATUM_SAMPLES + 5):
        step.rust.record(GET, "ok", float(i))
    step.typescript.record(POST, "error")
    back = StepEvidence.from_dict(json.loads(json.dumps(step.to_dict())))
    assert back == step
    assert len(back.rust.latencies[GET]) == MAX_STRATUM_SAMPLES
    assert back.rust.latencies[GET][0] == 5.0
    with pytest.raises(ValueError, match="inconsistent"):
        BackendEvidence.from_dict({**BackendEvidence(1, 0).to_dict(), "failures": 2})
    with pytest.raises(ValueError, match="step evidence"):
        BackendEvidence.from_dict({"attempts": 1})


def test_mixed_traffic_split_by_round_robin_is_not_a_slower_rust() -> None:
    # The case: rust got all the fast GETs, typescript all the slow POSTs, plus
    # some of each, at the same speed per stratum.
    rng = random.Random(3)
    rust, ts = BackendEvidence(), BackendEvidence()
    _fill(rust, GET, 300, 2.0, rng)
    _fill(rust, POST, 10, 80.0, rng)
    _fill(ts, POST, 300, 80.0, rng)
    _fill(ts, GET, 10, 2.0, rng)
    pooled = stratified_slower({"all": rust.all_latencies()}, {"all": ts.all_latencies()})
    assert pooled.p_value is not None and pooled.p_value > 0.5  # pooled: rust looks faster
    rust2, ts2 = BackendEvidence(), BackendEvidence()  # and the other way round
    _fill(rust2, POST, 300, 80.0, rng)
    _fill(rust2, GET, 10, 2.0, rng)
    _fill(ts2, GET, 300, 2.0, rng)
    _fill(ts2, POST, 10, 80.0, rng)
    pooled = stratified_slower({"all": rust2.all_latencies()}, {"all": ts2.all_latencies()})
    assert pooled.p_value is not None and pooled.p_value < 0.001  # the old gate's false alarm
    for r, t in ((rust, ts), (rust2, ts2)):
        verdict = evaluate(PLAN, StepEvidence(r, t), HEALTHY, VRAM)
        latency = next(g for g in verdict.gates if g.name == "latency vs typescript")
        assert latency.status == "pass", latency


def test_a_rust_twice_as_slow_in_every_stratum_fails() -> None:
    rng = random.Random(4)
    rust, ts = BackendEvidence(), BackendEvidence()
    for key, ms in ((GET, 2.0), (POST, 80.0), (stratum("POST", "/p", "yolo"), 40.0)):
        _fill(rust, key, 30, 2 * ms, rng)
        _fill(ts, key, 270, ms, rng)
    verdict = evaluate(PLAN, StepEvidence(rust, ts), HEALTHY, VRAM)
    assert verdict.status == "fail"
    assert verdict.by_severity()[0].name == "latency vs typescript"
    assert verdict.summary().startswith("latency vs typescript p=0.000 over 3 strata")


def test_small_strata_are_skipped_not_compared() -> None:
    result = stratified_slower({GET: [1.0] * 5, POST: [2.0] * 20}, {GET: [9.0] * 50,
                                                                    POST: [2.0] * 20})
    assert result.skipped == (GET,) and [s.key for s in result.strata] == [POST]


def test_a_clean_step_passes_and_too_little_traffic_is_inconclusive() -> None:
    rng = random.Random(5)
    rust, ts = BackendEvidence(), BackendEvidence()
    _fill(rust, POST, 80, 20.0, rng)
    _fill(ts, POST, 720, 25.0, rng, failures=3)
    verdict = evaluate(PLAN, StepEvidence(rust, ts), HEALTHY, VRAM)
    assert verdict.status == "pass", verdict.summary()
    few_rust, few_ts = BackendEvidence(), BackendEvidence()
    _fill(few_rust, POST, 10, 20.0, rng)
    _fill(few_ts, POST, 90, 25.0, rng)
    verdict = evaluate(PLAN, StepEvidence(few_rust, few_ts), HEALTHY, VRAM)
    assert verdict.status == "inconclusive"  # never "pass" with an inconclusive gate
    first = verdict.by_severity()[0]
    assert first.status == "inconclusive" and verdict.summary().startswith(first.name)
    assert "10/10" not in verdict.summary() and "0/10" in verdict.summary()


def test_three_failures_in_ten_against_a_clean_typescript_fail_the_step() -> None:
    rng = random.Random(6)
    rust, ts = BackendEvidence(), BackendEvidence()
    _fill(rust, POST, 7, 20.0, rng)
    rust.record(POST, "timeout")
    rust.record(POST, "error", retried=True)
    rust.record(POST, "error")
    _fill(ts, POST, 100, 20.0, rng)
    verdict = evaluate(PLAN, StepEvidence(rust, ts), HEALTHY, VRAM)
    gate = verdict.by_severity()[0]
    assert verdict.status == "fail" and gate.name == "rust error rate"
    assert gate.value == "3/10 (30.0%), 1 timed out, 1 retried vs typescript 0/100 (0.0%)"
    assert "more often than typescript" in gate.detail
    assert verdict.to_dict()["gates"][0]["status"] == "fail"


def test_at_full_rust_the_last_steps_typescript_is_the_reference() -> None:
    rng = random.Random(7)
    baseline = BackendEvidence()
    _fill(baseline, POST, 500, 20.0, rng)
    rust = BackendEvidence()
    _fill(rust, POST, 200, 20.0, rng, failures=30)  # 13%: below the ceiling, far above ts
    verdict = evaluate(PLAN, StepEvidence(rust, BackendEvidence()), HEALTHY, VRAM, baseline)
    gate = verdict.gates[0]
    assert gate.status == "fail" and "typescript (last step) 0/500" in gate.value


def test_health_vram_and_p95_gates_still_apply() -> None:
    rng = random.Random(8)
    rust, ts = BackendEvidence(), BackendEvidence()
    _fill(rust, POST, 100, 6000.0, rng)
    _fill(ts, POST, 900, 6000.0, rng)
    down = Probe("http://rust/health", False, None, None, error="connection refused")
    verdict = evaluate(PLAN, StepEvidence(rust, ts), down, VramReading("rust", 7.8, 8.0, 3))
    statuses = {g.name: g.status for g in verdict.gates}
    assert statuses == {"rust error rate": "pass", "latency vs typescript": "pass",
                        "rust p95": "fail", "rust health": "fail", "rust VRAM": "fail"}
    assert [g.status for g in verdict.by_severity()][:3] == ["fail"] * 3
    fast, ts_fast = BackendEvidence(), BackendEvidence()
    _fill(fast, POST, 100, 20.0, rng)
    _fill(ts_fast, POST, 900, 20.0, rng)
    unread = evaluate(PLAN, StepEvidence(fast, ts_fast), HEALTHY, None)
    assert unread.status == "inconclusive" and unread.summary().startswith("rust VRAM")


def test_gate_texts_compare_like_with_like() -> None:
    """Issue 20 item 7: "P(rust slower)=0.84 (fail if rust slower at 98%)" set an effect size
    against a confidence; "no answer within 1s (healthy) fail" read as healthy."""
    rng = random.Random(5)
    step = StepEvidence()
    _fill(step.rust, POST, 200, 20.0, rng)
    _fill(step.typescript, POST, 200, 10.0, rng)
    hung = Probe("http://rust/health", False, None, None, error="no answer within 1s")
    verdict = evaluate(PLAN, step, hung, VRAM)
    latency = next(g for g in verdict.gates if g.name == "latency vs typescript")
    assert latency.status == "fail"
    assert latency.value.startswith("p=") and "fail if p < 0.02" in latency.threshold
    assert "P(rust slower)" not in latency.value and "% of pairs (50% = alike)" in latency.value
    health = next(g for g in verdict.gates if g.name == "rust health")
    assert "healthy" not in f"{health.value} ({health.threshold})"
    assert "rust health no answer within 1s (fail unless" in verdict.summary()


def test_a_second_of_the_bake_with_the_proxy_down_fails() -> None:
    assert proxy_gate(0.9) is None
    gate = proxy_gate(1.5)
    assert gate is not None and gate.status == "fail" and "1.5s" in gate.value
