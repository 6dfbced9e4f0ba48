"""The gates a migration step must pass, each with its live value and threshold.

Inputs are plain data (a step's counts and latencies, a health probe, a VRAM reading), so the
CLI, the TUI's timeline and tests all see the same numbers that decided. The evidence is a
small serialisable record (`StepEvidence`), so a step's counts survive pause and resume in
migration.json.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from vrm_tui.core.stats import mann_whitney_greater, percentile
from vrm_tui.migrate.plan import Plan
from vrm_tui.migrate.sequential import (
    Counts,
    ErrorRateResult,
    above_evalue,
    below_evalue,
    error_rate_test,
)
from vrm_tui.telemetry.backend_metrics import VramReading
from vrm_tui.telemetry.health import Probe

Status = Literal["pass", "warn", "inconclusive", "fail"]
Outcome = Literal["ok", "error", "timeout"]
ORDER: dict[str, int] = {"pass": 0, "warn": 1, "inconclusive": 2, "fail": 3}
MAX_STRATUM_SAMPLES = 2000  # latencies kept per stratum and backend: the most recent
STRATUM_MIN = 8  # per side; below this the normal approximation of U is poor
P95_MIN_SAMPLES = 20  # a p95 of fewer samples is just the slowest one


# --- evidence ------------------------------------------------------------------------------

def attempt_outcome(upstream_status: str) -> Outcome:
    """One upstream attempt as the gates count it. A hung backend must count: nginx logs 504
    when it gave up at its upstream timeout and `-` when no response came at all; both are
    timeouts. Any other 5xx or unreadable status is an error."""
    status = upstream_status.strip()
    if status in ("504", "-"):
        return "timeout"
    if not status.isdigit() or int(status) >= 500:
        return "error"
    return "ok"


def stratum(method: str, path: str, task: str = "") -> str:
    """The key latencies are compared within: request line and task type (e.g. the model).
    A GET of metrics and a POST of an image differ by orders of magnitude, so comparing
    backends across them measures the traffic mix, not the backend."""
    route = path.split("?", 1)[0]
    return f"{method.upper()} {route}" + (f" {task}" if task else "")


@dataclass
class BackendEvidence:
    """What one backend did during a step: counts, and latencies of its successful attempts
    by stratum (the most recent MAX_STRATUM_SAMPLES of each)."""

    attempts: int = 0
    failures: int = 0  # errors and timeouts
    timeouts: int = 0
    retried: int = 0  # failures nginx retried on the other backend: the client never saw them
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def record(self, key: str, outcome: Outcome, latency_ms: float | None = None,
               retried: bool = False) -> None:
        self.attempts += 1
        if outcome != "ok":
            self.failures += 1
            self.timeouts += int(outcome == "timeout")
            self.retried += int(retried)
            return
        if latency_ms is not None and math.isfinite(latency_ms):
            samples = self.latencies.setdefault(key, [])
            samples.append(latency_ms)
            if len(samples) > MAX_STRATUM_SAMPLES:
                del samples[: len(samples) - MAX_STRATUM_SAMPLES]

    @property
    def counts(self) -> Counts:
        return Counts(self.attempts, self.failures)

    def all_latencies(self) -> list[float]:
        return [value for samples in self.latencies.values() for value in samples]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackendEvidence:
        """Read back what to_dict wrote; a malformed record raises ValueError."""
        try:
            out = cls(int(data["attempts"]), int(data["failures"]), int(data["timeouts"]),
                      int(data["retried"]),
                      {str(k): [float(v) for v in vs] for k, vs in data["latencies"].items()})
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"step evidence: {exc!r}") from None
        if not 0 <= out.timeouts <= out.failures <= out.attempts or out.retried > out.failures:
            raise ValueError(f"step evidence: inconsistent counts {data!r}"[:200])
        return out


@dataclass
class StepEvidence:
    """Everything the gates judge for one step, kept across pause/resume."""

    rust: BackendEvidence = field(default_factory=BackendEvidence)
    typescript: BackendEvidence = field(default_factory=BackendEvidence)

    def backend(self, name: str) -> BackendEvidence:
        if name == "rust":
            return self.rust
        if name == "typescript":
            return self.typescript
        raise ValueError(f"backend={name!r}: expected rust or typescript")

    def to_dict(self) -> dict[str, Any]:
        return {"rust": self.rust.to_dict(), "typescript": self.typescript.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepEvidence:
        return cls(BackendEvidence.from_dict(data["rust"]),
                   BackendEvidence.from_dict(data["typescript"]))


# --- stratified latency ----------------------------------------------------------------------

@dataclass(frozen=True)
class StratumTest:
    key: str
    rust_n: int
    typescript_n: int
    z: float
    effect: float  # P(a rust sample is slower than a typescript one) in this stratum


@dataclass(frozen=True)
class StratifiedResult:
    """Rust vs typescript latency, compared only within strata and then combined."""

    p_value: float | None  # None when no stratum has enough samples on both sides
    z: float | None
    strata: tuple[StratumTest, ...]
    skipped: tuple[str, ...]  # strata too small to compare
    rust_n: int  # samples in the compared strata
    typescript_n: int


def stratified_slower(rust: dict[str, list[float]], typescript: dict[str, list[float]],
                      min_per_side: int = STRATUM_MIN) -> StratifiedResult:
    """One-sided test that rust is slower, stratum by stratum (van Elteren's approach).

    Each stratum gets its own Mann-Whitney z, so how the balancer happened to spread request
    types between the backends cannot make either look slower. The z values are combined
    by Stouffer's weighted sum with w = sqrt(n_r * n_t / (n_r + n_t + 1)): proportional to
    the standard deviation of the stratum's rank sum divided by (N + 1), which is exactly
    van Elteren's stratified Wilcoxon statistic, the locally most powerful rank test for a
    shift that is the same in every stratum. Large strata weigh more, yet a small stratum
    that is much slower still counts, and a uniform 2x slowdown adds up across strata."""
    tests: list[StratumTest] = []
    skipped: list[str] = []
    for key in sorted(set(rust) | set(typescript)):
        r, t = rust.get(key, []), typescript.get(key, [])
        if len(r) < min_per_side or len(t) < min_per_side:
            skipped.append(key)
            continue
        test = mann_whitney_greater(r, t)
        assert test is not None  # both sides are non-empty
        tests.append(StratumTest(key, len(r), len(t), test.z, test.effect))
    if not tests:
        return StratifiedResult(None, None, (), tuple(skipped), 0, 0)
    weights = [math.sqrt(s.rust_n * s.typescript_n / (s.rust_n + s.typescript_n + 1))
               for s in tests]
    z = sum(w * s.z for w, s in zip(weights, tests, strict=True)) / math.sqrt(
        sum(w * w for w in weights))
    return StratifiedResult(0.5 * math.erfc(z / math.sqrt(2)), z, tuple(tests),
                            tuple(skipped), sum(s.rust_n for s in tests),
                            sum(s.typescript_n for s in tests))


# --- the verdict -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Gate:
    name: str
    status: Status
    value: str
    threshold: str
    detail: str = ""  # one line on why, for the journal and `vrm migrate status`


@dataclass(frozen=True)
class Verdict:
    """The step's gates in a fixed order; `status` is the worst of them, so a step with an
    inconclusive gate is never "pass"."""

    status: Status
    gates: tuple[Gate, ...]

    def by_severity(self) -> tuple[Gate, ...]:
        """Failing gates first, then inconclusive, warn, pass (stable within each)."""
        return tuple(sorted(self.gates, key=lambda g: -ORDER[g.status]))

    def summary(self) -> str:
        return "; ".join(f"{g.name} {g.value} ({g.threshold}) {g.status}"
                         for g in self.by_severity())

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "gates": [asdict(g) for g in self.gates]}


def _reference(current: BackendEvidence, baseline: BackendEvidence | None,
               min_samples: int) -> tuple[BackendEvidence, str]:
    """Typescript to compare against: this step's, or the last step's when typescript gets
    too little traffic now (rust at 100%)."""
    if current.attempts >= min_samples or baseline is None \
            or baseline.attempts <= current.attempts:
        return current, "typescript"
    return baseline, "typescript (last step)"


def _error_gate(plan: Plan, rust: BackendEvidence, ts: BackendEvidence,
                ts_label: str) -> tuple[Gate, ErrorRateResult]:
    g = plan.gates
    result = error_rate_test(rust.counts, ts.counts, ceiling=g.error_rate_fail,
                             confidence=g.error_confidence, min_attempts=plan.min_samples,
                             margin=g.error_rate_margin)
    status: Status = result.decision
    rate = result.rust.rate
    if status == "pass" and rate is not None and rate > g.error_rate_warn:
        status = "warn"
    extra = "".join(f", {n} {what}" for n, what in ((rust.timeouts, "timed out"),
                                                    (rust.retried, "retried")) if n)
    value = f"{result.rust}{extra} vs {ts_label} {result.typescript}"
    if status == "inconclusive" and rust.attempts < plan.min_samples:
        value += f", need {plan.min_samples}"
    margin = f" +{100 * g.error_rate_margin:g} pts" if g.error_rate_margin else ""
    threshold = (f"fail if above typescript{margin} or {100 * g.error_rate_fail:g}% at "
                 f"{100 * g.error_confidence:g}%; warn >{100 * g.error_rate_warn:g}%")
    return Gate("rust error rate", status, value, threshold, result.explanation), result


def _latency_gate(plan: Plan, rust: BackendEvidence, ts: BackendEvidence,
                  ts_label: str) -> Gate:
    conf = plan.gates.latency_confidence
    # The value and the threshold in one unit (p against 1 - confidence); the effect size
    # is said apart, in words: "P(rust slower)=0.84 (fail if rust slower at 98%)" read as
    # 84% against 98%.
    threshold = (f"fail if p < {1 - conf:g} (rust slower at {100 * conf:g}% confidence), "
                 "per route/method/task")
    test = stratified_slower(rust.latencies, ts.latencies)
    n = plan.min_samples
    if test.p_value is None or test.rust_n < n or test.typescript_n < n:
        return Gate("latency vs typescript", "inconclusive",
                    f"{test.rust_n} rust / {test.typescript_n} {ts_label} samples in "
                    f"{len(test.strata)} comparable strata", f"need {n} each; {threshold}")
    worst = max(test.strata, key=lambda s: s.effect)
    skipped = f", {len(test.skipped)} small strata skipped" if test.skipped else ""
    status: Status = "fail" if test.p_value < 1 - conf else "pass"
    return Gate("latency vs typescript", status,
                f"p={test.p_value:.3f} over {len(test.strata)} strata{skipped}; worst "
                f"{worst.key}: rust slower in {100 * worst.effect:.0f}% of pairs "
                "(50% = alike)", threshold)


def _health_gate(health: Probe) -> Gate:
    """rust's health probe. The threshold says what fails, so a failure never reads as
    "no answer within 1s (healthy) fail"."""
    return Gate("rust health", "pass" if health.healthy else "fail",
                "answers" if health.healthy else (health.error or "unhealthy"),
                "fail unless its health check answers ok")


def evaluate(plan: Plan, evidence: StepEvidence, health: Probe, vram: VramReading | None,
             baseline: BackendEvidence | None = None) -> Verdict:
    """Judge one step from everything rust and typescript did since it began.

    Cheap enough to call on every new sample: the error-rate test is sequential (valid
    however often it is evaluated), so a fault shows as soon as the counts allow. `baseline`
    is the previous step's typescript evidence, used when typescript now has too little
    traffic to compare against."""
    g = plan.gates
    rust = evidence.rust
    ts, ts_label = _reference(evidence.typescript, baseline, plan.min_samples)
    gates = [_error_gate(plan, rust, ts, ts_label)[0], _latency_gate(plan, rust, ts, ts_label)]
    latencies = rust.all_latencies()
    p95 = percentile(latencies, 0.95)
    if p95 is None or len(latencies) < P95_MIN_SAMPLES:
        gates.append(Gate("rust p95", "inconclusive", f"{len(latencies)} samples",
                          f"<= {g.p95_ceiling_ms:g} ms; need {P95_MIN_SAMPLES}"))
    else:
        gates.append(Gate("rust p95", "fail" if p95 > g.p95_ceiling_ms else "pass",
                          f"{p95:.1f} ms", f"<= {g.p95_ceiling_ms:g} ms"))
    gates.append(_health_gate(health))
    if vram is not None and not vram.reported:
        # n/a: rust does not offer the seed's VRAM gauge (a convention it need not follow);
        # waiting for a reading that can never come would hold the migration forever.
        gates.append(Gate("rust VRAM", "pass", f"n/a: {vram.error}", "readable when offered"))
    elif vram is None or vram.used_gb is None or not vram.limit_gb:
        gates.append(Gate("rust VRAM", "inconclusive",
                          vram.error if vram and vram.error else "no reading", "readable"))
    else:
        share = vram.used_gb / vram.limit_gb
        gates.append(Gate("rust VRAM", "fail" if share >= g.vram_fraction_fail else "pass",
                          f"{vram.used_gb:.1f}/{vram.limit_gb:g} GB ({100 * share:.0f}%)",
                          f"< {100 * g.vram_fraction_fail:g}% of MAX_VRAM_GB"))
    worst = max(gates, key=lambda gate: ORDER[gate.status]).status
    return Verdict(worst, tuple(gates))


def parity_gate(plan: Plan, now: Mapping[str, Any], base: Any = None) -> Gate:
    """Does rust answer like typescript on every route? Each route (method and route, e.g.
    `POST /api/v1/vision/process`) is judged on its own mismatch rate since the step began
    (noise between two typescript answers already removed), by the same sequential rule as
    the error rate: valid however often it is looked at. Pooled, a 5% divergence on one route
    read as 2% beside the metrics GETs and the gate stayed inconclusive. The step fails when
    any route fails and passes when every compared route passes; each route's evidence must
    reach the threshold times the number of routes, so a healthy step false-alarms no more
    often with many routes than with one. `now` and `base` are `ParityReport.gate_counts()`
    now and at the step's start (an older list base counts everything)."""
    g = plan.gates
    ceiling = g.parity_mismatch_fail
    old = base if isinstance(base, Mapping) else {}
    old_routes = old.get("routes", {})
    routes: dict[str, Counts] = {}
    for route, (compared, mismatched) in sorted(now.get("routes", {}).items()):
        was = old_routes.get(route, (0, 0))
        c = max(0, compared - was[0])
        if c:
            routes[route] = Counts(c, min(c, max(0, mismatched - was[1])))
    unanswered = max(0, int(now.get("unanswered", 0)) - int(old.get("unanswered", 0)))
    threshold = max(1, len(routes)) / (1 - g.error_confidence)
    judged: list[tuple[int, str, Counts, Status]] = []
    for route, counts in routes.items():
        status: Status = "inconclusive"
        if above_evalue(counts, ceiling) >= threshold:
            status = "fail"
        elif counts.attempts >= plan.min_samples and below_evalue(counts, ceiling) >= threshold:
            status = "pass"
        judged.append((ORDER[status], route, counts, status))
    overall: Status = "inconclusive"
    if any(s == "fail" for *_, s in judged):
        overall = "fail"
    elif judged and all(s == "pass" for *_, s in judged):
        overall = "pass"
    extra = f", {unanswered} unanswered" if unanswered else ""
    if judged:
        # the route that decides: a failing one, else one not yet passed; the worst rate,
        # then the least evidence, first
        _, route, counts, shown = max(
            judged, key=lambda j: (j[0], j[2].failures / j[2].attempts, -j[2].attempts))
        need = (f", need {plan.min_samples}" if shown == "inconclusive"
                and counts.attempts < plan.min_samples else "")
        value = f"{route} {counts}{need}" + (f"; {len(judged)} routes" if len(judged) > 1
                                              else "") + extra
    else:
        value = f"nothing compared yet, need {plan.min_samples} per route{extra}"
    return Gate("rust answers like typescript", overall, value,
                f"fail if any route's mismatches above {100 * ceiling:g}% at "
                f"{100 * g.error_confidence:g}%")


PROXY_DOWN_FAIL_S = 1.0
"""A step whose bake saw the proxy unreachable this long fails: it never passes an outage."""


def proxy_gate(down_s: float) -> Gate | None:
    """A failing gate when the proxy was down for a second or more of this step's bake
    (nothing was measured meanwhile, so the step cannot have passed); None otherwise."""
    if down_s < PROXY_DOWN_FAIL_S:
        return None
    return Gate("proxy up", "fail", f"unreachable {down_s:.1f}s of the bake",
                f"fail if unreachable >= {PROXY_DOWN_FAIL_S:g}s")


def shadow_verdict(plan: Plan, parity: Gate, health: Probe) -> Verdict:
    """A shadow step: rust serves nobody, so only parity and rust's health are judged."""
    gates = (parity, _health_gate(health))
    worst = max(gates, key=lambda gate: ORDER[gate.status]).status
    return Verdict(worst, gates)
