"""The operator TUI: live panes and one-key actions over the traffic core.

Thin by design: every poll and every action runs in a thread worker, with the timeouts of
the plain modules it calls, and posts a typed message; handlers hand data to panes. Each
poll is scheduled when the previous one finishes, so polls never pile up. Rollback calls
the traffic controller and nothing else, so it works with every telemetry source down.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import ClassVar, TypeVar

from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.command import CommandPalette
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.geometry import Size
from textual.widget import Widget
from textual.widgets import Footer, Header, Static

from vrm_tui.console import ApplyResult, Console, MigrationView
from vrm_tui.core.errors import VrmError
from vrm_tui.core.names import SPLIT_ACTIONS, Control
from vrm_tui.core.split import Split
from vrm_tui.tui import actions
from vrm_tui.tui.commands import VrmCommands
from vrm_tui.tui.messages import (
    ActionDone,
    AlertsUpdate,
    GpuUpdate,
    HistoryUpdate,
    JournalUpdate,
    MigrationAsked,
    MigrationUpdate,
    ParityUpdate,
    SourceFailed,
    StatusUpdate,
    TrafficUpdate,
    VramUpdate,
)
from vrm_tui.tui.palette import VrmPalette
from vrm_tui.tui.polls import MONITORING, Polls, Source
from vrm_tui.tui.screens.bench import BenchScreen
from vrm_tui.tui.screens.confirm import ConfirmScreen
from vrm_tui.tui.screens.help import HelpScreen
from vrm_tui.tui.screens.logs import LogScreen
from vrm_tui.tui.screens.modal import VrmModal
from vrm_tui.tui.screens.parity import ParityScreen
from vrm_tui.tui.screens.weight import WeightScreen
from vrm_tui.tui.widgets.action_line import ActionLine
from vrm_tui.tui.widgets.alerts import AlertsPane
from vrm_tui.tui.widgets.health import HealthPane
from vrm_tui.tui.widgets.journal import JournalPane
from vrm_tui.tui.widgets.latency import LatencyPane
from vrm_tui.tui.widgets.migration import MigrationPane
from vrm_tui.tui.widgets.parity import ParityPane
from vrm_tui.tui.widgets.split import SplitPane
from vrm_tui.tui.widgets.vram import VramPane
from vrm_tui.views import WINDOWS, Record, StackStatus

PROBE_TIMEOUT_S = 1.0
PAINT_S = 1.0
COMPACT_BELOW = (110, 34)
STATUS_AFTER_ACTION_S = 0.05

P = TypeVar("P", bound=Widget)
HANGUP_GRACE_S = 2.0
ACTION_WAIT_S = 60.0  # longest a traffic change runs (lock wait + verification), with room
REFUSAL_NOTICE_S = 4.0
READ_ONLY_BANNER = "READ-ONLY observer (vrm --read-only): keys that change traffic are off"


class VrmApp(App[None]):
    """vrm's dashboard. `read_only` disables every write action, in `refusal()` only."""

    CSS_PATH = "app.tcss"
    TITLE = "vrm"
    COMMANDS = App.COMMANDS | {VrmCommands}
    BINDINGS: ClassVar[list[BindingType]] = list(actions.bindings())  # actions.py

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
        self._launch_ppid = os.getppid()  # reparented to init later: the session is gone
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
        }, self._shows)
        self._panes: dict[type[Widget], Widget] = {}
        self._actions: set[threading.Thread] = set()  # traffic changes still running
        self.window = "1m"
        self.status: StackStatus | None = None
        self.last_action: ActionDone | None = None
        self._refused_at = -REFUSAL_NOTICE_S
        self._journal_primed = False  # the first read is history, not news
        self._hangup_timer: threading.Timer | None = None
        self.sub_title = f"{console.runtime_name} · {self.settings.proxy_url}"

    # --- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=self.live)
        if self.read_only:
            yield Static(READ_ONLY_BANNER, id="read-only-banner")
        yield ActionLine(id="action-line", classes="idle")
        with VerticalScroll(id="body"):  # scrolls when the terminal is too small for all
            with Horizontal(id="top-row"):
                yield SplitPane(id="split-pane")
                yield HealthPane(id="health-pane")
            with Horizontal(id="middle-row"):
                yield LatencyPane(id="latency-pane")
                yield VramPane(id="vram-pane")
            with Vertical(id="bottom-row"):
                yield AlertsPane(id="alerts-pane")
                yield MigrationPane(id="migration-pane")
                yield ParityPane(id="parity-pane")  # parity: hidden until parity is on
                yield JournalPane(id="journal-pane")
        yield Footer()

    def on_mount(self) -> None:
        self._apply_size(self.size)
        self.query_one("#body").focus()  # arrows and page keys scroll a small terminal
        if not self.live:
            return
        self.query_one(AlertsPane).display = self.settings.monitoring
        self.polls.start(set(Source) if self.settings.monitoring else set(Source) - MONITORING)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hang_up)
        self.set_interval(2.0, self._check_terminal)
        self.set_interval(PAINT_S, self._paint)

    def _paint(self) -> None:
        """Hand the panes what the polls fetched since the last paint, in one frame."""
        self.polls.paint()
        if line := self._pane(ActionLine):
            line.tick()

    def on_resize(self, event: events.Resize) -> None:
        self._apply_size(event.size)

    def _apply_size(self, size: Size) -> None:
        """Choose the layout from `size`: the Resize event's, the new one (`self.size` may
        still hold the previous size while the event is handled)."""
        compact = size.width < COMPACT_BELOW[0] or size.height < COMPACT_BELOW[1]
        self.set_class(compact, "compact")
        for footer in self.query(Footer):
            footer.compact = compact
            footer.show_command_palette = not compact
        for latency in self.query(LatencyPane):
            latency.compact = compact
        for health in self.query(HealthPane):
            health.compact = compact
        for vram in self.query(VramPane):
            vram.compact = compact

    def _check_terminal(self) -> None:
        """Leave when the SSH session is gone (no orphan spinning a core)."""
        if self.is_headless:
            return
        stream = sys.__stdin__
        orphaned = os.getppid() != self._launch_ppid and os.getppid() == 1
        if stream is None or not os.isatty(stream.fileno()) or orphaned:
            self._hang_up()

    def _hang_up(self) -> None:
        """The terminal is gone: exit cleanly if we can, and for certain soon after.

        Restoring a terminal that no longer exists can block or fail; nobody is left to
        see it, and a TUI spinning on a dead tty is worse than a hard exit."""
        if self._hangup_timer is None:
            self._hangup_timer = threading.Timer(HANGUP_GRACE_S, self._force_exit)
            self._hangup_timer.daemon = True
            self._hangup_timer.start()
        self.exit(return_code=129)

    def _force_exit(self) -> None:
        """The hang-up's hard exit, once a traffic change in flight has finished."""
        self._wait_for_actions()
        os._exit(129)

    def _wait_for_actions(self) -> None:
        for thread in list(self._actions):
            thread.join(ACTION_WAIT_S)

    def exited_cleanly(self) -> int:
        """After `run()`: wait for a traffic change still running (the demo stops its stack
        only after), then the exit status (129 after a hang-up); no forced exit any more."""
        if self._hangup_timer is not None:
            self._hangup_timer.cancel()
        self._wait_for_actions()
        return self.return_code or 0

    # --- polling (polls.py schedules; these say what a source feeds) ----------------------

    def _shows(self, source: Source) -> bool:
        """Whether `source`'s pane is on screen: a hidden pane's source is not polled."""
        pane = {Source.VRAM: VramPane, Source.GPU: VramPane, Source.ALERTS: AlertsPane,
                Source.HISTORY: LatencyPane}.get(source)
        found = self._pane(pane) if pane is not None else None
        return pane is None or (found is not None and found.display)

    def _fetch_journal(self) -> JournalUpdate:
        records, self._journal_offset = self.vrm.journal_since(self._journal_offset)
        return JournalUpdate(records)

    # --- parity (vrm parity): the pane's poll and the `d` key -------------------------------

    @on(ParityUpdate)
    def _parity(self, message: ParityUpdate) -> None:
        if pane := self._pane(ParityPane):
            pane.show_report(message.report)

    def action_parity_diff(self) -> None:
        try:
            examples = self.vrm.parity_examples(50)
        except VrmError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.push_screen(ParityScreen(examples))

    # --- end parity ------------------------------------------------------------------------

    def _pane(self, kind: type[P]) -> P | None:
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

    @on(GpuUpdate)
    def _gpu(self, message: GpuUpdate) -> None:
        if pane := self._pane(VramPane):
            pane.show_gpus(message.report)

    @on(AlertsUpdate)
    def _alerts(self, message: AlertsUpdate) -> None:
        if pane := self._pane(AlertsPane):
            pane.show_alerts(message.alerts)

    @on(HistoryUpdate)
    def _history(self, message: HistoryUpdate) -> None:
        if pane := self._pane(LatencyPane):
            pane.show_history(message.history)

    @on(MigrationUpdate)
    def _migration(self, message: MigrationUpdate) -> None:
        self.migration = message.view
        if pane := self._pane(MigrationPane):
            pane.show_view(message.view)

    @on(StatusUpdate)
    def _status(self, message: StatusUpdate) -> None:
        self.status = message.status
        if split := self._pane(SplitPane):
            split.show_status(message.status)
        if health := self._pane(HealthPane):
            health.show_status(message.status)
        if latency := self._pane(LatencyPane):
            latency.show_status(message.status)

    @on(TrafficUpdate)
    def _traffic(self, message: TrafficUpdate) -> None:
        if latency := self._pane(LatencyPane):
            latency.show_traffic(message.snapshot)
        if split := self._pane(SplitPane):
            split.show_traffic(message.snapshot)

    @on(VramUpdate)
    def _vram(self, message: VramUpdate) -> None:
        if pane := self._pane(VramPane):
            pane.show_readings(message.readings)

    @on(JournalUpdate)
    def _journal(self, message: JournalUpdate) -> None:
        if not message.records:
            return
        if self._journal_primed:
            self._others_changes(message.records)
        self._journal_primed = True
        if journal := self._pane(JournalPane):
            journal.show_journal(message.records)
        if split := self._pane(SplitPane):
            split.show_journal(message.records)

    def _others_changes(self, records: list[Record]) -> None:
        """A split change made elsewhere (another TUI, the CLI) replaces the action line;
        an observer also gets a notice naming who made it."""
        for record in records:
            own = record.pid == os.getpid() and record.host == socket.gethostname()
            if own or record.action not in SPLIT_ACTIONS or record.result != "ok" \
                    or not record.to:
                continue
            before = f"{record.from_['rust']}% → " if record.from_ else ""
            text = f"{record.operator} {record.action}: rust {before}{record.to['rust']}%"
            at = datetime.fromisoformat(record.time).timestamp()
            if line := self._pane(ActionLine):
                line.show_event(f"✓ {text}", True, at)
            if self.read_only:
                self.notify(text, title="split changed", timeout=10, markup=False)

    @on(SourceFailed)
    def _failed(self, message: SourceFailed) -> None:
        """A failing source's pane says so instead of showing old numbers."""
        error = message.error
        if message.source == Source.STATUS:
            self.status = None
            if health := self._pane(HealthPane):
                health.show_error(error)
        elif message.source == Source.TRAFFIC:
            if latency := self._pane(LatencyPane):
                latency.show_error(error)
            if split := self._pane(SplitPane):
                split.show_traffic(None, error)
        elif message.source == Source.ALERTS:
            if alerts := self._pane(AlertsPane):
                alerts.show_error(error.split(": ", 1)[-1])
        elif message.source == Source.JOURNAL:
            self.notify(f"journal unreadable: {error}", severity="error", markup=False)

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
        if reason and (default_namespace in (None, self)):
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

    def _served(self) -> Split | None:
        return self.status.served.split if self.status and self.status.served else None

    def action_rollback(self) -> None:
        """Roll back now, from any screen (a priority binding: before any screen, modal or
        the palette sees the key). A running migration notices the split changed and stops;
        a question about the old split (weight, confirm) is closed."""
        self._write("rollback", self.vrm.rollback)
        screen = self.screen
        if isinstance(screen, VrmModal) and screen.CANCEL_ON_ROLLBACK:
            screen.dismiss(None)

    def action_command_palette(self) -> None:
        """The palette, with rollback above it (palette.py)."""
        if self.use_command_palette and not any(isinstance(screen, CommandPalette)
                                                for screen in self.screen_stack):
            self.push_screen(VrmPalette())

    def action_rust_up(self) -> None:
        current = self._served()
        if current is None:
            self.notify("the served split is unknown; cannot step from it", severity="error")
            return
        target = current.moved(self.step)
        if target == current:
            self.notify("rust is already at 100%")
            return
        diff = self.vrm.upstream_diff(current, target)

        def answered(yes: bool | None) -> None:
            if yes:
                self._write("set-split", lambda: self.vrm.set_split(target))

        self._unless_migrating(lambda: self.push_screen(
            ConfirmScreen(f"Move rust {current.rust}% → {target.rust}%?", diff), answered))

    def action_rust_down(self) -> None:
        current = self._served()
        if current is None:
            self.notify("the served split is unknown; use r to roll back", severity="error")
            return
        target = current.moved(-self.step)
        if target != current:
            self._unless_migrating(
                lambda: self._write("set-split", lambda: self.vrm.set_split(target)))

    def action_set_weight(self) -> None:
        current = self._served() or self.settings.split

        def chosen(target: Split | None) -> None:
            if target is not None and target != current:
                self._write("set-split", lambda: self.vrm.set_split(target))

        self._unless_migrating(lambda: self.push_screen(
            WeightScreen(current, self.vrm.upstream_diff), chosen))

    def action_reload_nginx(self) -> None:
        self._write("reload", self.vrm.reload)

    def action_benchmark(self) -> None:
        self.push_screen(BenchScreen(self.vrm, self.bench_seconds))

    def action_migrate(self) -> None:
        """Start a migration (asks first), or adopt one whose guard is gone."""
        view = self.migration
        if view is not None and view.state.active and view.guarded:
            self.notify(f"migration {view.state.id} is running: p pauses or resumes it, "
                        "P promotes, X aborts, r rolls back")
            return
        adopting = view is not None and view.state.active
        try:
            plan = view.state.plan_obj if view is not None and adopting \
                else self.vrm.load_plan()
        except VrmError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        question = (f"Adopt UNGUARDED migration {view.state.id} at step {view.state.step + 1} "
                    "with a new guard?" if view is not None and adopting else
                    f"Migrate rust {' → '.join(map(str, plan.steps))}% with "
                    f"{plan.bake_seconds:g}s bakes?")

        def answered(yes: bool | None) -> None:
            if yes:
                self._migration_call("migration", self.vrm.resume_migration if adopting
                                     else lambda: self.vrm.start_migration(plan))

        self.push_screen(ConfirmScreen(question, "A detached guard runs it: it keeps going "
                                       "if this terminal goes away.\nGates: rust error rate, "
                                       "latency per route, p95 ceiling, health, VRAM. A failed "
                                       "gate rolls back at once; r rolls back any time."),
                         answered)

    def action_migration_pause(self) -> None:
        view = self.migration
        if view is None or not view.state.active:
            self.notify("no migration is running")
            return
        self._steer("resume" if view.state.phase == "paused" else "pause")

    def action_migration_promote(self) -> None:
        self._confirm_steer("promote", "Promote to the next step now, whatever the gates say? "
                            "The timeline will say who promoted it and what the gates said.")

    def action_migration_abort(self) -> None:
        self._confirm_steer("abort", "Abort the migration and roll back to rust 0%?")

    def _confirm_steer(self, action: Control, question: str) -> None:
        view = self.migration
        if view is None or not view.state.active:
            self.notify("no migration is running")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._steer(action)

        self.push_screen(ConfirmScreen(question, f"migration {view.state.id}, step "
                                       f"{view.state.step + 1} ({view.label})"), answered)

    def _steer(self, action: Control) -> None:
        def call() -> str:
            steered = self.vrm.steer(action)
            if not steered.applied:  # superseded by an abort or pause, or not applicable
                raise VrmError(steered.text)
            return steered.text

        self._migration_call(action, call)

    def _migration_call(self, what: str, call: Callable[[], object]) -> None:
        """Steering talks to files and may spawn a guard: a worker, never the UI thread."""

        def run() -> None:
            try:
                result = call()
                text = result if isinstance(result, str) else f"migration {what}: guard runs it"
                self.post_message(ActionDone(f"migration {what}", True, text, 0.0))
            except VrmError as exc:
                self.post_message(ActionDone(f"migration {what}", False, str(exc), 0.0))
            except Exception as exc:
                self.post_message(ActionDone(f"migration {what}", False,
                                             f"{type(exc).__name__}: {exc}", 0.0))
            self.post_message(MigrationAsked())

        self._in_own_thread(f"vrm-migration-{what}", run)

    @on(MigrationAsked)
    def _migration_asked(self) -> None:
        self.polls.poll(Source.MIGRATION, repeat=False)

    def _unless_migrating(self, change: Callable[[], object]) -> None:
        """A weight change stops a running migration: the console's question, asked first."""
        view = self.migration
        question = self.vrm.split_change_question() \
            if view is not None and view.state.active else None
        if question is None:
            change()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                change()

        self.push_screen(ConfirmScreen(question.text, question.detail), answered)

    def action_logs(self) -> None:
        self.push_screen(LogScreen(self.vrm))

    def action_help(self) -> None:
        """Every key of actions.py (the footer hides some: p P X d), and the palette's."""
        keys = [dataclasses.replace(b, key="q,ctrl+q", key_display="q, ctrl+q")
                if b.action == "quit" else dataclasses.replace(b, show=True)
                for b in self.BINDINGS if isinstance(b, Binding) and b.id]
        keys.append(Binding("ctrl+p", "command_palette", "Commands", id="vrm.palette",
                            tooltip="Search every action by name (r on an empty search "
                                    "rolls back)"))
        self.push_screen(HelpScreen(keys, self.refusal("rollback") or "",
                                    quit_stops_stack=self.quit_stops_stack))

    def action_window(self) -> None:
        names = list(WINDOWS)
        self.window = names[(names.index(self.window) + 1) % len(names)]
        self.polls.poll(Source.TRAFFIC, repeat=False)  # the pane's title names the window

    def _write(self, action: str, call: Callable[[], ApplyResult]) -> None:
        """Run a traffic change in a worker; time it from now (the key press)."""
        started = time.perf_counter()
        if line := self._pane(ActionLine):  # found from any screen (help, logs, a modal)
            line.show_progress(f"… {action} in progress")

        def run() -> None:
            try:
                result = call()
                ok, text = True, _describe(result)
            except VrmError as exc:
                ok, text = False, str(exc)
            except Exception as exc:
                ok, text = False, f"{type(exc).__name__}: {exc}"
            self.post_message(ActionDone(action, ok, text,
                                         (time.perf_counter() - started) * 1000))

        self._in_own_thread(f"vrm-{action}", run)

    def _in_own_thread(self, name: str, run: Callable[[], None]) -> None:
        """An action in a thread of its own, not the event loop's pool: the polls share that
        pool (6 threads on 2 cores), and with a backend hung each waits out its timeout
        there, so a rollback queued behind them would wait seconds. `exited_cleanly` waits
        for it: quitting while a rollback runs lets it finish (and the demo stops its stack
        only after)."""
        thread = threading.Thread(target=run, name=name)
        self._actions = {t for t in self._actions if t.is_alive()} | {thread}
        thread.start()

    @on(ActionDone)
    def _done(self, message: ActionDone) -> None:
        self.last_action = message
        mark = "✓" if message.ok else "✗ FAILED:"
        timing = f" ({message.elapsed_ms:.0f} ms from key)" if message.elapsed_ms else ""
        line = f"{mark} {message.action} {message.text}{timing}"
        # The action line, not a toast: it stays until a later event, and covers no pane.
        if action_line := self._pane(ActionLine):
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


def _describe(result: ApplyResult) -> str:
    return f"→ {result.after}, generation {result.generation} verified"
