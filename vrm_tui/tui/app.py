"""The operator TUI: live panes and one-key actions over the traffic core.

Thin by design: every poll and every action runs in a thread worker, with the timeouts of
the plain modules it calls, and posts a typed message; handlers hand data to panes. Each
poll is scheduled when the previous one finishes, so polls never pile up. Rollback calls
the traffic controller and nothing else, so it works with every telemetry source down.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Mapping
from typing import ClassVar

from textual import on
from textual.app import App
from textual.binding import BindingType
from textual.command import CommandPalette
from textual.message import Message

from vrm_tui.console import ApplyResult, Console, MigrationView
from vrm_tui.tui import actions
from vrm_tui.tui.commands import VrmCommands
from vrm_tui.tui.dashboard import DashboardScreen
from vrm_tui.tui.messages import (
    ActionDone,
    ActionProgress,
    AlertsUpdate,
    FleetUpdate,
    GpuUpdate,
    HistoryUpdate,
    JournalUpdate,
    MigrationAsked,
    MigrationUpdate,
    PaneData,
    ParityUpdate,
    StatusUpdate,
    TrafficUpdate,
    VramUpdate,
)
from vrm_tui.tui.palette import VrmPalette
from vrm_tui.tui.polls import FLEET, MONITORING, Polls, Source
from vrm_tui.tui.screens.modal import VrmModal
from vrm_tui.tui.widgets.action_line import ActionLine
from vrm_tui.tui.widgets.alerts import AlertsPane
from vrm_tui.tui.widgets.fleet import fleet_rollback
from vrm_tui.tui.widgets.latency import LatencyPane
from vrm_tui.tui.widgets.vram import VramPane
from vrm_tui.tui.workers import Changes, Lifeline
from vrm_tui.views import StackStatus

PROBE_TIMEOUT_S = 1.0
PAINT_S = 1.0
STATUS_AFTER_ACTION_S = 0.05
REFUSAL_NOTICE_S = 4.0


class VrmApp(App[None]):
    """vrm's dashboard. `read_only` disables every write action, in `refusal()` only."""

    CSS_PATH = "app.tcss"
    TITLE = "vrm"
    COMMANDS = App.COMMANDS | {VrmCommands}
    BINDINGS: ClassVar[list[BindingType]] = list(actions.app_bindings())  # the rest: dashboard

    def __init__(self, console: Console, read_only: bool = False, step: int = 10,
                 live: bool = True, quit_stops_stack: bool = False,
                 keymap: Mapping[str, str] | None = None) -> None:
        """`live=False` starts no polls and no clock: panes show only the messages posted
        to the app (snapshot tests with fixed data). `quit_stops_stack`: the demo stops
        the stack it started on quit, and help must say so."""
        super().__init__()
        if keymap:  # binding id -> keys (actions.py); rollback stays on r / ctrl+r
            self.set_keymap(actions.keymap(keymap))
        self.quit_stops_stack = quit_stops_stack
        self.live = live
        self.vrm = console
        self.settings = console.settings
        self.read_only = read_only
        self.step = step
        self.traffic = console.traffic_source()
        self.migration: MigrationView | None = None
        self.bench_seconds = 5.0
        self._journal_offset = 0
        self.polls = Polls(self, {
            Source.STATUS: lambda: StatusUpdate(self.vrm.status(timeout=PROBE_TIMEOUT_S)),
            Source.TRAFFIC: lambda: TrafficUpdate(self.traffic.poll(self.window)),
            Source.VRAM: lambda: VramUpdate(self.vrm.vram(PROBE_TIMEOUT_S)),
            Source.JOURNAL: self._fetch_journal,
            Source.GPU: lambda: GpuUpdate(self.vrm.gpus()),
            Source.ALERTS: lambda: AlertsUpdate(self.vrm.alerts(PROBE_TIMEOUT_S)),
            Source.HISTORY: lambda: HistoryUpdate(self.vrm.latency_history()),
            Source.MIGRATION: lambda: MigrationUpdate(self.vrm.migration()),
            Source.PARITY: lambda: ParityUpdate(self.vrm.parity_report(timeout=PROBE_TIMEOUT_S)),
            Source.FLEET: lambda: FleetUpdate(self.vrm.fleet_status()),
        }, self._shows)
        self.dashboard = DashboardScreen()
        self.changes = Changes(self)  # traffic changes still running
        self.lifeline = Lifeline(self, self.changes)
        self.window = "1m"
        self.status: StackStatus | None = None
        self.last_action: ActionDone | None = None
        self._refused_at = -REFUSAL_NOTICE_S
        self.sub_title = f"{console.runtime_name} · {self.settings.proxy_url}"

    def get_default_screen(self) -> DashboardScreen:
        return self.dashboard

    def post_message(self, message: Message) -> bool:
        """Data for the panes goes to the dashboard (from poll threads too)."""
        if isinstance(message, PaneData):
            return self.dashboard.post_message(message)
        return super().post_message(message)

    def on_mount(self) -> None:
        if not self.live:
            return
        self.polls.start(self.sources())
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP,
                                                        self.lifeline.hang_up)
        self.set_interval(2.0, self.lifeline.check)
        self.set_interval(PAINT_S, self._paint)

    def _paint(self) -> None:
        """Hand the panes what the polls fetched since the last paint, in one frame."""
        self.polls.paint()
        if line := self.dashboard.pane(ActionLine):
            line.tick()

    def exited_cleanly(self) -> int:
        """After `run()`: wait for a traffic change still running (the demo stops its stack
        only after), then the exit status (129 after a hang-up); no forced exit any more."""
        self.lifeline.cancel()
        self.changes.wait()
        return self.return_code or 0

    # --- polling (polls.py schedules; these say what a source feeds) ----------------------

    @property
    def fleet_mode(self) -> bool:
        """VRM_FLEET and VRM_FLEET_ENDPOINTS set: the dashboard has a Fleet pane."""
        return bool(self.settings.fleet and self.settings.fleet_endpoints)

    def sources(self) -> set[Source]:
        """What this app polls: monitoring's sources only with monitoring, the fleet's only
        in fleet mode."""
        return set(Source) - (set() if self.settings.monitoring else MONITORING) \
            - (set() if self.fleet_mode else FLEET)

    def _shows(self, source: Source) -> bool:
        """Whether `source`'s pane is on screen: a hidden pane's source is not polled."""
        pane = {Source.VRAM: VramPane, Source.GPU: VramPane, Source.ALERTS: AlertsPane,
                Source.HISTORY: LatencyPane}.get(source)
        found = self.dashboard.pane(pane) if pane is not None else None
        return pane is None or (found is not None and found.display)

    def _fetch_journal(self) -> JournalUpdate:
        records, self._journal_offset = self.vrm.journal_since(self._journal_offset)
        return JournalUpdate(records)

    # --- read-only: the one place write actions are refused -------------------------------

    def refusal(self, action: str) -> str | None:
        """Why `action` may not run here, or None when it may."""
        if self.read_only and action in actions.WRITE_ACTIONS:
            return "observer mode (vrm --read-only): keys that change traffic are disabled"
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """False hides a refused key from every footer (k9s's way); the key still reaches
        `run_action`, which says why once."""
        return not self.refusal(action)

    async def run_action(self, action, default_namespace=None, namespaces=None) -> bool:  # type: ignore[no-untyped-def]
        name = action if isinstance(action, str) else ""
        reason = self.refusal(name.split("(")[0].rsplit(".", 1)[-1]) if name else None
        if reason and (default_namespace in (None, self, self.dashboard)):
            self._refused(reason)
            return True
        return await super().run_action(action, default_namespace, namespaces)

    def _refused(self, reason: str) -> None:
        """One notice however many refused keys are pressed: a new one only once the last
        has gone."""
        now = time.monotonic()
        if now - self._refused_at > REFUSAL_NOTICE_S:
            self.notify(reason, title="read-only", severity="warning",
                        timeout=REFUSAL_NOTICE_S, markup=False)
            self._refused_at = now

    # --- actions ---------------------------------------------------------------------------

    def action_rollback(self) -> None:
        """Roll back now, from any screen (a priority binding: before any screen, modal or
        the palette sees the key). A running migration notices the split changed and stops;
        a question about the old split (weight, confirm) is closed. In fleet mode it is the
        whole fleet's: this host at once (no etcd on its path), then every live host."""
        if self.fleet_mode:
            self._progress(ActionProgress("… fleet rollback: this host first"))
            self.changes.report("fleet rollback", fleet_rollback(self.vrm))
        else:
            self.write("rollback", self.vrm.rollback)
        screen = self.screen
        if isinstance(screen, VrmModal) and screen.CANCEL_ON_ROLLBACK:
            screen.dismiss(None)

    def action_command_palette(self) -> None:
        """The palette, with rollback above it (palette.py)."""
        if self.use_command_palette and not any(isinstance(screen, CommandPalette)
                                                for screen in self.screen_stack):
            self.push_screen(VrmPalette())

    @on(MigrationAsked)
    def _migration_asked(self) -> None:
        self.polls.poll(Source.MIGRATION, repeat=False)

    def write(self, action: str, call: Callable[[], ApplyResult]) -> None:
        """Run a traffic change in its own thread; timed from now (the key press)."""
        if line := self.dashboard.pane(ActionLine):  # found from any screen (help, logs, a modal)
            line.show_progress(f"… {action} in progress")
        self.changes.write(action, call)

    @on(ActionProgress)
    def _progress(self, message: ActionProgress) -> None:
        if line := self.dashboard.pane(ActionLine):
            line.show_progress(message.text)

    def steer_call(self, what: str, call: Callable[[], object]) -> None:
        self.changes.steer(what, call)

    @on(ActionDone)
    def _done(self, message: ActionDone) -> None:
        self.last_action = message
        mark = "✓" if message.ok else "✗ FAILED:"
        timing = f" ({message.elapsed_ms:.0f} ms from key)" if message.elapsed_ms else ""
        line = f"{mark} {message.action} {message.text}{timing}"
        # The action line, not a toast: it stays until a later event, and covers no pane.
        if action_line := self.dashboard.pane(ActionLine):
            action_line.show_event(line, message.ok)
        if isinstance(self.screen, VrmModal):  # and on the screen over the dashboard
            self.screen.show_action(line, message.ok)
        if not message.ok:
            self.bell()
        # The new split in the panes too, once the result's own frame is out.
        self.set_timer(STATUS_AFTER_ACTION_S,
                       lambda: self.polls.poll(Source.STATUS, repeat=False))

    async def action_quit(self) -> None:
        self.exit()


