"""Set an exact rust weight: inline validation and the upstream diff before applying."""

from __future__ import annotations

import difflib

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from vrm_tui.core.split import Split, SplitError, parse_weight
from vrm_tui.traffic.nginx import render_upstream


def upstream_diff(current: Split, target: Split, rust_address: str, ts_address: str) -> str:
    """The change to the generated upstream block, as a unified diff of its server lines."""
    def lines(split: Split) -> list[str]:
        text = render_upstream(split, 0, rust_address, ts_address)
        return [ln for ln in text.splitlines() if ln.strip().startswith("server")][:2]

    diff = difflib.unified_diff(lines(current), lines(target), "serving", "candidate",
                                lineterm="", n=0)
    return "\n".join(list(diff)[2:]) or "(no change)"


class WeightScreen(ModalScreen[Split | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="weight.cancel",
                        tooltip="Close without changing anything")]

    def __init__(self, current: Split, rust_address: str, ts_address: str) -> None:
        super().__init__()
        self.current = current
        self.addresses = (rust_address, ts_address)

    def compose(self) -> ComposeResult:
        with Vertical(id="weight-dialog", classes="dialog"):
            yield Label(f"Rust weight (now {self.current.rust}%), 0-100:")
            yield Input(value=str(self.current.rust), id="weight-input")
            yield Label("", id="weight-error")
            yield Static("", id="weight-diff", markup=False)
            yield Label("enter: apply    esc: cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._check(self.query_one(Input).value)

    def _check(self, text: str) -> Split | None:
        error = self.query_one("#weight-error", Label)
        diff = self.query_one("#weight-diff", Static)
        try:
            target = Split(parse_weight(text, "weight"))
        except SplitError as exc:
            error.update(f"✗ {exc}")
            diff.update("")
            return None
        error.update("")
        diff.update(upstream_diff(self.current, target, *self.addresses))
        return target

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self._check(event.value)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        target = self._check(event.value)
        if target is not None:
            self.dismiss(target)

    def action_cancel(self) -> None:
        self.dismiss(None)
