"""Traffic split pane: what nginx serves (read back) beside what the access log observed."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from vrm_tui.console import changed_split
from vrm_tui.core.clock import hhmmss
from vrm_tui.tui.widgets.common import meter
from vrm_tui.tui.widgets.pane import Pane
from vrm_tui.views import Record, StackStatus, TrafficSnapshot


class SplitPane(Pane):
    """Served split, observed split over the last minute, generation, last change."""

    def on_mount(self) -> None:
        self.border_title = "Traffic split"
        self._status: StackStatus | None = None
        self._traffic: TrafficSnapshot | None = None
        self._traffic_error = ""
        self._last_change: Record | None = None
        self.refresh_view()

    def show_status(self, status: StackStatus) -> None:
        self._status = status
        self.refresh_view()

    def show_traffic(self, snapshot: TrafficSnapshot | None, error: str = "") -> None:
        self._traffic, self._traffic_error = snapshot, error
        self.refresh_view()

    def show_journal(self, records: list[Record]) -> None:
        for record in records:
            if changed_split(record):  # a reload that kept the split is no change
                self._last_change = record
        self.refresh_view()

    def refresh_view(self) -> None:
        lines: list[Text] = []
        status = self._status
        if status is None:
            lines.append(Text("served    waiting for the first reading…", style="dim"))
        elif status.served is None:
            lines.append(Text(f"served    ✗ unknown: {status.served_error}", style="red"))
        else:
            rust = status.served.split.rust
            line = Text("served    ")
            line.append(f"rust {rust:3d}% ", style="bold")
            line.append(meter(rust / 100, 20))
            line.append(f" {100 - rust:3d}% typescript", style="bold")
            lines.append(line)
            self.border_title = f"Traffic split · nginx generation {status.served.generation}"
            if status.pending and status.configured:
                lines.append(Text(f"⚠ PENDING on disk rust {status.configured.rust}% is not "
                                  "served: an interrupted change", style="yellow"))
        if self._traffic_error:
            lines.append(Text(f"observed  ✗ {self._traffic_error}", style="red"))
        elif self._traffic is not None:
            snap = self._traffic
            if snap.observed_rust_pct is None:
                lines.append(Text("observed  no balanced requests in the last minute",
                                  style="dim"))
            else:
                lines.append(Text(f"observed  rust {snap.observed_rust_pct:5.1f}% of "
                                  f"{snap.observed_requests} requests (last 1m)"))
        change = self._last_change
        if change is not None:
            when = hhmmss(change.time)
            to = change.to["rust"] if change.to else "?"
            lines.append(Text(f"changed   {when} {change.action} → rust {to}% by "
                              f"{change.operator}"))
        self.show(Group(*lines))
