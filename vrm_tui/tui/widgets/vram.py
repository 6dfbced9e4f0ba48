"""GPU VRAM pane: each backend's `vision_manager_vram_used_gb` against MAX_VRAM_GB.

NVML per GPU comes with the monitoring work; it gets its own rows here.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from vrm_tui.telemetry.backend_metrics import VramReading
from vrm_tui.tui.widgets.common import meter

HIGH = 0.9  # the seed's resource-exhaustion alert: > 90% of the VRAM limit


class VramPane(Static):
    compact = False  # set by the app on resize: no header row on small terminals

    def on_mount(self) -> None:
        self.border_title = "GPU VRAM (backend metrics)"
        self.update(Text("waiting for the first scrape…", style="dim"))

    def show_readings(self, readings: list[VramReading]) -> None:
        table = Table(box=None, expand=True, pad_edge=False, show_header=not self.compact)
        table.add_column("", no_wrap=True)
        table.add_column("used/limit GB", no_wrap=True)
        table.add_column("%", no_wrap=True, justify="right")
        table.add_column("models", no_wrap=True, justify="right")
        problems = []
        for reading in readings:
            if reading.error or reading.used_gb is None:
                table.add_row(reading.backend, Text("✗ no reading", style="red"), "-", "-")
                problems.append(Text(f"{reading.backend}: {reading.error}", style="red"))
                continue
            limit = reading.limit_gb or 0
            share = reading.used_gb / limit if limit else 0
            style = "red" if share >= HIGH else ("yellow" if share >= 0.75 else "")
            use = Text(meter(share, 5), style=style)
            use.append(f" {reading.used_gb:4.1f}/{limit:.0f}")
            percent = Text(f"{100 * share:.0f}%" + (" HIGH" if share >= HIGH else ""),
                           style="red bold" if share >= HIGH else "")
            models = "-" if reading.models_loaded is None else str(reading.models_loaded)
            table.add_row(reading.backend, use, percent, models)
        self.update(Group(table, *problems))
