"""The action line: the latest change to traffic, with its time and age.

One line that later events replace, so an old "✓ rollback" never reads as current. Routine
results go here rather than into toasts, which would cover the panes (the gate table).
The text is shown whole (it wraps): a rollback reason is never cut.
"""

from __future__ import annotations

import time

from rich.text import Text

from vrm_tui.core.clock import hhmmss
from vrm_tui.tui.widgets.common import ago
from vrm_tui.tui.widgets.pane import Pane


class ActionLine(Pane):
    def on_mount(self) -> None:
        self._text = ""
        self._ok = True
        self._at: float | None = None
        self.add_class("idle")  # takes no room until the first event

    def show_progress(self, text: str) -> None:
        self._text, self._ok, self._at = text, True, None
        self._draw()

    def show_event(self, text: str, ok: bool, at: float | None = None) -> None:
        """Replace what is shown; `at` (epoch) defaults to now."""
        self._text, self._ok = text, ok
        self._at = time.time() if at is None else at
        self._draw()

    def tick(self) -> None:
        """Refresh the age (the app calls this every second)."""
        if self._at is not None:
            self._draw()

    def _draw(self) -> None:
        self.remove_class("idle")
        self.set_class(not self._ok, "failed")
        line = Text(self._text)  # nginx's "[emerg]" is text, not markup
        if self._at is not None:
            clock = hhmmss(self._at)
            line.append(f" · {clock} ({ago(self._at)})", style="dim")
        self.show(line)
