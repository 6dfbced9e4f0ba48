"""Rehearsal profiles (`configs/rehearsal/*.yaml`): latency, errors, model sizes, and how far
the answers stray from a deterministic function of the request (volatile fields, jitter,
divergence)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vrm_tui.core import yamlfile
from vrm_tui.core.errors import ProfileError
from vrm_tui.rehearsal.answers import DIVERGENCE, VOLATILE


@dataclass(frozen=True)
class Latency:
    """A log-normal latency given by its median and p95, in milliseconds."""

    median: float
    p95: float

    def sample(self, rng: random.Random) -> float:
        sigma = math.log(self.p95 / self.median) / 1.6448536 if self.p95 > self.median else 0.0
        return self.median * math.exp(rng.gauss(0.0, sigma))


@dataclass(frozen=True)
class Model:
    name: str
    size_gb: float
    task: str


@dataclass(frozen=True)
class Profile:
    backend: str
    latency_ms: dict[str, Latency]
    models: dict[str, Model]
    per_megapixel_ms: float = 0.0
    error_rate: float = 0.0
    model_load_ms_per_gb: float = 0.0
    vram_overhead_gb: float = 0.0
    memory_limit_gb: float = 4.0
    volatile_fields: tuple[str, ...] = VOLATILE
    jitter: float = 0.0
    divergence_rate: float = 0.0
    divergence_path: str = "any"
    source: str = field(default="", compare=False)

    def task_latency_ms(self, task: str, megapixels: float, rng: random.Random) -> float:
        base = self.latency_ms.get(task) or self.latency_ms["metrics"]
        return base.sample(rng) + self.per_megapixel_ms * megapixels


def _one_line(text: object, limit: int = 200) -> str:
    """Messages are shown as one line: YAML errors span several."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def load_profile(path: Path) -> Profile:
    """Read and check a profile; every problem is one line that names the file and the key."""
    data: Any = yamlfile.load(path, ProfileError)
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping at the top level")

    def show(value: Any) -> str:
        return _one_line(repr(value), 60)

    def number(key: str, value: Any, low: float = 0.0, high: float = 1e9) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProfileError(f"{path}: {key}={show(value)}: expected a number")
        if not (math.isfinite(value) and low <= value <= high):
            raise ProfileError(f"{path}: {key}={show(value)}: expected {low:g} to {high:g}")
        return float(value)

    def mapping(key: str) -> dict[Any, Any]:
        value = data.get(key) or {}
        if not isinstance(value, dict):
            raise ProfileError(f"{path}: {key}={show(value)}: expected a mapping")
        return value

    latency = {}
    for task, spec in mapping("latency_ms").items():
        task = _one_line(task, 40)
        if not isinstance(spec, dict):
            raise ProfileError(f"{path}: latency_ms.{task}: expected "
                               "{median, p95}")
        median = number(f"latency_ms.{task}.median", spec.get("median"), 0.001)
        p95 = number(f"latency_ms.{task}.p95", spec.get("p95", median), median)
        latency[task] = Latency(median, p95)
    if "metrics" not in latency:
        raise ProfileError(f"{path}: latency_ms.metrics is required (the summary endpoint)")
    models = {}
    for name, spec in mapping("models").items():
        name = _one_line(name, 40)
        if not isinstance(spec, dict) or "task" not in spec:
            raise ProfileError(f"{path}: models.{name}: expected "
                               "{size_gb, task}")
        models[name] = Model(name, number(f"models.{name}.size_gb", spec.get("size_gb"), 0.01),
                             str(spec["task"]))
    volatile = data.get("volatile_fields", list(VOLATILE))
    if not isinstance(volatile, list) or not all(isinstance(v, str) and v in VOLATILE
                                                 for v in volatile):
        raise ProfileError(f"{path}: volatile_fields={show(volatile)}: expected a list of "
                           f"{', '.join(VOLATILE)}")
    divergence_path = data.get("divergence_path", "any")
    if not isinstance(divergence_path, str) or divergence_path not in DIVERGENCE:
        raise ProfileError(f"{path}: divergence_path={show(divergence_path)}: expected one of "
                           f"{', '.join(DIVERGENCE)}")
    backend = data.get("backend")
    if not isinstance(backend, str) or backend not in ("rust", "typescript"):
        raise ProfileError(f"{path}: backend={show(backend)}: expected rust or typescript")
    return Profile(
        backend=backend,
        latency_ms=latency,
        models=models,
        per_megapixel_ms=number("per_megapixel_ms", data.get("per_megapixel_ms", 0.0)),
        error_rate=number("error_rate", data.get("error_rate", 0.0), 0.0, 1.0),
        model_load_ms_per_gb=number("model_load_ms_per_gb", data.get("model_load_ms_per_gb", 0)),
        vram_overhead_gb=number("vram_overhead_gb", data.get("vram_overhead_gb", 0.0)),
        memory_limit_gb=number("memory_limit_gb", data.get("memory_limit_gb", 4.0), 0.01),
        volatile_fields=tuple(volatile),
        jitter=number("jitter", data.get("jitter", 0.0), 0.0, 0.5),
        divergence_rate=number("divergence_rate", data.get("divergence_rate", 0.0), 0.0, 1.0),
        divergence_path=divergence_path,
        source=str(path),
    )
