"""The base of every screen over the dashboard: `r` and `ctrl+r` roll back from it.

The app's rollback binding has priority, so it runs before this screen sees the key; it is
listed again here so that the screen's own footer (which shows only the screen's bindings)
offers it. A text field that types an `r` keeps it (there `ctrl+r` still rolls back). A
traffic change's result shows on the screen itself (`show_action`).
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

ResultType = TypeVar("ResultType")

ROLLBACK = Binding("r,ctrl+r", "rollback", "Rollback", priority=True, id="screen.rollback",
                   tooltip="All traffic to typescript now, from any screen")


class VrmModal(ModalScreen[ResultType]):
    """A screen over the dashboard. `CANCEL_ON_ROLLBACK` closes it (with `None`) before the
    rollback: a pending question about the old split must not outlive it."""

    BINDINGS: ClassVar[list[BindingType]] = [ROLLBACK]
    CANCEL_ON_ROLLBACK = False

    def _refused(self, action: str) -> bool:
        refusal = getattr(self.app, "refusal", None)
        return bool(callable(refusal) and refusal(action))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys the app refuses (read-only) are left out of this screen's footer too."""
        return not (action == "rollback" and self._refused("rollback"))

    def show_action(self, text: str, ok: bool) -> None:
        """A traffic change's verified result (or its failure) on this screen too, above its
        footer: a rollback from the logs or the benchmark is never silent."""
        try:
            line = self.query_one("#screen-action", Static)
        except NoMatches:
            line = Static("", id="screen-action")
            footers = self.query(Footer)
            if footers:
                self.mount(line, before=footers.last())
            else:
                self.mount(line)
        line.update(Text(text, style="bold" if ok else "bold reverse"))

    async def action_rollback(self) -> None:
        """The app's rollback, through its `run_action` (the one place that refuses)."""
        await self.app.run_action("rollback")
        if self.CANCEL_ON_ROLLBACK and self.is_current:
            self.dismiss(None)
