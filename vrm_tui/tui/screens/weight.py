"""Set an exact rust weight: inline validation and the upstream diff before applying.

Confirmation policy (the same as `+` and `-`): any increase of rust traffic, of any size,
is confirmed inside this modal: the first Enter shows the diff as the question, a second
Enter applies it. A decrease applies on the first Enter: it only moves traffic toward the
fallback, like `-` and `r`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Footer, Input, Label, Static

from vrm_tui.core.errors import SplitError
from vrm_tui.core.split import Split, parse_weight
from vrm_tui.tui.screens.modal import VrmModal

UpstreamDiff = Callable[[Split, Split], str]
"""(serving, candidate) -> the upstream block's change: the console's `upstream_diff`."""

class WeightInput(Input):
    """The weight field. It never takes `r`: no weight has one, and `r` must roll back."""

    def check_consume_key(self, key: str, character: str | None) -> bool:
        return key != "r" and super().check_consume_key(key, character)


class WeightScreen(VrmModal[Split]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="weight.cancel",
                tooltip="Close without changing anything")]
    CANCEL_ON_ROLLBACK = True  # the diff was against the split before the rollback

    def __init__(self, current: Split, diff: UpstreamDiff) -> None:
        super().__init__()
        self.current = current
        self.diff = diff
        self.armed: Split | None = None  # an increase shown once, applied on the next Enter

    def compose(self) -> ComposeResult:
        with Vertical(id="weight-dialog", classes="dialog"):
            yield Label(Text(f"Rust weight 0-100 (serving rust {self.current.rust}%, "
                             f"typescript {self.current.typescript}%):"))
            yield WeightInput(value="", placeholder=str(self.current.rust), id="weight-input")
            yield Static("", id="weight-error")
            yield Static("", id="weight-diff")
            yield Static("", id="weight-step", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._check("")

    def _check(self, text: str) -> Split | None:
        """Validate as the operator types; show the diff of a valid weight."""
        error = self.query_one("#weight-error", Static)
        diff = self.query_one("#weight-diff", Static)
        step = self.query_one("#weight-step", Static)
        self.armed = None
        if not text.strip():
            error.update("")
            diff.update("")
            step.update("type a weight; enter: review    esc: cancel    r / ctrl+r: roll back")
            return None
        try:
            target = Split(parse_weight(text, "weight"))
        except SplitError as exc:
            error.update(Text(f"✗ {exc}"))
            diff.update("")
            step.update("esc: cancel")
            return None
        error.update("")
        diff.update(Text(self.diff(self.current, target)))
        if target == self.current:
            step.update(Text(f"rust is already at {target.rust}%; esc: cancel"))
        elif target.rust > self.current.rust:
            step.update(Text("an increase: enter shows it for confirmation    esc: cancel"))
        else:
            step.update(Text("a decrease: enter applies it    esc: cancel"))
        return target

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self._check(event.value)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        armed = self.armed
        target = self._check(event.value)
        if target is None or target == self.current:
            return
        if target.rust < self.current.rust or armed == target:
            self.dismiss(target)
            return
        self.armed = target
        self.query_one("#weight-step", Static).update(Text(
            f"⚠ more traffic to rust ({self.current.rust}% → {target.rust}%): press enter "
            "again to apply, esc to cancel", style="bold"))

    def action_cancel(self) -> None:
        self.dismiss(None)
