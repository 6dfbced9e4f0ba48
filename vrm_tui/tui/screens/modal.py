"""The base of every screen over the dashboard: `r` and `ctrl+r` roll back from it.

A modal screen hides the app's bindings (Textual stops the binding chain at the modal), so
the one key the tool exists for is bound again here, as a priority binding: it works
before any widget sees the key, except in a text field that types an `r` (there `ctrl+r`
still rolls back). The screen's own footer lists it, so the footer is true on every screen.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from textual.binding import Binding, BindingType
from textual.screen import ModalScreen

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

    async def action_rollback(self) -> None:
        """The app's rollback, through its `run_action` (the one place that refuses)."""
        await self.app.run_action("rollback")
        if self.CANCEL_ON_ROLLBACK and self.is_current:
            self.dismiss(None)
