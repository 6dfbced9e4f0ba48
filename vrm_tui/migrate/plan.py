"""A migration plan: the steps, how long each bakes, and the gates' thresholds.

A plan is validated whole before any traffic moves: a value the gates would trip over in the
middle of a bake (a string for a number, NaN, a negative count, `steps: [true]`) is refused
up front with one line naming the file and the field. The same parsers read `vrm migrate`
flags, so `--bake 5m` and `bake_seconds: 5m` mean the same and `--bake inf` is refused alike.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from vrm_tui.core import yamlfile
from vrm_tui.core.errors import PlanError
from vrm_tui.core.paths import CONFIGS

SHADOW = 0
"""The shadow step, as stored in `Plan.steps`: rust serves nothing while parity bakes."""
DEFAULT_PLAN = CONFIGS / "migration.yaml"
MAX_DURATION_S = 7 * 24 * 3600.0  # a bake longer than a week is a typo, not a plan
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smh]?)", re.ASCII)  # not `٥٠`
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Thresholds:
    error_rate_warn: float = 0.05
    error_rate_fail: float = 0.15
    error_confidence: float = 0.99
    error_rate_margin: float = 0.0
    latency_confidence: float = 0.98
    p95_ceiling_ms: float = 5000.0
    vram_fraction_fail: float = 0.90
    parity_mismatch_fail: float = 0.01  # rust answers differently from typescript this often


@dataclass(frozen=True)
class Plan:
    steps: tuple[int, ...] = (10, 50, 100)
    bake_seconds: float = 300.0
    gate_interval_seconds: float = 10.0
    min_samples: int = 50
    gates: Thresholds = field(default_factory=Thresholds)
    parity_sample: float = 10.0  # percent mirrored when the migration switches parity on

    @property
    def shadow(self) -> bool:
        """The plan starts with a shadow step: rust serves nothing, parity bakes."""
        return bool(self.steps) and self.steps[0] == SHADOW

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = ["shadow" if step == SHADOW else step for step in self.steps]
        return data

    @classmethod
    def from_dict(cls, data: object, source: str = "saved plan") -> Plan:
        """A plan from plain data (a YAML file, migration.json), checked like a plan file."""
        return _parse(data, source)


# --- single values -------------------------------------------------------------------------

def _finite(value: object) -> float | None:
    """A finite number as a float; None for bools, strings, NaN, inf and 400-digit ints."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except OverflowError:
        return None
    return x if math.isfinite(x) else None


def parse_duration(value: object, name: str) -> float:
    """Seconds from a number or a string like `90`, `30s`, `5m`, `1h`; finite, above 0."""
    seconds = _finite(value)
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match:
            seconds = _finite(float(match.group(1)) * _UNIT_S[match.group(2)])
    if seconds is None or not 0 < seconds <= MAX_DURATION_S:
        raise PlanError(f"{name}={_show(value)}: expected seconds above 0 (at most a week), "
                        "or a duration like 30s, 5m, 1h")
    return seconds


def parse_steps(value: object, name: str) -> tuple[int, ...]:
    """Rust weights: a list of whole numbers (or `10,50,100` from a flag), strictly
    increasing, each from 1 to 100; `shadow` may come first (rust 0 while parity bakes)."""
    items: list[object]
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",")]
        # At most 18 digits: past 4300 int() raises ValueError instead of refusing it.
        if not all(re.fullmatch(r"[0-9]{1,18}|shadow", part) for part in parts):
            raise PlanError(f"{name}={_show(value)}: expected whole numbers like 10,50,100 "
                            "(shadow may come first)")
        items = [part if part == "shadow" else int(part) for part in parts]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise PlanError(f"{name}={_show(value)}: expected a list of rust weights like "
                        "[10, 50, 100]")
    if not items:
        raise PlanError(f"{name}: expected at least one rust weight")
    shadow = items[0] == "shadow"
    if shadow:
        items = items[1:]
        if not items:
            raise PlanError(f"{name}: a shadow step must be followed by rust weights")
    weights: list[int] = []
    for item in items:
        if not isinstance(item, int) or isinstance(item, bool) or not 1 <= item <= 100:
            raise PlanError(f"{name}: {_show(item)} is not a rust weight (a whole number 1 to 100)")
        weights.append(item)
    if any(b <= a for a, b in itertools.pairwise(weights)):
        raise PlanError(f"{name}={weights}: expected strictly increasing weights")
    return (SHADOW, *weights) if shadow else tuple(weights)


def _number(value: object, name: str, low: float, high: float, *, low_open: bool = False,
            high_open: bool = False, what: str = "a number") -> float:
    x = _finite(value)
    if x is None or not ((low < x if low_open else low <= x)
                         and (x < high if high_open else x <= high)):
        lo = f"above {low:g}" if low_open else f"at least {low:g}"
        hi = "" if high == math.inf else (f" and below {high:g}" if high_open
                                          else f" and at most {high:g}")
        raise PlanError(f"{name}={_show(value)}: expected {what} {lo}{hi}")
    return x


