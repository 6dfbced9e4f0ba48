"""Fault injection, switched at run time through a loopback-only admin endpoint."""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


class FaultError(ValueError):
    """A fault setting that makes no sense; the message names it."""


@dataclass
class Faults:
    """Current faults. `hang` holds every request until cleared; `unhealthy` fails /health."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    hang: bool = False
    unhealthy: bool = False
    _released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_released")
        return data

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update, all or nothing."""
        names = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = set(changes) - names - {"crash"}
        if unknown:
            raise FaultError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(names)}")
        checked: dict[str, Any] = {}
        for key in ("latency_ms", "error_rate"):
            if key in changes:
                value = changes[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise FaultError(f"{key}={value!r}: expected a number")
                if not math.isfinite(value) or value < 0 or (key == "error_rate" and value > 1):
                    raise FaultError(f"{key}={value!r}: out of range")
                checked[key] = float(value)
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
        self.update({"latency_ms": 0, "error_rate": 0, "hang": False, "unhealthy": False})

    async def wait_unhung(self) -> None:
        if self.hang:
            await self._released.wait()
