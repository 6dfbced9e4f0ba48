"""GPU VRAM pane: each GPU from NVML (with the memory of rust's and typescript's processes),
and each backend's own `vision_manager_vram_used_gb` against MAX_VRAM_GB. Without a driver
it says so and shows the backends' figures alone."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive

from vrm_tui.tui.widgets.common import meter
from vrm_tui.tui.widgets.pane import Pane
from vrm_tui.views import GpuReport, VramReading

HIGH = 0.9  # the seed's resource-exhaustion alert: > 90% of the VRAM limit


class VramPane(Pane):
    compact: reactive[bool] = reactive(False, init=False)
    """Set by the app on resize: fewer lines for small terminals."""

    def watch_compact(self) -> None:
        if self._gpu is not None or self._readings:  # redraw what is shown for the new size
            self.refresh_view()

    def on_mount(self) -> None:
        self.border_title = "GPU VRAM"
        self._gpu: GpuReport | None = None
        self._readings: list[VramReading] = []
        self.show(Text("waiting for the first scrape…", style="dim"))

    def show_gpus(self, report: GpuReport) -> None:
        self._gpu = report
        self.refresh_view()

    def show_readings(self, readings: list[VramReading]) -> None:
        self._readings = readings
        self.refresh_view()

    def _gpu_lines(self) -> list[Text]:
        report = self._gpu
        if report is None:
            return []
        if not report.available:
            return [Text(f"NVML: {report.error}; backend metrics below", style="dim")]
        lines = []
        for gpu in report.gpus:
            share = gpu.used_gb / gpu.total_gb if gpu.total_gb else 0.0
            style = "red" if share >= HIGH else ""
            line = Text(f"GPU{gpu.index} ", style="bold")
            line.append(meter(share, 5), style=style)
            line.append(f" {gpu.used_gb:.1f}/{gpu.total_gb:.0f} GB {100 * share:.0f}%")
            if gpu.utilization_pct is not None:
                line.append(f" util {gpu.utilization_pct}%")
            lines.append(line)
            owners = [f"{o} {gpu.used_by(o):.1f} GB" for o in ("rust", "typescript")
                      if gpu.used_by(o)]
            others = sum(p.used_gb or 0 for p in gpu.processes if p.owner is None)
            if others:
                owners.append(f"other {others:.1f} GB")
            if owners:
                lines.append(Text("  " + " · ".join(owners), style="dim"))
        return lines

    def refresh_view(self) -> None:
        readings = self._readings
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
        self.show(Group(*self._gpu_lines(), table, *problems))
