"""The console: one deployment, wired once, with the application services both faces use.

`cli.py` and `tui/` only parse, render and bind keys. Every decision (how a migration is
steered, where reports go, whether the stack must be running for a benchmark) is made here
once, so the two faces can never disagree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vrm_tui.core import services
from vrm_tui.core.backend import Backend
from vrm_tui.core.errors import BadInput, Failure, environment_fault
from vrm_tui.core.names import Control
from vrm_tui.core.split import Split
from vrm_tui.journal import Journal, Record, operator_identity
from vrm_tui.settings import Settings
from vrm_tui.stack import lifecycle
from vrm_tui.stack.runtime import Runtime
from vrm_tui.traffic.controller import ApplyResult, TrafficController

if TYPE_CHECKING:  # imported where used: `vrm rollback` must not pay for them at start
    from asyncio import Event

    from vrm_tui.core.corpus import Corpus
    from vrm_tui.migrate import plan as plan_mod
    from vrm_tui.migrate.state import MigrationState, StateStore
    from vrm_tui.parity.control import ParityControl
    from vrm_tui.parity.report import ParityReport
    from vrm_tui.status import StackStatus
    from vrm_tui.telemetry.accesslog import AccessLogSource
    from vrm_tui.telemetry.backend_metrics import VramReading
    from vrm_tui.telemetry.capture import Capture
    from vrm_tui.telemetry.gpu import GpuReport
    from vrm_tui.telemetry.health import Baselines
    from vrm_tui.telemetry.prometheus import Alert
    from vrm_tui.traffic.served import Served

__all__ = ["BenchRun", "Console", "MigrationView", "Steered"]

BENCH_MODES = ("benchmark", "stress", "compare", "monitor")
"""The seed's modes in the order `all` runs them."""


@dataclass(frozen=True)
class BenchRun:
    """A finished benchmark: its reports (JSON-ready dicts) and the folder they were written to."""

    reports: list[dict[str, Any]]
    folder: Path

    @property
    def failed(self) -> bool:
        """True when any request failed in a mode other than stress (which looks for limits)."""
        return any(r.get("results") and any(v["failed"] for v in r["results"].values())
                   for r in self.reports if r["mode"] != "stress")


@dataclass(frozen=True)
class MigrationView:
    """A migration and whether a live guard runs it (UNGUARDED when not)."""

    state: MigrationState
    guarded: bool
    last_beat: float | None = None  # its guard's newest beat for this migration

    @property
    def label(self) -> str:
        """The phase as shown: an active migration without a guard is UNGUARDED."""
        if self.state.active and not self.guarded:
            return "UNGUARDED"
        return self.state.phase

    @property
    def unguarded_reason(self) -> str:
        """Why nobody guards it and what to do, in one line ("" while guarded or ended)."""
        if self.label != "UNGUARDED":
            return ""
        silent = (f"silent since {time.strftime('%H:%M:%S', time.localtime(self.last_beat))}"
                  if self.last_beat else "it never beat")
        guard = f"its guard (pid {self.state.owner_pid}) is gone" \
            if self.state.owner_pid else "no guard ever took it over"
        return (f"{guard} ({silent}); rust stays at {self.state.target}% unchecked until "
                "`vrm migrate resume` or `vrm migrate abort`")


@dataclass(frozen=True)
class Steered:
    """What a steering request did, for the face to say; `applied` False when it was
    superseded (by an abort or a pause asked at the same time) or could not apply."""

    state: MigrationState
    text: str
    applied: bool = True


ANSWER_WAIT_S = 5.0
"""How long a steering command waits for the guard's answer (it drains every 0.25 s; a tick
that probes a hung backend can take a few seconds)."""


