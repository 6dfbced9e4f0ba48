"""A service's logs: the tail, then new lines as they come, readable and searchable.

A thread worker follows the logs into a queue; a UI timer drains it in batches (one call
per tick, not one per line). Lines are kept so that a filter, wrap or pause re-draws from
them. Access-log JSON is formatted by `telemetry.logformat` (shared with `vrm logs`), and
every line is shown as plain text: `[emerg]` in an nginx error stays visible.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Input, Label, RichLog
from textual.worker import get_current_worker

from vrm_tui.console import Console
from vrm_tui.core import services
from vrm_tui.core.errors import StackError
from vrm_tui.tui.screens.modal import VrmModal
from vrm_tui.views import format_line

KEEP = 5000
TAIL = 300
DRAIN_S = 0.1


class LogScreen(VrmModal[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,l", "close", "Close", id="logs.close", tooltip="Back to the dashboard"),
        Binding("tab", "next_service", "Next service", id="logs.next",
                tooltip="Show the next service's logs"),
        Binding("slash", "filter", "Filter", key_display="/", id="logs.filter",
                tooltip="Show only lines that contain a text (empty: all)"),
        Binding("w", "wrap", "Wrap", id="logs.wrap", tooltip="Wrap long lines, or cut them"),
        Binding("p", "pause", "Pause/follow", id="logs.pause",
                tooltip="Hold the view still; new lines wait until you follow again"),
    ]

    def __init__(self, console: Console, service: str = services.PROXY) -> None:
        super().__init__()
        self.vrm = console
        self.service = service
        self.names = console.backend_names()
        self.lines: deque[str] = deque(maxlen=KEEP)  # formatted, every line followed
        self.pattern = ""
        self.paused = False
        self.held = 0  # lines that arrived while paused
        self._incoming: deque[str] = deque()

    def compose(self) -> ComposeResult:
        yield Label("", id="logs-title")
        yield RichLog(id="logs-view", max_lines=KEEP, wrap=False, markup=False,
                      highlight=False)
        yield Input(placeholder="filter: lines containing… (enter: done, empty: all)",
                    id="logs-filter")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#logs-filter", Input).display = False
        self.set_interval(DRAIN_S, self._drain)
        self._start()

    # --- following ---------------------------------------------------------------------

    def _start(self) -> None:
        self.lines.clear()
        self.held = 0
        self._incoming = deque()  # a cancelled worker still holds the old one
        self._redraw()
        self._follow(self.service, self._incoming)

    @work(thread=True, exclusive=True, group="logs")
    def _follow(self, service: str, into: deque[str]) -> None:
        worker = get_current_worker()
        try:
            for line in self.vrm.log_lines(service, tail=TAIL, follow=True,
                                               keep_going=lambda: not worker.is_cancelled):
                if worker.is_cancelled:
                    return
                into.append(format_line(line, self.names))
        except (StackError, OSError) as exc:
            into.append(f"✗ {exc}")

    def _drain(self) -> None:
        """Move what the worker read into the view, in one batch."""
        batch = []
        while self._incoming:
            batch.append(self._incoming.popleft())
        if not batch:
            return
        self.lines.extend(batch)
        if self.paused:
            self.held += len(batch)
            self._title()
            return
        view = self.query_one(RichLog)
        for line in batch:
            if self._shows(line):
                view.write(Text(line))
        if self.pattern:  # the title counts the matches shown
            self._title()

    def _shows(self, line: str) -> bool:
        return not self.pattern or self.pattern.lower() in line.lower()

    def shown(self) -> list[str]:
        """The lines the view holds now (for tests and the title's count)."""
        return [line for line in self.lines if self._shows(line)]

    def _redraw(self) -> None:
        view = self.query_one(RichLog)
        view.clear()
        for line in self.shown():
            view.write(Text(line))
        self._title()

    def _title(self) -> None:
        state = f"PAUSED, {self.held} new lines held (p: follow)" if self.paused else "following"
        wrap = "wrap on" if self.query_one(RichLog).wrap else "wrap off"
        found = f" · filter {self.pattern!r}: {len(self.shown())} lines" if self.pattern else ""
        self.query_one("#logs-title", Label).update(
            Text(f"logs: {self.service} · {state} · {wrap}{found}"))

    # --- keys ----------------------------------------------------------------------------

    def action_next_service(self) -> None:
        names = list(services.CORE)
        self.service = names[(names.index(self.service) + 1) % len(names)]
        self.workers.cancel_group(self, "logs")
        self._start()

    def action_wrap(self) -> None:
        view = self.query_one(RichLog)
        view.wrap = not view.wrap
        self._redraw()

    def action_pause(self) -> None:
        self.paused = not self.paused
        view = self.query_one(RichLog)
        view.auto_scroll = not self.paused
        if not self.paused:
            self.held = 0
            self._redraw()
        self._title()

    def action_filter(self) -> None:
        field = self.query_one("#logs-filter", Input)
        field.display = True
        field.focus()

    @on(Input.Changed, "#logs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.pattern = event.value.strip()
        self._redraw()

    @on(Input.Submitted, "#logs-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self._leave_filter()

    def _leave_filter(self) -> None:
        field = self.query_one("#logs-filter", Input)
        field.display = bool(self.pattern)
        self.query_one(RichLog).focus()

    def action_close(self) -> None:
        """Esc in the filter field leaves the field; anywhere else it closes the logs."""
        if self.focused is self.query_one("#logs-filter", Input):
            self._leave_filter()
            return
        self.workers.cancel_group(self, "logs")
        self.dismiss(None)
