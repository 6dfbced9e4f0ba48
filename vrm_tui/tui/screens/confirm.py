"""Ask before an increase of rust traffic; shows what will change."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes", id="confirm.yes", tooltip="Apply the change"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no", tooltip="Leave it as is"),
    ]

    def __init__(self, question: str, detail: str = "") -> None:
        super().__init__()
        self.question = question
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog"):
            yield Label(self.question, id="confirm-question")
            if self.detail:
                yield Static(self.detail, id="confirm-detail", markup=False)
            yield Label("y / enter: apply    n / esc: cancel", classes="hint")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
