"""Alerts pane: what Alertmanager holds (firing, silenced, inhibited) and what Prometheus has
pending, or why there is no answer."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from vrm_tui.tui.widgets.pane import Pane
from vrm_tui.views import Alert

STATE = {"firing": ("✗ FIRING ", "red bold"), "pending": ("▲ pending", "yellow"),
         "silenced": ("◌ silenced", "dim"), "inhibited": ("◌ inhibited", "dim")}


class AlertsPane(Pane):
    def on_mount(self) -> None:
        self.border_title = "Alerts (Prometheus)"
        self.show(Text("waiting for Prometheus…", style="dim"))

    def show_alerts(self, alerts: list[Alert]) -> None:
        if not alerts:
            self.show(Text("✓ no alerts firing or pending"))
            return
        lines = []
        for alert in alerts:
            word, style = STATE.get(alert.state, (alert.state, ""))
            line = Text(word, style=style)
            line.append(f" {alert.severity:8} {alert.name}", style="bold")
            if alert.summary:
                line.append(f"  {alert.summary}")
            lines.append(line)
        self.show(Group(*lines))

    def show_error(self, error: str) -> None:
        self.show(Text(f"✗ {error}", style="yellow"))
