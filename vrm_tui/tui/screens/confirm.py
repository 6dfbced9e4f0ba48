"""Ask before an increase of rust traffic; shows what will change."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Footer, Label, Static

from vrm_tui.tui.screens.modal import VrmModal


class ConfirmScreen(VrmModal[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,enter", "answer(True)", "Yes", id="confirm.yes", tooltip="Apply the change"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no", tooltip="Leave it as is"),
    ]
    CANCEL_ON_ROLLBACK = True  # "yes" after a rollback would apply a step from the old split

    def __init__(self, question: str, detail: str = "") -> None:
        super().__init__()
        self.question = question
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog"):
            yield Label(Text(self.question), id="confirm-question")
            if self.detail:
                yield Static(Text(self.detail), id="confirm-detail")
            yield Label("y/enter: apply   n/esc: cancel   r: roll back", classes="hint")
        yield Footer()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
