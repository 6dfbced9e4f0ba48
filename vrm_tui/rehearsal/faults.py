"""Fault injection, switched at run time through a loopback-only admin endpoint."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field, fields
from typing import Any

from vrm_tui.core.errors import FaultError
from vrm_tui.rehearsal.answers import DIVERGENCE


@dataclass
class Faults:
    """Current faults. `hang` holds every request until cleared; `unhealthy` fails /health.

    `divergence_rate` and `divergence_path` (label, missing, order, status or any) make answers
    differ on a share of requests, chosen by request hash; `jitter` scales floats by 1 +- jitter.
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    hang: bool = False
    unhealthy: bool = False
    divergence_rate: float = 0.0
    divergence_path: str = "any"
    jitter: float = 0.0
    _released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def as_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies the Event, which fails once requests wait on it.
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update, all or nothing."""
        names = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = set(changes) - names - {"crash"}
        if unknown:
            raise FaultError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(names)}")
        checked: dict[str, Any] = {}
        for key, high in (("latency_ms", math.inf), ("error_rate", 1.0),
                          ("divergence_rate", 1.0), ("jitter", 0.5)):
            if key in changes:
                value = changes[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise FaultError(f"{key}={value!r}: expected a number")
                if not math.isfinite(value) or not 0 <= value <= high:
                    bound = f"0 to {high:g}" if math.isfinite(high) else ">= 0"
                    raise FaultError(f"{key}={value!r}: out of range, expected {bound}")
                checked[key] = float(value)
        if "divergence_path" in changes:
            if changes["divergence_path"] not in DIVERGENCE:
                raise FaultError(f"divergence_path={changes['divergence_path']!r}: expected one "
                                 f"of {', '.join(DIVERGENCE)}")
            checked["divergence_path"] = changes["divergence_path"]
        for key in ("hang", "unhealthy"):
            if key in changes:
                if not isinstance(changes[key], bool):
                    raise FaultError(f"{key}={changes[key]!r}: expected true or false")
                checked[key] = changes[key]
        for key, value in checked.items():
            setattr(self, key, value)
        if self.hang:
            self._released.clear()
        else:
            self._released.set()

    def clear(self) -> None:
        self.update({"latency_ms": 0, "error_rate": 0, "hang": False, "unhealthy": False,
                     "divergence_rate": 0, "divergence_path": "any", "jitter": 0})

    async def wait_unhung(self) -> None:
        if self.hang:
            await self._released.wait()
