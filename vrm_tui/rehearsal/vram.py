"""Simulated VRAM: models load into a pool capped at MAX_VRAM_GB, least recently used out first."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from vrm_tui.core.errors import ModelTooLarge
from vrm_tui.rehearsal.profile import Model


@dataclass(frozen=True)
class Placement:
    """What loading a model did: a cache hit, or a load that may have evicted others."""

    hit: bool
    evicted: tuple[str, ...] = ()


class VramPool:
    def __init__(self, limit_gb: float, overhead_gb: float = 0.0) -> None:
        self.limit_gb = limit_gb
        self.overhead_gb = overhead_gb
        self._loaded: OrderedDict[str, float] = OrderedDict()

    @property
    def used_gb(self) -> float:
        return round(self.overhead_gb + sum(self._loaded.values()), 3)

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    def place(self, model: Model) -> Placement:
        """Make `model` resident, evicting least recently used models to fit it."""
        if model.name in self._loaded:
            self._loaded.move_to_end(model.name)
            return Placement(hit=True)
        if self.overhead_gb + model.size_gb > self.limit_gb:
            raise ModelTooLarge(
                f"model {model.name} needs {model.size_gb} GB; MAX_VRAM_GB is {self.limit_gb}"
            )
        evicted = []
        while self.used_gb + model.size_gb > self.limit_gb:
            name, _ = self._loaded.popitem(last=False)
            evicted.append(name)
        self._loaded[model.name] = model.size_gb
        return Placement(hit=False, evicted=tuple(evicted))
