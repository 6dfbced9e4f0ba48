"""`configs/parity.yaml`: what is compared, what is noise by decree, and what may be mirrored.

Every problem raises `ParityConfigError` with one line naming the file and the field, because the
CLI prints it as is and exits 2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vrm_tui.core import yamlfile
from vrm_tui.core.errors import ParityConfigError
from vrm_tui.core.paths import CONFIGS
from vrm_tui.parity.diff import (
    TIMESTAMP_TOLERANCE_S,
    ArrayOrder,
    Kind,
    Rules,
    Tolerance,
    make_rules,
    normalize_path,
)

__all__ = ["DEFAULT_PATH", "ParityConfig", "ParityConfigError", "Route", "config_for",
           "load_parity_config"]

DEFAULT_PATH = CONFIGS / "parity.yaml"

TOP_KEYS = {"headers", "ignore", "tolerance", "arrays", "kinds", "timestamp_tolerance", "routes",
            "redact", "mirror", "examples"}
RULE_KEYS = {"headers", "ignore", "tolerance", "arrays", "kinds"}
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


@dataclass(frozen=True, order=True)
class Route:
    """A method and an exact path, written `POST /api/v1/vision/process`."""

    method: str
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class ParityConfig:
    """The checked config. `rules_for` gives an endpoint's rules (global ones plus its own)."""

    rules: Rules
    route_rules: Mapping[Route, Rules] = field(default_factory=dict)
    redact: frozenset[str] = frozenset()
    mirror: tuple[Route, ...] = ()
    examples: int = 50
    source: str = field(default="", compare=False)

    def rules_for(self, method: str, path: str) -> Rules:
        return self.route_rules.get(Route(method.upper(), path), self.rules)

    def mirrored(self, method: str, path: str) -> bool:
        return Route(method.upper(), path) in self.mirror


def config_for(deploy_dir: Path) -> Path:
    """The deployment's own `configs/parity.yaml` when it has one, else vrm's."""
    own = deploy_dir / "configs" / "parity.yaml"
    return own if own.is_file() else DEFAULT_PATH


def load_parity_config(path: Path = DEFAULT_PATH) -> ParityConfig:
    """Read and check a parity config file."""
    data: Any = yamlfile.load(path, ParityConfigError)  # non-UTF-8 too: one line, exit 2
    return parse_parity_config(data if data is not None else {}, str(path))


def parse_parity_config(data: Any, source: str) -> ParityConfig:
    """Check an already-parsed config; `source` names it in messages."""

    def fail(where: str, problem: str) -> ParityConfigError:
        return ParityConfigError(f"{source}: {where}: {problem}")

    if not isinstance(data, dict):
        raise ParityConfigError(f"{source}: expected a mapping at the top level")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown key; known: {', '.join(sorted(TOP_KEYS))}")

    stamp = data.get("timestamp_tolerance", TIMESTAMP_TOLERANCE_S)
    if (isinstance(stamp, bool) or not isinstance(stamp, int | float) or not math.isfinite(stamp)
            or not 0 <= stamp <= 86400):
        raise fail("timestamp_tolerance", f"{stamp!r}: expected seconds, 0 to 86400")
    base = _rules_spec(data, "", fail)
    base["timestamp_tolerance"] = float(stamp)
    rules = _build(base, "", fail)
    route_rules: dict[Route, Rules] = {}
    routes = data.get("routes") or {}
    if not isinstance(routes, dict):
        raise fail("routes", "expected a mapping of 'METHOD /path' to rules")
    for name, spec in routes.items():
        route = _route(name, f"routes.{name}", fail)
        if not isinstance(spec, dict):
            raise fail(f"routes.{name}",
                       "expected a mapping with ignore/tolerance/arrays/kinds/headers")
        extra = set(spec) - RULE_KEYS
        if extra:
            raise fail(f"routes.{name}.{sorted(extra)[0]}",
                       f"unknown key; known: {', '.join(sorted(RULE_KEYS))}")
        own = _rules_spec(spec, f"routes.{name}.", fail)
        merged = {
            "ignore": base["ignore"] + own["ignore"],
            "tolerance": {**base["tolerance"], **own["tolerance"]},
            "arrays": {**base["arrays"], **own["arrays"]},
            "headers": base["headers"] + own["headers"],
            "kinds": {**base["kinds"], **own["kinds"]},
            "timestamp_tolerance": base["timestamp_tolerance"],
        }
        route_rules[route] = _build(merged, f"routes.{name}.", fail)

    redact = frozenset(_paths(data.get("redact", []), "redact", fail))

    mirror_spec = data.get("mirror") or {}
    if isinstance(mirror_spec, dict) and "side_effect_free" in mirror_spec:
        raise fail("mirror.side_effect_free", "moved to configs/routes.yaml (safe_to_repeat): "
                   "one declaration for nginx's retries, parity's replays and benchmarks")
    if not isinstance(mirror_spec, dict) or set(mirror_spec) - {"routes"}:
        raise fail("mirror", "expected a mapping with routes")
    mirror = tuple(_route(r, f"mirror.routes[{i}]", fail)
                   for i, r in enumerate(_list(mirror_spec.get("routes", []), "mirror.routes",
                                               fail)))

    examples = data.get("examples", 50)
    if isinstance(examples, bool) or not isinstance(examples, int) or not 0 <= examples <= 10000:
        raise fail("examples", f"{examples!r}: expected a whole number 0 to 10000")
    return ParityConfig(rules=rules, route_rules=route_rules, redact=redact, mirror=mirror,
                        examples=examples, source=source)


