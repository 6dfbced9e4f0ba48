"""A backend's own /metrics: VRAM in use, its limit and models loaded (the seed's gauges)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from vrm_tui.telemetry.http import shared_client

VRAM_SERIES = "vision_manager_vram_used_gb"
NVML_ONLY = "VRAM from NVML only"


@dataclass(frozen=True)
class VramReading:
    backend: str
    used_gb: float | None
    limit_gb: float | None
    models_loaded: int | None
    error: str = ""
    # False when the backend answers but does not offer the seed's VRAM gauge (no /metrics,
    # or no vision_manager_vram_used_gb): a convention it need not follow, not a failure.
    reported: bool = True


def scrape_vram(backend: str, base_url: str, default_limit_gb: float,
                timeout: float = 1.0) -> VramReading:
    """GET <base_url>/metrics and pick out the VRAM gauges; failures come back as data."""
    try:
        response = shared_client().get(f"{base_url}/metrics", timeout=timeout)
        if response.status_code == 404:
            return VramReading(backend, None, None, None, f"no /metrics: {NVML_ONLY}",
                               reported=False)
        response.raise_for_status()
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
    except httpx.TimeoutException:
        return VramReading(backend, None, None, None, f"/metrics: no answer within {timeout:g}s")
    except httpx.HTTPError as exc:
        return VramReading(backend, None, None, None, f"/metrics: {exc}")
    except ValueError:
        return VramReading(backend, None, None, None,
                           f"/metrics is not Prometheus text: {NVML_ONLY}", reported=False)

    def gauge(name: str) -> float | None:
        family = families.get(name)
        if family is None:
            return None
        values = [s.value for s in family.samples if s.labels.get("backend", backend) == backend]
        return float(values[0]) if values else None

    used = gauge("vision_manager_vram_used_gb")
    if used is None:
        return VramReading(backend, None, None, None,
                           f"no vision_manager_vram_used_gb: {NVML_ONLY}", reported=False)
    limit = gauge("vision_manager_vram_limit_gb") or default_limit_gb
    models = gauge("vision_manager_models_loaded")
    return VramReading(backend, used, limit, int(models) if models is not None else None)
