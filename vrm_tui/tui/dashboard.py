"""The dashboard: the default screen (posting's `get_default_screen`). It owns the layout,
the keys of the dashboard's actions (actions.py) and the panes; the app owns the polls, the
rollback (a priority binding above every screen) and the threads that change traffic.

Data arrives as typed messages (messages.py), which the app hands to this screen; each
handler gives a pane its data. Actions that change traffic go through the app's `write`
(a thread of their own, timed from the key), steering through `steer_call`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.geometry import Size
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, Static

from vrm_tui.console import changed_split, start_warnings
from vrm_tui.core.errors import VrmError
from vrm_tui.core.names import Control
from vrm_tui.core.split import Split
from vrm_tui.tui import actions
from vrm_tui.tui.messages import (
    AlertsUpdate,
    FleetUpdate,
    GpuUpdate,
    HistoryUpdate,
    JournalUpdate,
    MigrationUpdate,
    ParityUpdate,
    SourceFailed,
    StatusUpdate,
    TrafficUpdate,
    VramUpdate,
)
from vrm_tui.tui.polls import Source
from vrm_tui.tui.screens.bench import BenchScreen
from vrm_tui.tui.screens.confirm import ConfirmScreen
from vrm_tui.tui.screens.help import HelpScreen
from vrm_tui.tui.screens.logs import LogScreen
from vrm_tui.tui.screens.parity import ParityScreen
from vrm_tui.tui.screens.weight import WeightScreen
from vrm_tui.tui.widgets.action_line import ActionLine
from vrm_tui.tui.widgets.alerts import AlertsPane
from vrm_tui.tui.widgets.fleet import FleetPane
from vrm_tui.tui.widgets.health import HealthPane
from vrm_tui.tui.widgets.journal import JournalPane
from vrm_tui.tui.widgets.latency import LatencyPane
from vrm_tui.tui.widgets.migration import MigrationPane
from vrm_tui.tui.widgets.parity import ParityPane
from vrm_tui.tui.widgets.split import SplitPane
from vrm_tui.tui.widgets.vram import VramPane
from vrm_tui.views import WINDOWS, Alert, ParityReport, Record

if TYPE_CHECKING:
    from vrm_tui.tui.app import VrmApp

P = TypeVar("P", bound=Widget)
COMPACT_BELOW = (110, 34)
READ_ONLY_BANNER = "READ-ONLY observer (vrm --read-only): keys that change traffic are off"


class DashboardScreen(Screen[None]):
    """The panes and the dashboard's keys. Rollback is listed first here for the footer; the
    key itself is the app's priority binding, so it works on every screen."""

    BINDINGS: ClassVar[list[BindingType]] = list(actions.bindings(priority_rollback=False))

    def __init__(self) -> None:
        super().__init__(id="dashboard")
        self._panes: dict[type[Widget], Widget] = {}
        self.journal_primed = False  # the first journal read is history, not news
        self.alerts: list[Alert] = []  # the last readings `m` warns from
        self.parity: ParityReport | None = None

    @property
    def vrm_app(self) -> VrmApp:
        return cast("VrmApp", self.app)

    # --- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=self.vrm_app.live)
        if self.vrm_app.read_only:
            yield Static(READ_ONLY_BANNER, id="read-only-banner")
        yield ActionLine(id="action-line", classes="idle")
        with VerticalScroll(id="body"):  # scrolls when the terminal is too small for all
            with Horizontal(id="top-row"):
                yield SplitPane(id="split-pane")
                yield HealthPane(id="health-pane")
            with Horizontal(id="middle-row"):
                yield LatencyPane(id="latency-pane")
                yield VramPane(id="vram-pane")
            # A body row of its own: in a small terminal an active migration moves up, under
            # the split and health, above everything else (`_place_migration`).
            yield MigrationPane(id="migration-pane")
            if self.vrm_app.fleet_mode:  # no fleet, no pane (and no poll: app.sources)
                yield FleetPane(id="fleet-pane")
            with Vertical(id="bottom-row"):
                yield AlertsPane(id="alerts-pane")
                yield ParityPane(id="parity-pane")  # parity: hidden until parity is on
                yield JournalPane(id="journal-pane")
        yield Footer()

    def on_mount(self) -> None:
        self._apply_size(self.app.size)
        self.query_one("#body").focus()  # arrows and page keys scroll a small terminal
        self.query_one(AlertsPane).display = self.vrm_app.settings.monitoring or \
            not self.vrm_app.live

    def on_resize(self, event: events.Resize) -> None:
        self._apply_size(event.size)

    def _apply_size(self, size: Size) -> None:
        """Choose the layout from `size`: the Resize event's, the new one (`self.size` may
        still hold the previous size while the event is handled)."""
        compact = size.width < COMPACT_BELOW[0] or size.height < COMPACT_BELOW[1]
        self.app.set_class(compact, "compact")
        self._place_migration()
        for footer in self.query(Footer):
            footer.compact = compact
            footer.show_command_palette = not compact
        for latency in self.query(LatencyPane):
            latency.compact = compact
        for health in self.query(HealthPane):
            health.compact = compact
        for vram in self.query(VramPane):
            vram.compact = compact

    def pane(self, kind: type[P]) -> P | None:
        """The pane of a kind; None while the app shuts down (a late message finds none).
        Remembered: a DOM query per message was a steady share of the TUI's CPU."""
        pane = self._panes.get(kind)
        if pane is not None and pane.is_attached:
            return pane  # type: ignore[return-value]
        found = self.query(kind)
        if not found:
            return None
        self._panes[kind] = pane = found.first()
        return pane


    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A key the app refuses (read-only) is left out of the footer; pressed, the app's
        `run_action` says why once."""
        return not self.vrm_app.refusal(action)

    # --- data for the panes ----------------------------------------------------------------

    @on(ParityUpdate)
    def _parity(self, message: ParityUpdate) -> None:
        self.parity = message.report
        if pane := self.pane(ParityPane):
            pane.show_report(message.report)

    @on(FleetUpdate)
    def _fleet(self, message: FleetUpdate) -> None:
        if pane := self.pane(FleetPane):
            pane.show_view(message.view)

    @on(GpuUpdate)
    def _gpu(self, message: GpuUpdate) -> None:
        if pane := self.pane(VramPane):
            pane.show_gpus(message.report)

    @on(AlertsUpdate)
    def _alerts(self, message: AlertsUpdate) -> None:
        self.alerts = message.alerts
        if pane := self.pane(AlertsPane):
            pane.show_alerts(message.alerts)

    @on(HistoryUpdate)
    def _history(self, message: HistoryUpdate) -> None:
        if pane := self.pane(LatencyPane):
            pane.show_history(message.history)

    @on(MigrationUpdate)
    def _migration(self, message: MigrationUpdate) -> None:
        self.vrm_app.migration = message.view
        if pane := self.pane(MigrationPane):
            pane.show_view(message.view)
        self._place_migration()

    def _place_migration(self) -> None:
        """At 80x24 an active migration outranks everything below split and health; ended,
        or with room, it goes back above the alerts."""
        pane, view = self.pane(MigrationPane), self.vrm_app.migration
        if pane is None:
            return
        body = self.query_one("#body")
        up = self.app.has_class("compact") and view is not None and view.state.active
        wanted = "#top-row" if up else "#middle-row"
        if body.children.index(pane) != body.children.index(self.query_one(wanted)) + 1:
            body.move_child(pane, after=self.query_one(wanted))

    @on(StatusUpdate)
    def _status(self, message: StatusUpdate) -> None:
        self.vrm_app.status = message.status
        if split := self.pane(SplitPane):
            split.show_status(message.status)
        if health := self.pane(HealthPane):
            health.show_status(message.status)
        if latency := self.pane(LatencyPane):
            latency.show_status(message.status)

    @on(TrafficUpdate)
    def _traffic(self, message: TrafficUpdate) -> None:
        if latency := self.pane(LatencyPane):
            latency.show_traffic(message.snapshot)
        if split := self.pane(SplitPane):
            split.show_traffic(message.snapshot)

    @on(VramUpdate)
    def _vram(self, message: VramUpdate) -> None:
        if pane := self.pane(VramPane):
            pane.show_readings(message.readings)

    @on(JournalUpdate)
    def _journal(self, message: JournalUpdate) -> None:
        if not message.records:
            return
        if self.journal_primed:
            self._others_changes(message.records)
        self.journal_primed = True
        if journal := self.pane(JournalPane):
            journal.show_journal(message.records)
        if split := self.pane(SplitPane):
            split.show_journal(message.records)

    def _others_changes(self, records: list[Record]) -> None:
        """A split change made elsewhere (another TUI, the CLI) replaces the action line,
        naming who made it and when; no toast (it covered the Health rows for 10 s, just
        when an observer needs them)."""
        for record in records:
            own = record.pid == os.getpid() and record.host == socket.gethostname()
            if own or not changed_split(record) or record.to is None:
                continue
            before = f"{record.from_['rust']}% → " if record.from_ else ""
            text = f"{record.operator} {record.action}: rust {before}{record.to['rust']}%"
            at = datetime.fromisoformat(record.time).timestamp()
            if line := self.pane(ActionLine):  # not a toast: one covered the Health rows
                line.show_event(f"✓ {text}", True, at)

    @on(SourceFailed)
    def _failed(self, message: SourceFailed) -> None:
        """A failing source's pane says so instead of showing old numbers."""
        error = message.error
        if message.source == Source.STATUS:
            self.vrm_app.status = None
            if health := self.pane(HealthPane):
                health.show_error(error)
        elif message.source == Source.TRAFFIC:
            if latency := self.pane(LatencyPane):
                latency.show_error(error)
            if split := self.pane(SplitPane):
                split.show_traffic(None, error)
        elif message.source == Source.ALERTS:
            if alerts := self.pane(AlertsPane):
                alerts.show_error(error.split(": ", 1)[-1])
            if latency := self.pane(LatencyPane):  # the same Prometheus: its 15m lines age
                latency.history_failed(error)
        elif message.source == Source.HISTORY:
            if latency := self.pane(LatencyPane):
                latency.history_failed(error)
        elif message.source == Source.FLEET:
            if fleet := self.pane(FleetPane):
                fleet.show_error(error)
        elif message.source == Source.JOURNAL:
            self.app.notify(f"journal unreadable: {error}", severity="error", markup=False)

    # --- the dashboard's actions (actions.py) ---------------------------------------------

    def action_rollback(self) -> None:
        """Listed in the footer; the key is the app's priority binding."""
        self.vrm_app.action_rollback()

    async def action_quit(self) -> None:
        await self.vrm_app.action_quit()

    def _served(self) -> Split | None:
        status = self.vrm_app.status
        return status.served.split if status and status.served else None

    def action_rust_up(self) -> None:
        current = self._served()
        if current is None:
            self.app.notify("the served split is unknown; cannot step from it", severity="error")
            return
        target = current.moved(self.vrm_app.step)
        if target == current:
            self.app.notify("rust is already at 100%")
            return
        diff = self.vrm_app.vrm.upstream_diff(current, target)

        def answered(yes: bool | None) -> None:
            if yes:
                self.vrm_app.write("set-split", lambda: self.vrm_app.vrm.set_split(target))

        self._unless_migrating(lambda: self.app.push_screen(
            ConfirmScreen(f"Move rust {current.rust}% → {target.rust}%?", diff), answered))

    def action_rust_down(self) -> None:
        current = self._served()
        if current is None:
            self.app.notify("the served split is unknown; use r to roll back", severity="error")
            return
        target = current.moved(-self.vrm_app.step)
        if target != current:
            self._unless_migrating(
                lambda: self.vrm_app.write("set-split", lambda: self.vrm_app.vrm.set_split(target)))

    def action_set_weight(self) -> None:
        current = self._served() or self.vrm_app.settings.split

        def chosen(target: Split | None) -> None:
            if target is not None and target != current:
                self.vrm_app.write("set-split", lambda: self.vrm_app.vrm.set_split(target))

        self._unless_migrating(lambda: self.app.push_screen(
            WeightScreen(current, self.vrm_app.vrm.upstream_diff), chosen))

    def action_reload_nginx(self) -> None:
        self.vrm_app.write("reload", self.vrm_app.vrm.reload)

    def action_benchmark(self) -> None:
        self.app.push_screen(BenchScreen(self.vrm_app.vrm, self.vrm_app.bench_seconds))

    def action_migrate(self) -> None:
        """Start a migration (asks first), or adopt one whose guard is gone."""
        view = self.vrm_app.migration
        if view is not None and view.state.active and view.guarded:
            self.app.notify(f"migration {view.state.id} is running: p pauses or resumes it, "
                        "P promotes, X aborts, r rolls back")
            return
        adopting = view is not None and view.state.active
        try:
            plan = view.state.plan_obj if view is not None and adopting \
                else self.vrm_app.vrm.load_plan()
        except VrmError as exc:
            self.app.notify(str(exc), severity="error", markup=False)
            return
        question = (f"Adopt UNGUARDED migration {view.state.id} at step {view.state.step + 1} "
                    "with a new guard?" if view is not None and adopting else
                    f"Migrate rust {' → '.join(map(str, plan.steps))}% with "
                    f"{plan.bake_seconds:g}s bakes?")

        def answered(yes: bool | None) -> None:
            if yes:
                vrm = self.vrm_app.vrm

                def call() -> str:
                    state = vrm.resume_migration() if adopting else vrm.start_migration(plan)
                    return f"{state.id} runs under guard pid {state.owner_pid}"

                self.vrm_app.steer_call("adopt" if adopting else "start", call)

        warnings = "".join(f"⚠ {w}\n" for w in start_warnings(self.alerts, self.parity))
        detail = (f"{warnings}A detached guard runs it: it keeps going if this terminal goes "
                  "away.\nGates: rust error rate, latency per route, p95 ceiling, health, VRAM. "
                  "A failed gate rolls back at once; r rolls back any time.")
        self.app.push_screen(ConfirmScreen(question, detail), answered)

    def action_migration_pause(self) -> None:
        view = self.vrm_app.migration
        if view is None or not view.state.active:
            self.app.notify("no migration is running")
            return
        self._steer("resume" if view.state.phase == "paused" else "pause")

    def action_migration_promote(self) -> None:
        self._confirm_steer("promote", "Promote to the next step now, whatever the gates say? "
                            "The timeline will say who promoted it and what the gates said.")

    def action_migration_abort(self) -> None:
        self._confirm_steer("abort", "Abort the migration and roll back to rust 0%?")

    def _confirm_steer(self, action: Control, question: str) -> None:
        view = self.vrm_app.migration
        if view is None or not view.state.active:
            self.app.notify("no migration is running")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._steer(action)

        self.app.push_screen(ConfirmScreen(question, f"migration {view.state.id}, step "
                                       f"{view.state.step + 1} ({view.label})"), answered)

    def _steer(self, action: Control) -> None:
        def call() -> str:
            steered = self.vrm_app.vrm.steer(action)
            if not steered.applied:  # superseded by an abort or pause, or not applicable
                raise VrmError(steered.text)
            return steered.text

        self.vrm_app.steer_call(action, call)

    def _unless_migrating(self, change: Callable[[], object]) -> None:
        """A weight change stops a running migration: the console's question, asked first."""
        view = self.vrm_app.migration
        question = self.vrm_app.vrm.split_change_question() \
            if view is not None and view.state.active else None
        if question is None:
            change()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                change()

        self.app.push_screen(ConfirmScreen(question.text, question.detail), answered)

    def action_logs(self) -> None:
        self.app.push_screen(LogScreen(self.vrm_app.vrm))

    def action_help(self) -> None:
        """Every key of actions.py (the footer hides some: p P X d), and the palette's."""
        keys = [dataclasses.replace(b, key="q,ctrl+q", key_display="q, ctrl+q")
                if b.action == "quit" else dataclasses.replace(b, show=True)
                for b in self.BINDINGS if isinstance(b, Binding) and b.id]
        keys.append(Binding("ctrl+p", "command_palette", "Commands", id="vrm.palette",
                            tooltip="Search every action by name (r on an empty search "
                                    "rolls back)"))
        self.app.push_screen(HelpScreen(keys, self.vrm_app.refusal("rollback") or "",
                                    quit_stops_stack=self.vrm_app.quit_stops_stack))

    def action_window(self) -> None:
        names = list(WINDOWS)
        self.vrm_app.window = names[(names.index(self.vrm_app.window) + 1) % len(names)]
        self.vrm_app.polls.poll(Source.TRAFFIC, repeat=False)  # the pane's title names the window

    def action_parity_diff(self) -> None:
        try:
            examples = self.vrm_app.vrm.parity_examples(50)
        except VrmError as exc:
            self.app.notify(str(exc), severity="error", markup=False)
            return
        self.app.push_screen(ParityScreen(examples))