class Console:
    """One deployment: its settings, runtime, traffic controller, journal and migration."""

    def __init__(self, settings: Settings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self.paths = settings.paths
        self.runtime = runtime or lifecycle.runtime_for(settings)
        self.journal = Journal(self.paths.journal)
        self.controller = TrafficController(settings, self.runtime, self.journal)

    @cached_property
    def baselines(self) -> Baselines:
        """Each service's recent probe latencies (what "degraded" is relative to)."""
        from vrm_tui.telemetry.health import Baselines

        return Baselines()

    @cached_property
    def migrations(self) -> StateStore:
        from vrm_tui.migrate.state import StateStore

        return StateStore(self.settings.state_dir)

    # --- stack -----------------------------------------------------------------------------

    def up(self) -> list[str]:
        """Start what is not running; a fresh proxy starts on the configured split."""
        self.parity.sync_routes()
        return lifecycle.bring_up(self.runtime, self.controller)

    def down(self, names: list[str] | None = None) -> list[str]:
        """Stop what vrm started (all of it, or just `names`). A migration guard goes with
        the whole stack (the migration stays recorded: `vrm migrate resume` adopts it)."""
        stopped = lifecycle.bring_down(self.runtime, self.controller, names)
        if names is None:
            from vrm_tui.migrate import guard

            if guard.stop(self.settings):
                stopped.append(services.MIGRATION_GUARD)
        return stopped

    def require_running(self) -> None:
        """Refuse work that needs the proxy (a benchmark) when it is not running."""
        if not self.runtime.proxy_running():
            raise Failure("the stack is not running: start it with `vrm up`")

    # --- traffic ---------------------------------------------------------------------------

    def deploy(self, split: Split | None = None) -> tuple[list[str], ApplyResult]:
        """Start the stack if needed, then serve `split` (default: the configured one)."""
        started = self.up()
        result = self.controller.set_split(split or self.settings.split, "deploy")
        self.settle_canary_timeout()
        return started, result

    def set_split(self, split: Split) -> ApplyResult:
        """An operator's weight change from the TUI."""
        result = self.controller.set_split(split, action="set-split")
        self.settle_canary_timeout()
        return result

    def settle_canary_timeout(self) -> int | None:
        """Give rust attempts the read timeout for now (migrate/canary.py)."""
        from vrm_tui.migrate import canary  # not on `vrm rollback`'s import path

        return canary.settle(self.controller)

    def rollback(self) -> ApplyResult:
        """All traffic to typescript, verified. A running migration notices and stops."""
        return self.controller.rollback()

    def reload(self) -> ApplyResult:
        self.parity.sync_routes()
        return self.controller.reload()

    def served(self, timeout: float = 1.0) -> Served:
        return self.controller.served(timeout=timeout)

    def status(self, timeout: float = 1.0) -> StackStatus:
        """What nginx serves, what is on disk, and each service's health."""
        from vrm_tui.status import collect

        return collect(self.runtime, self.controller, timeout=timeout,
                       baselines=self.baselines)

    # --- telemetry -------------------------------------------------------------------------

    def traffic_source(self, backfill: bool = True) -> AccessLogSource:
        """A tail of the proxy's access log with per-backend statistics."""
        from vrm_tui.telemetry import stub_status
        from vrm_tui.telemetry.accesslog import AccessLogSource

        status_url = f"http://127.0.0.1:{self.settings.proxy_status_port}{stub_status.PATH}"
        return AccessLogSource(self.runtime.access_log(), self.settings.backend_addresses,
                               backfill=backfill, status_url=status_url)

    def vram(self, timeout: float = 1.0) -> list[VramReading]:
        from vrm_tui.telemetry.backend_metrics import scrape_vram

        s = self.settings
        return [scrape_vram(b, s.backend_url(b), s.max_vram_gb, timeout) for b in Backend]

    def gpus(self) -> GpuReport:
        """NVML's view, with each backend's processes mapped to it by pid."""
        from vrm_tui.telemetry.gpu import Owners, read_gpus

        roots = {pid: backend for service, backend in services.BACKENDS.items()
                 if (pid := self.runtime.backend_pid(service))}
        return read_gpus(Owners(roots))

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.prometheus_port}"

    def alerts(self, timeout: float = 1.0) -> list[Alert]:
        from vrm_tui.telemetry import prometheus

        return prometheus.alerts(self.prometheus_url, timeout)

    def latency_history(self) -> dict[str, dict[str, list[float]]]:
        from vrm_tui.telemetry import prometheus

        return prometheus.history(self.prometheus_url)

    # --- migration -------------------------------------------------------------------------

    def migration(self) -> MigrationView | None:
        """The migration as every face shows it: its state and whether a guard runs it.

        A migration whose guard went silent is UNGUARDED; the first vrm to notice journals it
        (once per lost guard)."""
        state = self.migrations.load()
        if state is None:
            return None
        view = MigrationView(state, self.migrations.guarded(state),
                             self.migrations.last_beat(state.id))
        if view.label == "UNGUARDED" and self.migrations.note_unguarded(state):
            self.journal.append(Record(
                action="migration", result="failed",
                detail=f"{state.id} UNGUARDED: {view.unguarded_reason}"))
        return view

    def load_plan(self, path: Path | None = None, steps: str | None = None,
                  bake: str | float | None = None,
                  gate_interval: str | float | None = None) -> plan_mod.Plan:
        from vrm_tui.migrate import plan as plan_mod

        return plan_mod.load(path or plan_mod.DEFAULT_PLAN, steps, bake, gate_interval)

    def start_migration(self, plan: plan_mod.Plan) -> MigrationState:
        """Bring the stack up, record a new migration and hand it to a detached guard."""
        from vrm_tui.migrate import guard
        from vrm_tui.migrate.runner import Runner

        runner = Runner(self.controller)
        existing = self.migrations.load()
        if existing is not None and existing.active:
            runner.start(plan)  # raises MigrationBusy with what to do
        self.up()
        state = runner.start(plan)
        guard.spawn(self.settings)
        return self.migrations.load() or state

    def resume_migration(self, restart_step: bool = False) -> MigrationState:
        """Adopt an unguarded migration with a new guard."""
        from vrm_tui.migrate import guard

        state = self.migrations.load()
        if state is None or not state.active:
            raise Failure("no unfinished migration to resume")
        if self.migrations.guarded(state):
            if restart_step:
                raise BadInput("--restart-step adopts an unguarded migration; this one runs "
                               f"(guard pid {state.owner_pid}): pause it, abort it, or wait")
            steered = self._ask_guard(state, "resume", operator_identity())
            if not steered.applied:
                raise Failure(steered.text)
            return self.migrations.load() or state
        guard.spawn(self.settings, restart_step=restart_step)
        return self.migrations.load() or state

    def steer(self, action: Control) -> Steered:
        """pause | resume | promote | abort, from whichever face asked: queued for the guard,
        which journals it with the name of the person who asked and answers it (applied, or
        superseded by an abort or pause asked at the same time).

        An abort always rolls back: when the guard is gone, cannot be asked (a full disk) or
        does not answer, this process rolls back itself. An unguarded migration can otherwise
        only be resumed (a new guard adopts it)."""
        state = self.migrations.load()
        if state is None or not state.active:
            raise Failure("no migration is running")
        who = operator_identity()
        if self.migrations.guarded(state):
            return self._ask_guard(state, action, who)
        if action == "abort":
            return self._abort_here(state, who, "its guard is gone")
        if action == "resume":
            return Steered(self.resume_migration(), f"migration {state.id} adopted by a new "
                                                    "guard")
        raise Failure(f"migration {state.id} is UNGUARDED (its guard is gone, cut off at step "
                      f"{state.step + 1}); `vrm migrate resume` adopts it, "
                      "`vrm migrate abort` stops it")

    def _ask_guard(self, state: MigrationState, action: Control, who: str) -> Steered:
        """Queue `action` for the running guard and wait for its answer."""
        queue = self.migrations.queue
        try:
            request = queue.ask(action, who)
        except OSError as exc:
            if action == "abort":
                return self._abort_here(state, who,
                                        f"could not queue it: {_write_fault(exc, queue.folder)}")
            raise Failure(f"could not ask migration {state.id} to {action}: "
                          f"{_write_fault(exc, queue.folder)}") from None
        answer = queue.wait(request.id, ANSWER_WAIT_S)
        if answer is None and action == "abort":
            return self._abort_here(state, who, f"its guard did not answer within "
                                                f"{ANSWER_WAIT_S:g}s")
        if answer is None and queue.withdraw(request.id):
            return Steered(state, f"migration {state.id}: {action} {request.id}: not-applied: "
                                  f"its guard did not answer within {ANSWER_WAIT_S:g}s "
                                  "(request withdrawn)", applied=False)
        if answer is None:  # taken just now: its answer follows
            answer = queue.wait(request.id, ANSWER_WAIT_S)
        if answer is None:
            return Steered(state, f"migration {state.id}: {action} {request.id}: taken by its "
                                  "guard, no answer yet (`vrm journal` shows it)", applied=False)
        return Steered(self.migrations.load() or state, f"migration {state.id}: {answer.text}",
                       answer.applied)

    def _abort_here(self, state: MigrationState, who: str, why: str) -> Steered:
        """Abort without the guard: roll back from this process. A live guard that did not
        answer notices the rollback on its next tick and stops; a migration nobody guards is
        marked aborted here."""
        from vrm_tui.migrate.runner import Runner

        if self.migrations.guarded(state) and state.owner_pid is not None:
            try:
                result = self.controller.rollback()
            except OSError as exc:
                raise Failure(f"migration {state.id}: abort ({why}): rollback failed: "
                              f"{_write_fault(exc)}") from None
            return Steered(state, f"migration {state.id} abort ({why}): rolled back here to "
                                  f"{result.after}; its guard stops when it notices")
        runner = Runner(self.controller)
        runner.abort(state, who)
        if "ROLLBACK FAILED" in state.reason:
            raise Failure(f"migration {state.id} abort ({why}): {state.reason}")
        if runner.write_error:
            raise Failure(f"migration {state.id} rolled back ({why}), but its abort is not "
                          f"recorded: {runner.write_error}")
        return Steered(state, f"migration {state.id} aborted ({why}); rolled back")

    def wait_migration(self, poll: float = 0.5,
                       on_change: Callable[[MigrationView], None] | None = None,
                       ) -> MigrationView:
        """Follow the migration until it ends or loses its guard; returns its last view."""
        last: tuple[object, ...] | None = None
        while True:
            view = self.migration()
            if view is None:
                raise Failure("no migration yet")
            key = (view.state.phase, view.state.step, view.guarded, view.state.reason,
                   (view.state.verdict or {}).get("status"))
            if on_change and key != last:
                on_change(view)
            last = key
            if not view.state.active or not view.guarded:
                return view
            time.sleep(poll)

    # --- benchmark -------------------------------------------------------------------------

    def run_benchmark(self, mode: str, options: Any,
                      progress: Callable[[str, Any, float], None] | None = None,
                      stop: Event | None = None) -> BenchRun:
        """Run one seed mode (or `all`) against the running stack and write its reports to
        `<deploy>/results/<timestamp>/` and the proxy's /performance-comparison."""
        from vrm_tui.bench import modes, report

        if mode != "all" and mode not in BENCH_MODES:
            raise BadInput(f"benchmark mode {mode!r}: expected one of "
                           f"{', '.join((*BENCH_MODES, 'all'))}")
        if isinstance(options, modes.Options) and options.corpus is None:
            options = replace(options, corpus=self.corpus())
        modes.refuse(mode, options)
        self.require_running()
        pids = {s.name: s.pid for s in self.runtime.services() if s.pid}
        chosen = list(BENCH_MODES) if mode == "all" else [mode]

        runners = {"benchmark": modes.benchmark, "stress": modes.stress,
                   "compare": modes.compare}

        async def run() -> list[dict[str, Any]]:
            found = []
            for done, name in enumerate(chosen):
                share = modes.share(progress, done, len(chosen))  # one bar over all modes
                if name == "monitor":
                    found.append(await modes.monitor(self.settings, options, pids, share,
                                                     stop))
                else:
                    found.append(await runners[name](self.settings, options, share, stop))
            return found

        import asyncio

        reports = asyncio.run(run())
        folder = report.write(reports, self.settings.deploy_dir / "results",
                              self.paths.comparison)
        return BenchRun(reports, folder)

    # --- request corpus --------------------------------------------------------------------

    def corpus(self, file: Path | None = None) -> Corpus:
        """What benchmarks, validate and demo traffic send: `file` (--requests-file), else
        VRM_REQUESTS, else the seed's GET metrics (plus the rehearsal tasks in rehearsal)."""
        from vrm_tui.core import corpus as corpus_mod

        s = self.settings
        if file is not None:
            return corpus_mod.load(file if file.is_absolute() else Path.cwd() / file)
        return corpus_mod.configured(s.requests, s.deploy_dir, s.rehearsal)

    def capture(self, sample: int, redact: tuple[str, ...] = ()) -> Capture:
        """The last `sample` proxied requests of the access log as a corpus to replay."""
        from vrm_tui.telemetry.capture import capture

        return capture(self.runtime.access_log(), sample, redact)

    # --- validation ------------------------------------------------------------------------

    def validate(self, host: str, speedup: float, check_timeout: float = 20.0) -> list[Any]:
        """The production checks as rows (PASS / WARN / FAIL / SKIP), each under its own
        deadline of `check_timeout` seconds."""
        import asyncio

        from vrm_tui import validate

        options = validate.Options(host, speedup, check_timeout=check_timeout)
        return asyncio.run(validate.run(self.settings, options,
                                        self.controller.store.main_config, self.corpus()))

    # --- parity (vrm parity) ----------------------------------------------------------------

    @cached_property
    def parity(self) -> ParityControl:
        from vrm_tui.parity.control import ParityControl

        return ParityControl(self.settings, self.runtime, self.controller, self.journal)

    def parity_on(self, sample: float | None = None) -> ParityReport:
        return self.parity.on(sample)

    def parity_off(self) -> ParityReport:
        return self.parity.off()

    def parity_report(self, examples: int = 0, timeout: float = 0.5) -> ParityReport:
        return self.parity.report(examples, timeout)

    def parity_examples(self, limit: int) -> list[dict[str, Any]]:
        return self.parity.examples(limit)

    # --- journal ---------------------------------------------------------------------------

    def journal_records(self, limit: int | None = None) -> list[Record]:
        return self.journal.read(limit=limit)


def _write_fault(exc: OSError, path: Path | None = None) -> str:
    """An OSError as one phrase ("disk full at <path>"), whatever its kind."""
    return str(environment_fault(exc, path) or exc)
