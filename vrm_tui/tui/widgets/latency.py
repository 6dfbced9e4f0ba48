"""Latency pane: per backend p50/p95 sparklines, request rate and error rate from the access log.

Errors include failed attempts nginx retried onto the other backend, and say so.
"""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from vrm_tui.core import services
from vrm_tui.core.backend import Backend
from vrm_tui.status import StackStatus
from vrm_tui.telemetry.accesslog import TrafficSnapshot
from vrm_tui.tui.widgets.common import ms, sparkline


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
        width = max(10, min(40, self.size.width - 40)) if self.size.width else 30
        lines: list[Text] = []
        for backend, stats in snap.backends.items():
            head = Text(f"{backend:11}", style="bold")
            if stats.requests == 0:
                head.append(f"no traffic in {snap.window}; probe {ms(self._probe_ms.get(backend))}",
                            style="dim")
                lines.append(head)
                continue
            head.append(f"p50 {ms(stats.p50_ms):>7} p95 {ms(stats.p95_ms):>7} "
                        f"{stats.rate:6.1f} req/s ")
            error_pct = 100 * (stats.error_rate or 0)
            head.append(f"err {error_pct:4.1f}%", style="red" if stats.errors else "")
            lines.append(head)
            if stats.retried:
                other = Backend(backend).other
                lines.append(Text(f"  ⚠ {stats.retried} {backend} failures hidden: nginx "
                                  f"retried them on {other}", style="red"))
            lines.append(Text(f"  p95 {sparkline(stats.p95_series, width)}"))
            if not self.compact:
                lines.append(Text(f"  p50 {sparkline(stats.p50_series, width)}"))
                past = self._history.get(backend, {}).get("p95")
                if past:
                    lines.append(Text(f"  15m {sparkline(past, width)} p95 from Prometheus",
                                      style="dim"))
        if snap.skipped_bytes:
            lines.append(Text(f"(skipped {snap.skipped_bytes} bytes of log to keep up)",
                              style="yellow"))
        self.update(Group(*lines))
