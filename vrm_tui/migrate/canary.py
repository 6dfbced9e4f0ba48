"""Setting the canary's read timeout while rust takes traffic (telemetry/canary.py derives
it): after every deploy, weight change and migration step, so a hung rust holds a client
about max(2 s, 4 x typescript p99), not PROXY_UPSTREAM_TIMEOUT."""

from __future__ import annotations

from vrm_tui.core.errors import Failure
from vrm_tui.telemetry import canary
from vrm_tui.traffic.controller import TrafficController


def settle(controller: TrafficController) -> int | None:
    """Set the timeout PROXY_CANARY_TIMEOUT names (or the derived one) live; best effort,
    the split is already verified. The timeout nginx now uses, or None where it has none of
    its own (no Lua module, backends reached by name) or did not answer."""
    settings = controller.settings
    fixed = settings.proxy_canary_timeout
    ms = fixed * 1000 if fixed is not None else canary.timeout_for(
        controller.host.access_log(), settings.backend_addresses,
        settings.proxy_upstream_timeout)
    try:
        served = controller.set_canary_timeout(ms)
    except Failure:
        return None
    return served.canary_ms if served else None


TIMED_OUT = "504"
"""nginx's upstream status for an attempt that hit its read timeout (or a 504 of the
backend's own: either way a client waited that long on rust for nothing)."""


class HeldClients:
    """Requests whose rust attempt timed out in this step: how many, and the longest wait.
    A rollback caused by a hang says what clients saw, not only rust's error count."""

    def __init__(self) -> None:
        self.count = 0
        self.longest_ms = 0.0

    def add(self, latency_ms: float | None) -> None:
        self.count += 1
        self.longest_ms = max(self.longest_ms, latency_ms or 0.0)

    def said(self) -> str:
        """'' or a clause for the rollback reason."""
        if not self.count:
            return ""
        return (f"; {self.count} client request(s) waited on rust until its timeout "
                f"(up to {self.longest_ms / 1000:.1f} s; retried on typescript where safe "
                "to repeat)")
