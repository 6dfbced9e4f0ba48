"""Health probes: one GET with a hard timeout, reported as data (never raised)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from vrm_tui.telemetry.http import shared_client


@dataclass(frozen=True)
class Probe:
    """The outcome of one probe: `healthy` plus what an operator needs to see why not."""

    url: str
    healthy: bool
    status_code: int | None
    latency_ms: float | None
    backend: str | None = None
    error: str = ""


def probe(url: str, timeout: float = 1.0, client: httpx.Client | None = None) -> Probe:
    """GET `url`; healthy means any 2xx, and a JSON `status` field (when the body has one)
    that is not unhealthy: a backend vrm did not write may answer 204, or plain text."""
    started = time.perf_counter()
    try:
        response = (client or shared_client()).get(url, timeout=timeout)
    except httpx.TimeoutException:
        return Probe(url, False, None, None, error=f"no answer within {timeout:g}s")
    except httpx.HTTPError as exc:
        return Probe(url, False, None, None, error=_short(exc))
    latency = round((time.perf_counter() - started) * 1000, 1)
    backend = response.headers.get("X-VRM-Backend")
    try:
        body = response.json()
        status = str(body.get("status", "")) if isinstance(body, dict) else ""
    except ValueError:
        status = ""
    if not 200 <= response.status_code < 300:
        detail = f"HTTP {response.status_code}" + (f" ({status})" if status else "")
        return Probe(url, False, response.status_code, latency, backend, detail)
    if status.lower() in ("unhealthy", "down", "error"):
        return Probe(url, False, response.status_code, latency, backend, f"status {status}")
    return Probe(url, True, response.status_code, latency, backend)


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text or "ConnectError" in type(exc).__name__:
        return f"connection refused ({type(exc).__name__})" if "refused" in text else text
    return text
