"""What a backend offers of vrm's conventions, probed directly, so vrm degrades instead of
failing against a backend it did not write.

A real Vision Resource Manager build may not name itself in `X-VRM-Backend` (the proxy names
it) nor export the seed's `vision_manager_*` gauges (the VRAM gate and pane fall back to
NVML). One that names itself wrongly is another matter: the backends are wired to the wrong
ports.
"""

from __future__ import annotations

from dataclasses import dataclass

from vrm_tui.core.backend import Backend
from vrm_tui.telemetry.backend_metrics import VRAM_SERIES, VramReading, scrape_vram
from vrm_tui.telemetry.health import Probe, probe


@dataclass(frozen=True)
class Offers:
    """One backend's answers: its health, the name it gives itself, its VRAM gauge."""

    backend: Backend
    health: Probe
    vram: VramReading

    @property
    def names_itself(self) -> str | None:
        """The backend's own `X-VRM-Backend` on its health answer (None: it sends none)."""
        return self.health.backend

    @property
    def miswired(self) -> bool:
        """It names itself, and as the other backend."""
        return self.names_itself is not None and self.names_itself != self.backend

    def lacks(self) -> list[str]:
        """What it does not offer, each with what vrm does instead."""
        found = []
        if self.health.healthy and self.names_itself is None:
            found.append("no X-VRM-Backend of its own: the proxy names it")
        if not self.vram.reported:
            found.append(f"no {VRAM_SERIES}: VRAM gate uses NVML")
        return found


def probe_offers(backend: Backend, base_url: str, health_path: str, max_vram_gb: float,
                 timeout: float = 2.0) -> Offers:
    """Probe one backend directly (never through the proxy, which names every answer)."""
    return Offers(backend, probe(f"{base_url}{health_path}", timeout=timeout),
                  scrape_vram(backend, base_url, max_vram_gb, timeout))
