"""Every key, with what it does, from the bindings themselves (one source of truth)."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", id="help.close",
                        tooltip="Back to the dashboard")]

    def __init__(self, bindings: list[Binding], read_only_reason: str = "") -> None:
        super().__init__()
        self.keys = bindings
        self.reason = read_only_reason

    def compose(self) -> ComposeResult:
        table = Table(title="vrm keys", expand=True)
        table.add_column("key", no_wrap=True)
        table.add_column("action")
        table.add_column("what it does")
        for binding in self.keys:
            table.add_row(binding.key_display or binding.key, binding.description,
                          binding.tooltip)
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Static(table)
            if self.reason:
                yield Static(f"READ-ONLY: {self.reason}", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)
