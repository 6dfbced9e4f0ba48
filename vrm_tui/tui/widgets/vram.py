"""GPU VRAM pane: each backend's `vision_manager_vram_used_gb` against MAX_VRAM_GB.

NVML per GPU comes with the monitoring work; it gets its own rows here.
"""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from vrm_tui.telemetry.backend_metrics import VramReading
from vrm_tui.tui.widgets.common import meter


class VramPane(Static):
    def on_mount(self) -> None:
        self.border_title = "GPU VRAM (backend metrics)"
        self.update(Text("waiting for the first scrape…", style="dim"))

    def show_readings(self, readings: list[VramReading]) -> None:
        lines = []
        for reading in readings:
            line = Text(f"{reading.backend:11}", style="bold")
            if reading.error or reading.used_gb is None:
                line.append(f"✗ {reading.error}", style="red")
            else:
                limit = reading.limit_gb or 0
                share = reading.used_gb / limit if limit else 0
                style = "red" if share >= 0.9 else ("yellow" if share >= 0.75 else "")
                line.append(meter(share, 10), style=style)
                line.append(f" {reading.used_gb:4.1f}/{limit:.0f} GB {100 * share:3.0f}%")
                if share >= 0.9:
                    line.append(" HIGH", style="red")
                if reading.models_loaded is not None:
                    line.append(f" · {reading.models_loaded} models")
            lines.append(line)
        self.update(Group(*lines))
