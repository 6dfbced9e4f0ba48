"""Health probes: one GET with a hard timeout, reported as data (never raised), and each
backend's own latency baseline, so "slow" means slow for that backend, not past one number."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import httpx

from vrm_tui.core.stats import percentile
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
    timed_out: bool = False  # no answer within the timeout: hanging, not refused


def probe(url: str, timeout: float = 1.0, client: httpx.Client | None = None) -> Probe:
    """GET `url`; healthy means any 2xx, and a JSON `status` field (when the body has one)
    that is not unhealthy: a backend vrm did not write may answer 204, or plain text."""
    started = time.perf_counter()
    try:
        response = (client or shared_client()).get(url, timeout=timeout)
    except httpx.TimeoutException:
        return Probe(url, False, None, None, error=f"no answer within {timeout:g}s",
                     timed_out=True)
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


BASELINE_PROBES = 30  # the last N healthy, not degraded, probes of a service
MIN_BASELINE = 5  # fewer: no baseline yet, the fallback ceiling applies
DEGRADED_FACTOR = 3.0
DEGRADED_MARGIN_MS = 100.0
FALLBACK_DEGRADED_MS = 500.0  # a one-shot `vrm status` has no history to compare with


def degraded_above_ms(history: list[float]) -> float:
    """The probe latency past which a service is degraded, given its recent probes:
    max(3 x median, median + 100 ms); 500 ms while there is no baseline yet."""
    if len(history) < MIN_BASELINE:
        return FALLBACK_DEGRADED_MS
    median = percentile(history, 0.5) or 0.0
    return max(DEGRADED_FACTOR * median, median + DEGRADED_MARGIN_MS)


class Baselines:
    """Recent probe latencies per service. A degraded probe is not added: a slowdown stays
    visible instead of becoming the new normal. Thread-safe (status polls may overlap)."""

    def __init__(self, size: int = BASELINE_PROBES) -> None:
        self._seen: dict[str, deque[float]] = {}
        self._size = size
        self._lock = threading.Lock()

    def limit_ms(self, service: str, probe: Probe | None) -> float:
        """The degraded threshold for this probe (from earlier probes), then learn from it."""
        with self._lock:
            seen = self._seen.setdefault(service, deque(maxlen=self._size))
            limit = degraded_above_ms(list(seen))
            if probe is not None and probe.healthy and probe.latency_ms is not None \
                    and probe.latency_ms <= limit:
                seen.append(probe.latency_ms)
            return limit