def _list(value: Any, where: str, fail: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(where, f"{value!r}: expected a list")
    return value


def _paths(value: Any, where: str, fail: Any) -> list[str]:
    out = []
    for i, item in enumerate(_list(value, where, fail)):
        if not isinstance(item, str):
            raise fail(f"{where}[{i}]", f"{item!r}: expected a path such as $.request_id")
        try:
            out.append(normalize_path(item))
        except ValueError as exc:
            raise fail(f"{where}[{i}]", str(exc)) from None
    return out


def _path_key(key: Any, where: str, fail: Any) -> str:
    if not isinstance(key, str):
        raise fail(where, f"{key!r}: expected a path such as $.detections[*].confidence")
    try:
        path = normalize_path(key)
    except ValueError as exc:
        raise fail(where, str(exc)) from None
    if not path.startswith("$") or path.startswith("$.."):
        raise fail(where, f"{key!r}: expected a body path such as $.detections[*].confidence")
    return path


def _rules_spec(data: dict[str, Any], prefix: str, fail: Any) -> dict[str, Any]:
    """The rule fields of one mapping, checked but not yet merged."""
    headers = []
    for i, name in enumerate(_list(data.get("headers", []), f"{prefix}headers", fail)):
        if not isinstance(name, str):
            raise fail(f"{prefix}headers[{i}]", f"{name!r}: expected a header name")
        try:
            headers.append(normalize_path("header:" + name)[len("header:"):])
        except ValueError as exc:
            raise fail(f"{prefix}headers[{i}]", str(exc)) from None

    tolerance: dict[str, Tolerance] = {}
    spec = data.get("tolerance") or {}
    if not isinstance(spec, dict):
        raise fail(f"{prefix}tolerance", "expected a mapping of path to {abs, rel}")
    for key, value in spec.items():
        where = f"{prefix}tolerance.{key}"
        path = _path_key(key, where, fail)
        if not isinstance(value, dict) or not value or set(value) - {"abs", "rel"}:
            raise fail(where, f"{value!r}: expected {{abs: N, rel: N}} (either or both)")
        numbers = {}
        for name, number in value.items():
            if (isinstance(number, bool) or not isinstance(number, int | float)
                    or not math.isfinite(number) or number < 0):
                raise fail(f"{where}.{name}", f"{number!r}: expected a number >= 0")
            numbers[name] = float(number)
        tolerance[path] = Tolerance(**numbers)

    arrays: dict[str, ArrayOrder] = {}
    spec = data.get("arrays") or {}
    if not isinstance(spec, dict):
        raise fail(f"{prefix}arrays", "expected a mapping of path to ordered, set or {sort_by}")
    for key, value in spec.items():
        where = f"{prefix}arrays.{key}"
        path = _path_key(key, where, fail)
        if value in ("ordered", "set"):
            arrays[path] = ArrayOrder(value)
        elif (isinstance(value, dict) and set(value) == {"sort_by"}
              and isinstance(value["sort_by"], str) and value["sort_by"]):
            arrays[path] = ArrayOrder("sort_by", value["sort_by"])
        else:
            raise fail(where, f"{value!r}: expected ordered, set or {{sort_by: KEY}}")

    kinds: dict[str, Kind] = {}
    spec = data.get("kinds") or {}
    if not isinstance(spec, dict):
        raise fail(f"{prefix}kinds", "expected a mapping of path to " + _KIND_NAMES)
    for key, value in spec.items():
        where = f"{prefix}kinds.{key}"
        path = _path_key(key, where, fail)
        if not isinstance(value, str) or value not in _KINDS:
            raise fail(where, f"{value!r}: expected {_KIND_NAMES}")
        kinds[path] = Kind(value)

    return {"ignore": _paths(data.get("ignore", []), f"{prefix}ignore", fail),
            "tolerance": tolerance, "arrays": arrays, "headers": headers, "kinds": kinds}


_KINDS = {kind.value for kind in Kind}
_KIND_NAMES = ", ".join(kind.value for kind in Kind)


def _build(spec: dict[str, Any], prefix: str, fail: Any) -> Rules:
    try:
        return make_rules(ignore=spec["ignore"], tolerances=spec["tolerance"],
                          arrays=spec["arrays"], headers=spec["headers"], kinds=spec["kinds"],
                          timestamp_tolerance=spec["timestamp_tolerance"])
    except ValueError as exc:  # already checked above; kept so no message escapes unnamed
        raise fail(prefix.rstrip(".") or "rules", str(exc)) from None


def _route(text: Any, where: str, fail: Any) -> Route:
    parts = text.split() if isinstance(text, str) else []
    if len(parts) != 2 or parts[0].upper() not in METHODS or not parts[1].startswith("/"):
        raise fail(where, f"{text!r}: expected 'METHOD /path', e.g. 'GET /api/v1/vision/metrics'")
    return Route(parts[0].upper(), parts[1])
