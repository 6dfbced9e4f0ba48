"""A service's logs: the tail, then new lines as they come (polled in a worker)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Label, RichLog
from textual.worker import get_current_worker

from vrm_tui.core import services
from vrm_tui.core.errors import StackError
from vrm_tui.stack.runtime import Runtime


class LogScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,l", "close", "Close", id="logs.close", tooltip="Back to the dashboard"),
        Binding("tab", "next_service", "Next service", id="logs.next",
                tooltip="Show the next service's logs"),
    ]

    def __init__(self, runtime: Runtime, service: str = services.PROXY) -> None:
        super().__init__()
        self.runtime = runtime
        self.service = service

    def compose(self) -> ComposeResult:
        yield Label("", id="logs-title")
        yield RichLog(id="logs-view", max_lines=5000, wrap=False, markup=False)

    def on_mount(self) -> None:
        self._start()

    def _start(self) -> None:
        self.query_one("#logs-title", Label).update(
            f"logs: {self.service}  (tab: next service, esc: close)")
        self.query_one(RichLog).clear()
        self._follow(self.service)

    @work(thread=True, exclusive=True, group="logs")
    def _follow(self, service: str) -> None:
        worker = get_current_worker()
        try:
            for line in self.runtime.log_lines(service, tail=300, follow=True,
                                               keep_going=lambda: not worker.is_cancelled):
                if worker.is_cancelled:
                    return
                self.app.call_from_thread(self._write, [line])
        except (StackError, OSError) as exc:
            self.app.call_from_thread(self._write, [f"✗ {exc}"])

    def _write(self, lines: list[str]) -> None:
        view = self.query_one(RichLog)
        for line in lines:
            view.write(line)

    def action_next_service(self) -> None:
        names = list(services.CORE)
        self.service = names[(names.index(self.service) + 1) % len(names)]
        self.workers.cancel_group(self, "logs")
        self._start()

    def action_close(self) -> None:
        self.workers.cancel_group(self, "logs")
        self.dismiss(None)