def _show(value: object) -> str:
    """The value as the user wrote it, cut short so the error stays one line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _count(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PlanError(f"{name}={_show(value)}: expected a whole number, 1 or more")
    return value


# --- whole plans ---------------------------------------------------------------------------

_PLAN_KEYS = {f.name for f in fields(Plan)}
_GATE_KEYS = {f.name for f in fields(Thresholds)}


def _mapping(value: object, name: str, known: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PlanError(f"{name}: expected a mapping of settings, got {_show(value)}")
    for key in value:
        if key not in known:
            hint = " (it belongs under gates:)" if key in _GATE_KEYS else ""
            raise PlanError(f"{name}: unknown setting {_show(key)}{hint}; known: "
                            f"{', '.join(sorted(known))}")
    return value


def _parse(data: object, source: str) -> Plan:
    top = _mapping(data, source, _PLAN_KEYS)
    default = Plan()
    steps = parse_steps(top["steps"], f"{source}: steps") if "steps" in top else default.steps
    bake = (parse_duration(top["bake_seconds"], f"{source}: bake_seconds")
            if "bake_seconds" in top else default.bake_seconds)
    interval = (parse_duration(top["gate_interval_seconds"], f"{source}: gate_interval_seconds")
                if "gate_interval_seconds" in top else default.gate_interval_seconds)
    samples = (_count(top["min_samples"], f"{source}: min_samples")
               if "min_samples" in top else default.min_samples)
    parity = (_number(top["parity_sample"], f"{source}: parity_sample", 0, 100, low_open=True,
                      what="a percent")
              if "parity_sample" in top else default.parity_sample)
    raw_gates = top.get("gates")
    gate_data = _mapping({} if raw_gates is None else raw_gates, f"{source}: gates", _GATE_KEYS)
    g = f"{source}: gates."
    values: dict[str, float] = {}
    for key, check in _GATE_CHECKS.items():
        if key in gate_data:
            values[key] = check(gate_data[key], g + key)
    return _checked(Plan(steps, bake, interval, samples, Thresholds(**values), parity), source)


_GATE_CHECKS: dict[str, Callable[[object, str], float]] = {
    "error_rate_warn": lambda v, n: _number(v, n, 0, 1, what="a fraction"),
    "error_rate_fail": lambda v, n: _number(v, n, 0, 1, low_open=True, what="a fraction"),
    "error_confidence": lambda v, n: _number(v, n, 0.5, 1, low_open=True, high_open=True),
    "error_rate_margin": lambda v, n: _number(v, n, 0, 1, high_open=True, what="a fraction"),
    "latency_confidence": lambda v, n: _number(v, n, 0.5, 1, low_open=True, high_open=True),
    "p95_ceiling_ms": lambda v, n: _number(v, n, 0, math.inf, low_open=True,
                                           what="milliseconds"),
    "vram_fraction_fail": lambda v, n: _number(v, n, 0, 1, low_open=True, what="a fraction"),
    "parity_mismatch_fail": lambda v, n: _number(v, n, 0, 1, low_open=True, what="a fraction"),
}


def _checked(plan: Plan, source: str) -> Plan:
    """Rules between fields, after each field is right on its own."""
    if plan.gate_interval_seconds > plan.bake_seconds:
        raise PlanError(f"{source}: gate_interval_seconds={plan.gate_interval_seconds:g}: "
                        f"expected at most the bake ({plan.bake_seconds:g}s)")
    g = plan.gates
    if g.error_rate_warn > g.error_rate_fail:
        raise PlanError(f"{source}: gates.error_rate_warn={g.error_rate_warn:g}: expected at "
                        f"most gates.error_rate_fail ({g.error_rate_fail:g})")
    return plan


class _UniqueKeyLoader(yamlfile.Loader):  # a 5000-digit min_samples: an error with a line
    """safe_load that refuses a key given twice (YAML keeps the last one silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode,
                    deep: bool = False) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"setting {key!r} given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _unique_mapping)


def load(path: Path = DEFAULT_PLAN, steps: str | None = None,
         bake: float | str | None = None, gate_interval: float | str | None = None) -> Plan:
    """The plan file with command-line overrides (`--steps 10,50 --bake 5m --gate-interval
    10s`); every problem is a one-line PlanError naming the file or the flag."""
    data = yamlfile.load(path, PlanError, _UniqueKeyLoader)
    plan = _parse({} if data is None else data, str(path))
    if steps is not None:
        plan = replace(plan, steps=parse_steps(steps, "--steps"))
    if bake is not None:
        plan = replace(plan, bake_seconds=parse_duration(bake, "--bake"))
    if gate_interval is not None:
        plan = replace(plan, gate_interval_seconds=parse_duration(gate_interval,
                                                                  "--gate-interval"))
    flags = (steps, bake, gate_interval) != (None, None, None)
    return _checked(plan, f"{path} with the flags" if flags else str(path))
