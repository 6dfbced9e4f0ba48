"""Backend health pane: up / degraded / hanging / down as a word and a symbol, latency, last
healthy. The classification is `status.classify`, shared with `vrm status`. A backend in
trouble says how many requests nginx has waiting on it (its own count, where nginx keeps
one), so a hang is seen to hold clients, or not."""

from __future__ import annotations

import time

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive

from vrm_tui.core import services
from vrm_tui.tui.widgets.common import ago, ms, state_text
from vrm_tui.tui.widgets.pane import Pane
from vrm_tui.views import ServiceStatus, StackStatus


def service_state(service: ServiceStatus) -> str:
    """The word shown: `vrm status` reads the same `status.classify`."""
    return service.health.word


class HealthPane(Pane):
    compact: reactive[bool] = reactive(False, init=False)
    """Set by the app on resize: fewer lines for small terminals."""

    def watch_compact(self) -> None:
        if self._status is not None or self._error:  # redraw what is shown for the new size
            self.refresh_view()

    def on_mount(self) -> None:
        self.border_title = "Health"
        self._last_ok: dict[str, float] = {}
        self._status: StackStatus | None = None
        self._error = ""
        self.show(Text("waiting for the first probe…", style="dim"))

    def show_status(self, status: StackStatus) -> None:
        now = time.time()
        for service in status.services:
            if service.healthy:
                self._last_ok[service.state.name] = now
        self._status, self._error = status, ""
        self.refresh_view()

    def show_error(self, error: str) -> None:
        self._status, self._error = None, error
        self.refresh_view()

    def states(self) -> dict[str, str]:
        """Service name -> up | degraded | down | unknown, as shown."""
        if self._status is None:
            return {}
        return {s.state.name: service_state(s) for s in self._status.services}

    def refresh_view(self) -> None:
        if self._status is None:
            self.show(Text(f"✗ status unavailable: {self._error}", style="red"))
            return
        table = Table(box=None, expand=True, pad_edge=False, show_header=not self.compact)
        table.add_column("service", no_wrap=True)
        # The word is never cut (`⧖ hangi…` read as nothing); the others give way first.
        table.add_column("state", no_wrap=True, min_width=len("▲ degraded"))
        table.add_column("probe", no_wrap=True, justify="right", overflow="ellipsis")
        table.add_column("last ok", no_wrap=True, overflow="ellipsis")
        problems: list[Text] = []
        served = self._status.served
        flight = served.in_flight if served is not None else None
        for service in self._status.services:
            state = service_state(service)
            probe = service.probe
            short = service.state.name.replace("vision-manager-", "")
            table.add_row(
                Text(short),
                state_text(state),
                ms(probe.latency_ms if probe else None),
                "now" if state in ("up", "degraded") else ago(self._last_ok.get(
                    service.state.name)),
            )
            detail = service.health.reason
            backend = services.BACKENDS.get(service.state.name)
            if flight is not None and backend is not None:
                detail += f"; {flight.of(backend)} waiting"  # 120 columns: no wrap
            if service.health.reason and state not in ("up", "absent"):
                problems.append(Text(f"{short}: {detail}", style="red"))
        self.show(Group(table, *problems))
