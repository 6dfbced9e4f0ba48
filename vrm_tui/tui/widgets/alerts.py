"""Alerts pane: what Prometheus is firing and what is pending, or why there is no answer."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from vrm_tui.telemetry.prometheus import Alert

STATE = {"firing": ("✗ FIRING ", "red bold"), "pending": ("▲ pending", "yellow")}


class AlertsPane(Static):
    def on_mount(self) -> None:
        self.border_title = "Alerts (Prometheus)"
        self.update(Text("waiting for Prometheus…", style="dim"))

    def show_alerts(self, alerts: list[Alert]) -> None:
        if not alerts:
            self.update(Text("✓ no alerts firing or pending"))
            return
        lines = []
        for alert in alerts:
            word, style = STATE.get(alert.state, (alert.state, ""))
            line = Text(word, style=style)
            line.append(f" {alert.severity:8} {alert.name}", style="bold")
            if alert.summary:
                line.append(f"  {alert.summary}")
            lines.append(line)
        self.update(Group(*lines))

    def show_error(self, error: str) -> None:
        self.update(Text(f"✗ {error}", style="yellow"))
