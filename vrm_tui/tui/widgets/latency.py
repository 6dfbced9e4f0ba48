"""Latency pane: per backend p50/p95 sparklines, request rate and error rate from the access log.

Errors include failed attempts nginx retried onto the other backend, and say so. A slot
with no successful request is a gap in the sparkline, and a headline whose recent slots had
only failures says so instead of showing older successes' latency as current.
"""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from vrm_tui.core import services
from vrm_tui.core.backend import Backend
from vrm_tui.status import StackStatus
from vrm_tui.telemetry.accesslog import BackendWindow, TrafficSnapshot
from vrm_tui.tui.widgets.common import ms, scale, sparkline


def measured(stats: BackendWindow, series: list[float]) -> list[float | None]:
    """A latency series with `None` where the slot had no successful request."""
    if len(stats.ok_series) != len(series):
        return list(series)
    return [value if ok else None for value, ok in zip(series, stats.ok_series, strict=True)]


def failing_for_s(stats: BackendWindow) -> float:
    """Seconds at the window's end with attempts but not one success (0 when none)."""
    if not stats.ok_series or not stats.slot_s:
        return 0.0
    slots, attempts = 0, 0.0
    for ok, rate in zip(reversed(stats.ok_series), reversed(stats.rate_series), strict=False):
        if ok:
            break
        slots += 1
        attempts += rate * stats.slot_s
    return slots * stats.slot_s if attempts else 0.0


class LatencyPane(Static):
    compact = False  # set by the app on resize: fewer lines for small terminals

    def on_mount(self) -> None:
        self.border_title = "Latency"
        self._snapshot: TrafficSnapshot | None = None
        self._error = ""
        self._probe_ms: dict[str, float | None] = {}
        self._history: dict[str, dict[str, list[float]]] = {}
        self.update(Text("waiting for traffic statistics…", style="dim"))

    def show_traffic(self, snapshot: TrafficSnapshot) -> None:
        self._snapshot, self._error = snapshot, ""
        self.refresh_view()

    def show_error(self, error: str) -> None:
        self._snapshot, self._error = None, error
        self.refresh_view()

    def show_history(self, history: dict[str, dict[str, list[float]]]) -> None:
        """The last 15 minutes from Prometheus: shown beside the live window."""
        self._history = history
        self.refresh_view()

    def show_status(self, status: StackStatus) -> None:
        for service in status.services:
            for name, backend in services.BACKENDS.items():
                if service.state.name == name:
                    self._probe_ms[backend] = service.probe.latency_ms if service.probe else None

    def refresh_view(self) -> None:
        if self._snapshot is None:
            self.update(Text(f"✗ access log unavailable: {self._error}", style="red")
                        if self._error else Text("waiting for traffic statistics…", style="dim"))
            return
        snap = self._snapshot
        self.border_title = f"Latency · window {snap.window} (t: switch)"
        width = max(10, min(40, self.size.width - 26)) if self.size.width else 30
        lines: list[Text] = []
        for backend, stats in snap.backends.items():
            head = Text(f"{backend:11}", style="bold")
            if stats.requests == 0:
                head.append(f"no traffic in {snap.window}; probe {ms(self._probe_ms.get(backend))}",
                            style="dim")
                lines.append(head)
                continue
            failing = failing_for_s(stats)
            if failing or stats.p50_ms is None:  # old successes' latency is not "now"
                head.append(f"p50 {'-':>7} p95 {'-':>7} ")
            else:
                head.append(f"p50 {ms(stats.p50_ms):>7} p95 {ms(stats.p95_ms):>7} ")
            head.append(f"{stats.rate:6.1f} req/s ")
            error_pct = 100 * (stats.error_rate or 0)
            head.append(f"err {error_pct:4.1f}%", style="red" if stats.errors else "")
            lines.append(head)
            if stats.p50_ms is None:
                lines.append(Text(f"  ✗ no successful requests in {snap.window}",
                                  style="red bold"))
            elif failing:
                notice = Text(f"  ✗ no successful requests in last {failing:.0f} s",
                              style="red bold")
                notice.append(f" (before: p95 {ms(stats.p95_ms)})", style="dim")
                lines.append(notice)
            if stats.retried:
                other = Backend(backend).other
                lines.append(Text(f"  ⚠ {stats.retried} {backend} failures hidden: nginx "
                                  f"retried them on {other}", style="red"))
            p95 = measured(stats, stats.p95_series)
            lines.append(Text(f"  p95 {sparkline(p95, width)} {scale(p95, width)}"))
            if not self.compact:
                p50 = measured(stats, stats.p50_series)
                lines.append(Text(f"  p50 {sparkline(p50, width)} {scale(p50, width)}"))
                past: list[float | None] = list(self._history.get(backend, {}).get("p95", []))
                if past:
                    lines.append(Text(f"  15m {sparkline(past, width)} {scale(past, width)} "
                                      "p95 from Prometheus", style="dim"))
        if snap.skipped_bytes:
            lines.append(Text(f"(skipped {snap.skipped_bytes} bytes of log to keep up)",
                              style="yellow"))
        self.update(Group(*lines))
