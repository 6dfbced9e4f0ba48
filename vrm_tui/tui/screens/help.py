"""Every key, with what it does, from the bindings themselves (one source of truth).

In read-only mode the keys that change traffic are marked as disabled, in words (k9s's
way), so the list stays complete and is true for an observer.
"""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from vrm_tui.tui.screens.modal import VrmModal

DISABLED = "✗ read-only"


def quit_effect(stops_stack: bool) -> str:
    """What `q` does to the stack: the demo stops what it started, `vrm tui` leaves it up."""
    return ("Leave vrm and stop the demo stack it started" if stops_stack
            else "Leave vrm (the stack keeps running)")


class HelpScreen(VrmModal[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close",
                tooltip="Back to the dashboard")]
    CANCEL_ON_ROLLBACK = True  # the dashboard shows the rollback's result

    def __init__(self, bindings: list[Binding], read_only_reason: str = "",
                 quit_stops_stack: bool = False) -> None:
        super().__init__()
        self.keys = bindings
        self.reason = read_only_reason
        self.quit_stops_stack = quit_stops_stack

    def table(self) -> Table:
        """One row per key; a refused key says so in its own row, not by colour."""
        table = Table(title="vrm keys", expand=True)
        table.add_column("key", no_wrap=True)
        table.add_column("action", no_wrap=True)
        table.add_column("what it does")
        for binding in self.keys:
            key = binding.key_display or binding.key
            if binding.action == "rollback":
                key = "r, ctrl+r"
            what = binding.tooltip
            if binding.action == "quit":
                what = quit_effect(self.quit_stops_stack)
            if self._refused(binding.action):
                table.add_row(Text(key, style="dim"), Text(f"{DISABLED} {binding.description}",
                                                          style="dim"), Text(what, style="dim"))
            else:
                table.add_row(Text(key), Text(binding.description), Text(what))
        return table

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Static(self.table(), id="help-keys")
            if self.reason:
                yield Static(Text(f"READ-ONLY: {self.reason} (marked {DISABLED})"),
                             classes="hint")
            else:
                yield Static("r and ctrl+r roll back from every screen, with no question.",
                             classes="hint")
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)
