"""A migration plan: the steps, how long each bakes, and the gates' thresholds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from vrm_tui.core.errors import BadInput
from vrm_tui.core.split import SplitError, parse_weight

DEFAULT_PLAN = Path(__file__).resolve().parents[2] / "configs" / "migration.yaml"


class PlanError(BadInput):
    """A plan vrm cannot run; the message names the setting."""


@dataclass(frozen=True)
class Thresholds:
    error_rate_warn: float = 0.05
    error_rate_fail: float = 0.15
    latency_confidence: float = 0.98
    p95_ceiling_ms: float = 5000.0
    vram_fraction_fail: float = 0.90


@dataclass(frozen=True)
class Plan:
    steps: tuple[int, ...] = (10, 50, 100)
    bake_seconds: float = 300.0
    gate_interval_seconds: float = 10.0
    min_samples: int = 50
    gates: Thresholds = field(default_factory=Thresholds)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = list(self.steps)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return _checked(cls(steps=tuple(data["steps"]), bake_seconds=data["bake_seconds"],
                            gate_interval_seconds=data["gate_interval_seconds"],
                            min_samples=data["min_samples"],
                            gates=Thresholds(**data.get("gates", {}))), "saved plan")


def load(path: Path = DEFAULT_PLAN, steps: str | None = None, bake: float | None = None,
         gate_interval: float | None = None) -> Plan:
    """The plan file with command-line overrides; every problem is a PlanError."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
        gates = Thresholds(**(data.get("gates") or {}))
        plan = Plan(steps=tuple(data.get("steps", Plan.steps)),
                    bake_seconds=float(data.get("bake_seconds", Plan.bake_seconds)),
                    gate_interval_seconds=float(data.get("gate_interval_seconds",
                                                         Plan.gate_interval_seconds)),
                    min_samples=int(data.get("min_samples", Plan.min_samples)), gates=gates)
    except (OSError, yaml.YAMLError, TypeError, ValueError) as exc:
        raise PlanError(f"{path}: {exc}") from None
    if steps is not None:
        try:
            parsed = tuple(parse_weight(s, "--steps") for s in steps.split(",") if s.strip())
        except SplitError as exc:
            raise PlanError(str(exc)) from None
        plan = replace(plan, steps=parsed)
    if bake is not None:
        plan = replace(plan, bake_seconds=bake)
    if gate_interval is not None:
        plan = replace(plan, gate_interval_seconds=gate_interval)
    return _checked(plan, str(path))


def _checked(plan: Plan, source: str) -> Plan:
    if not plan.steps:
        raise PlanError(f"{source}: steps: expected at least one rust weight")
    for weight in plan.steps:
        if not isinstance(weight, int) or not 1 <= weight <= 100:
            raise PlanError(f"{source}: steps: {weight!r} is not a rust weight from 1 to 100")
    if list(plan.steps) != sorted(set(plan.steps)):
        raise PlanError(f"{source}: steps={list(plan.steps)}: expected increasing weights")
    if not plan.bake_seconds > 0:
        raise PlanError(f"{source}: bake={plan.bake_seconds}: expected seconds above 0")
    if not 0 < plan.gate_interval_seconds <= plan.bake_seconds:
        raise PlanError(f"{source}: gate interval={plan.gate_interval_seconds}: expected "
                        f"seconds above 0 and at most the bake ({plan.bake_seconds})")
    g = plan.gates
    if not 0 <= g.error_rate_warn <= g.error_rate_fail <= 1:
        raise PlanError(f"{source}: gates: expected 0 <= error_rate_warn <= error_rate_fail <= 1")
    if not 0.5 < g.latency_confidence < 1:
        raise PlanError(f"{source}: gates.latency_confidence={g.latency_confidence}: "
                        "expected 0.5 to 1")
    return plan
