"""Journal pane: every vrm's actions on this host, newest first, so a pair sees each other."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from vrm_tui.core.clock import hhmmss
from vrm_tui.views import Record

KEEP = 200


class JournalPane(Static):
    def on_mount(self) -> None:
        self.border_title = "Journal"
        self._records: list[Record] = []
        self.update(Text("no actions yet", style="dim"))

    @property
    def records(self) -> list[Record]:
        return list(self._records)

    def show_journal(self, records: list[Record]) -> None:
        self._records = (self._records + records)[-KEEP:]
        table = Table(box=None, expand=True, pad_edge=False, show_header=False)
        table.add_column("time", no_wrap=True, min_width=8)
        table.add_column("who", no_wrap=True, overflow="ellipsis", max_width=18)
        table.add_column("action", no_wrap=True, min_width=14)
        table.add_column("result", no_wrap=True, min_width=12)
        table.add_column("detail", overflow="ellipsis", no_wrap=True, ratio=1)
        for record in reversed(self._records):
            when = hhmmss(record.time)
            change = ""
            if record.to:
                was = record.from_["rust"] if record.from_ else "?"
                change = f" {was}→{record.to['rust']}"
            ok = record.result == "ok"
            took = f" {record.duration_ms:.0f}ms" if record.duration_ms is not None else ""
            table.add_row(when, Text(record.operator), Text(f"{record.action}{change}"),
                          Text(("✓ ok" if ok else "✗ failed") + took,
                               style="green" if ok else "red"),
                          Text(record.detail))  # Text: "[emerg]" in a detail is not markup
        self.update(table)
