"""The gates a migration step must pass, each with its live value and threshold.

Inputs are plain data (access-log samples, a health probe, a VRAM reading), so the CLI, the
TUI's timeline and tests all see the same numbers that decided.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from vrm_tui.core.stats import mann_whitney_greater, percentile
from vrm_tui.migrate.plan import Plan
from vrm_tui.telemetry.accesslog import Bucket
from vrm_tui.telemetry.backend_metrics import VramReading
from vrm_tui.telemetry.health import Probe

ORDER = {"pass": 0, "warn": 1, "inconclusive": 2, "fail": 3}


@dataclass(frozen=True)
class Gate:
    name: str
    status: str  # pass | warn | fail | inconclusive
    value: str
    threshold: str


@dataclass(frozen=True)
class Verdict:
    status: str
    gates: tuple[Gate, ...]

    def summary(self) -> str:
        return "; ".join(f"{g.name} {g.value} ({g.threshold}) {g.status}" for g in self.gates)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "gates": [asdict(g) for g in self.gates]}


def evaluate(plan: Plan, rust: Bucket, baseline: list[float], health: Probe,
             vram: VramReading | None, recent: Bucket | None = None) -> Verdict:
    """Judge one step from what rust did since the step began, against typescript's latencies
    (`baseline`: this step's, or the last step's when typescript gets no traffic).

    The error rate is judged over the whole step and over `recent` (the last gate interval),
    the worse of the two, so a long healthy bake cannot dilute a failure that starts late."""
    g = plan.gates
    n = plan.min_samples
    gates = []
    windows = [(w, label) for w, label in ((rust, "step"), (recent, "last interval"))
               if w is not None and w.attempts >= n]
    if not windows:
        gates.append(Gate("rust error rate", "inconclusive", f"{rust.attempts} attempts",
                          f"need {n}"))
    else:
        window, label = max(windows, key=lambda item: item[0].errors / item[0].attempts)
        rate = window.errors / window.attempts
        status = "fail" if rate > g.error_rate_fail else (
            "warn" if rate > g.error_rate_warn else "pass")
        hidden = f", {window.retried} retried" if window.retried else ""
        gates.append(Gate("rust error rate", status, f"{100 * rate:.1f}% of "
                          f"{window.attempts} ({label}{hidden})",
                          f"warn >{100 * g.error_rate_warn:g}% fail >{100 * g.error_rate_fail:g}%"))
    if len(rust.latencies) < n or len(baseline) < n:
        gates.append(Gate("latency vs typescript", "inconclusive",
                          f"{len(rust.latencies)} rust / {len(baseline)} typescript samples",
                          f"need {n} each"))
    else:
        test = mann_whitney_greater(rust.latencies, baseline)
        assert test is not None
        alpha = 1 - g.latency_confidence
        gates.append(Gate("latency vs typescript", "fail" if test.p_value < alpha else "pass",
                          f"p={test.p_value:.3f} P(rust slower)={test.effect:.2f}",
                          f"fail if rust slower at {100 * g.latency_confidence:g}%"))
    p95 = percentile(rust.latencies, 0.95)
    if p95 is None:
        gates.append(Gate("rust p95", "inconclusive", "no samples",
                          f"<= {g.p95_ceiling_ms:g} ms"))
    else:
        gates.append(Gate("rust p95", "fail" if p95 > g.p95_ceiling_ms else "pass",
                          f"{p95:.1f} ms", f"<= {g.p95_ceiling_ms:g} ms"))
    gates.append(Gate("rust health", "pass" if health.healthy else "fail",
                      "healthy" if health.healthy else (health.error or "unhealthy"), "healthy"))
    if vram is None or vram.used_gb is None or not vram.limit_gb:
        gates.append(Gate("rust VRAM", "inconclusive",
                          vram.error if vram else "no reading", "readable"))
    else:
        share = vram.used_gb / vram.limit_gb
        gates.append(Gate("rust VRAM", "fail" if share >= g.vram_fraction_fail else "pass",
                          f"{vram.used_gb:.1f}/{vram.limit_gb:g} GB ({100 * share:.0f}%)",
                          f"< {100 * g.vram_fraction_fail:g}% of MAX_VRAM_GB"))
    worst = max(gates, key=lambda gate: ORDER[gate.status]).status
    return Verdict(worst, tuple(gates))
