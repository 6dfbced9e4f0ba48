"""The console: one deployment, wired once, with the application services both faces use.

`cli.py` and `tui/` only parse, render and bind keys. Every decision (how a migration is
steered, where reports go, whether the stack must be running for a benchmark) is made here
once, so the two faces can never disagree.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vrm_tui.core import services
from vrm_tui.core.backend import Backend
from vrm_tui.core.clock import hhmmss
from vrm_tui.core.errors import BadInput, Failure, environment_fault
from vrm_tui.core.names import SPLIT_ACTIONS, Control
from vrm_tui.core.paths import CONFIGS
from vrm_tui.core.split import Split
from vrm_tui.journal import Record, operator_identity
from vrm_tui.settings import Settings, deploy_dir_path, parse_sample, state_dir_path
from vrm_tui.settings import load as load_settings
from vrm_tui.stack import lifecycle
from vrm_tui.stack.runtime import Runtime
from vrm_tui.traffic.controller import ApplyResult
from vrm_tui.wiring import Wiring

if TYPE_CHECKING:  # imported where used: `vrm rollback` must not pay for them at start
    from asyncio import Event

    from vrm_tui.bench.engine import Result
    from vrm_tui.bench.modes import Options as BenchOptions
    from vrm_tui.core.corpus import Corpus
    from vrm_tui.fleet.service import FleetRollback, FleetService, FleetStatus, HostRollback
    from vrm_tui.migrate import plan as plan_mod
    from vrm_tui.migrate.state import MigrationState, StateStore
    from vrm_tui.parity.control import ParityControl
    from vrm_tui.parity.report import ParityReport
    from vrm_tui.rehearsal.traffic import SyntheticTraffic
    from vrm_tui.status import StackStatus
    from vrm_tui.telemetry.accesslog import AccessLogSource
    from vrm_tui.telemetry.alertmanager import Silence
    from vrm_tui.telemetry.backend_metrics import VramReading
    from vrm_tui.telemetry.capture import Capture
    from vrm_tui.telemetry.gpu import GpuReport
    from vrm_tui.telemetry.health import Baselines
    from vrm_tui.telemetry.prometheus import Alert
    from vrm_tui.traffic.served import Served
    from vrm_tui.validate import Check

__all__ = ["ApplyResult", "BenchRun", "BenchmarkReport", "Console", "MigrationView", "Question",
           "Settings", "Steered", "deploy_dir_path", "load_settings", "parse_sample",
           "state_dir_path", "upstream_diff"]

BENCH_MODES = ("benchmark", "stress", "compare", "monitor")
"""The seed's modes in the order `all` runs them."""
BenchMode = Literal["benchmark", "stress", "compare", "monitor", "all"]
BenchProgress = Callable[[str, "Result", float], None]
"""(phase, its result so far, fraction of the whole run done)."""


@dataclass(frozen=True)
class BenchmarkReport:
    """One mode's report: `data` is what is written (JSON-ready), `results` the measurements
    behind it by target (rust, typescript, proxy), for a face's plot."""

    mode: str
    data: dict[str, Any]
    results: dict[str, Result]

    @classmethod
    def of(cls, found: dict[str, Any]) -> BenchmarkReport:
        """From a mode's dict, whose private "_results" key holds the measurements."""
        data = {k: v for k, v in found.items() if k != "_results"}
        return cls(str(found["mode"]), data, dict(found.get("_results") or {}))

    @property
    def failed(self) -> bool:
        """A request failed in a mode other than stress (which looks for limits)."""
        results = self.data.get("results") or {}
        return self.mode != "stress" and any(v["failed"] for v in results.values())

    def table(self) -> str:
        from vrm_tui.bench import report

        return report.table(self.data)

    def plot(self) -> str:
        """The latency histograms as text ("" without measurements)."""
        from vrm_tui.bench import report

        return report.plot(self.results) if self.results else ""


@dataclass(frozen=True)
class Question:
    """A confirmation a face must ask before an action: the question and what it changes."""

    text: str
    detail: str


@dataclass(frozen=True)
class BenchRun:
    """A finished benchmark: its reports and the folder they were written to."""

    reports: list[BenchmarkReport]
    folder: Path

    @property
    def failed(self) -> bool:
        """True when any request failed in a mode other than stress (which looks for limits)."""
        return any(r.failed for r in self.reports)


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
        silent = (f"silent since {hhmmss(self.last_beat)}"
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
        """Built from the composition root (`vrm_tui.wiring`), like the guard process."""
        self.wiring = Wiring(settings, runtime)
        self.settings = settings
        self.paths = settings.paths
        self.runtime = self.wiring.runtime
        self.journal = self.wiring.journal
        self.controller = self.wiring.controller

    @property
    def baselines(self) -> Baselines:
        """Each service's recent probe latencies (what "degraded" is relative to)."""
        return self.wiring.baselines

    @property
    def migrations(self) -> StateStore:
        return self.wiring.migrations

    # --- stack -----------------------------------------------------------------------------

    def up(self) -> list[str]:
        """Start what is not running; a fresh proxy starts on the configured split. A bad
        alert route (`amtool check-config`) is refused before anything starts."""
        if self.settings.monitoring:
            from vrm_tui.stack import monitoring

            monitoring.check_alertmanager(self.settings)
            if self.fleet().configured:  # Alertmanager's cluster peers: the fleet's hosts now
                from vrm_tui.fleet import targets

                targets.refresh(self.settings)
        self.parity.sync_routes()
        started = lifecycle.bring_up(self.runtime, self.controller)
        # VRM_FLEET + VRM_FLEET_ENDPOINTS: the host's agent (under compose, a service the
        # runtime started with the stack)
        if self.runtime.name != "compose" and self.fleet().start_agent():
            started.append(services.FLEET_AGENT)
        return started

    def down(self, names: list[str] | None = None) -> list[str]:
        """Stop what vrm started (all of it, or just `names`). A migration guard goes with
        the whole stack (the migration stays recorded: `vrm migrate resume` adopts it)."""
        stopped = lifecycle.bring_down(self.runtime, self.controller, names)
        if names is None:
            from vrm_tui.migrate import guard

            if guard.stop(self.settings):
                stopped.append(services.MIGRATION_GUARD)
            if self.fleet().stop_agent():
                stopped.append(services.FLEET_AGENT)
        return stopped

    def fleet(self) -> FleetService:
        """The fleet this host belongs to (VRM_FLEET): status, deploy, rollback, its agent."""
        from vrm_tui.fleet.service import FleetService

        return FleetService(self.settings, self.controller)

    def fleet_status(self) -> FleetStatus:
        """The TUI's fleet pane: desired split and every live host; an unreachable etcd is
        in the view (`unreachable`), never raised, so the pane says why it has no rows."""
        return self.fleet().status()

    def fleet_rollback(self, progress: Callable[[FleetRollback], None] | None = None
                       ) -> FleetRollback:
        """`r` in fleet mode: this host at once (nothing of etcd on its path; sticky if the
        fleet cannot be reached), then every live host, each one's verified time told to
        `progress` as it comes."""
        return self.fleet().rollback_here(progress)

    def fleet_host_rollback(self, host: str, timeout: float | None = None) -> HostRollback:
        """One host rolled back and held at rust 0 (the Fleet pane, `vrm fleet rollback
        --host`): this host locally, another through its hold key in etcd."""
        return self.fleet().rollback_host(host, timeout)

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
        return self.wiring.traffic_source(backfill)

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
        """Alertmanager's alerts (firing, silenced) and Prometheus's pending ones, each heard
        into the journal once (migrate/alerts.py)."""
        from vrm_tui.migrate import alerts

        return alerts.pane(self.settings, self.journal, timeout)

    def silence(self, matchers: list[str], span: str = "1h", comment: str = "") -> str:
        """Silence alerts for a window (Alertmanager's API), journaled with who; its id."""
        from vrm_tui.migrate import alerts

        return alerts.silence(self.settings, self.journal, matchers, alerts.parse_span(span),
                              operator_identity(), comment)

    def silences(self) -> list[Silence]:
        from vrm_tui.migrate import alerts

        return alerts.silences(self.settings)

    def expire_silence(self, silence_id: str) -> None:
        from vrm_tui.migrate import alerts

        alerts.expire(self.settings, self.journal, silence_id, operator_identity())

    def latency_history(self) -> dict[str, dict[str, list[float | None]]]:
        """The last 15 minutes per backend from Prometheus (None: a gap, no value)."""
        from vrm_tui.telemetry import prometheus

        return prometheus.history(self.prometheus_url,  # a fleet's: this host's series
                                  host=self.settings.fleet_host if self.settings.fleet else "")

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

        # --plan, else VRM_MIGRATION_PLAN, else configs/migration.yaml: `m` and the CLI alike
        chosen = path or self.settings.migration_plan or plan_mod.DEFAULT_PLAN
        return plan_mod.load(chosen, steps, bake, gate_interval)

    def start_migration(self, plan: plan_mod.Plan) -> MigrationState:
        """Bring the stack up, record a new migration and hand it to a detached guard."""
        from vrm_tui.migrate import guard

        runner = self.wiring.runner()
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
        if self.migrations.guarded(state) and state.owner_pid is not None:
            try:
                result = self.controller.rollback()
            except OSError as exc:
                raise Failure(f"migration {state.id}: abort ({why}): rollback failed: "
                              f"{_write_fault(exc)}") from None
            return Steered(state, f"migration {state.id} abort ({why}): rolled back here to "
                                  f"{result.after}; its guard stops when it notices")
        runner = self.wiring.runner()
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

    def run_benchmark(self, mode: BenchMode, options: BenchOptions,
                      progress: BenchProgress | None = None,
                      stop: Event | None = None) -> BenchRun:
        """Run one seed mode (or `all`) against the running stack and write its reports to
        `<deploy>/results/<timestamp>/` and the proxy's /performance-comparison."""
        from vrm_tui.bench import modes, report

        if mode != "all" and mode not in BENCH_MODES:
            raise BadInput(f"benchmark mode {mode!r}: expected one of "
                           f"{', '.join((*BENCH_MODES, 'all'))}")
        if options.corpus is None:
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
        return BenchRun([BenchmarkReport.of(found) for found in reports], folder)

    def bench_options(self, requests: int | None = None, concurrency: int | None = None,
                      duration: float | None = None, rate: float | None = None,
                      requests_file: Path | None = None) -> BenchOptions:
        """A run's options from a face's flags (None: the default), on this deployment's
        corpus (or `requests_file`)."""
        from vrm_tui.bench import modes

        return modes.Options(requests=requests or 500, concurrency=concurrency or 10,
                             duration=duration, rate=rate,
                             stress_cap=concurrency or modes.STRESS_CAP,
                             corpus=self.corpus(requests_file))

    # --- request corpus --------------------------------------------------------------------

    def corpus(self, file: Path | None = None) -> Corpus:
        """What benchmarks, validate and demo traffic send: `file` (--requests-file), else
        VRM_REQUESTS, else the seed's GET metrics (plus the rehearsal tasks in rehearsal)."""
        from vrm_tui.core import corpus as corpus_mod

        s = self.settings
        if file is not None:
            chosen = corpus_mod.load(file if file.is_absolute() else Path.cwd() / file)
        else:
            chosen = corpus_mod.configured(s.requests, s.deploy_dir, s.rehearsal)
        chosen.check_repeatable(s.safe_to_repeat())
        return chosen

    def capture(self, sample: int, redact: tuple[str, ...] = ()) -> Capture:
        """The last `sample` proxied requests of the access log as a corpus to replay."""
        from vrm_tui.telemetry.capture import capture

        return capture(self.runtime.access_log(), sample, redact)

    # --- validation ------------------------------------------------------------------------

    def validate(self, host: str, speedup: float, check_timeout: float = 20.0) -> list[Check]:
        """The production checks as rows (PASS / WARN / FAIL / SKIP), each under its own
        deadline of `check_timeout` seconds."""
        import asyncio

        from vrm_tui import validate

        options = validate.Options(host, speedup, check_timeout=check_timeout)
        return asyncio.run(validate.run(self.settings, options,
                                        self.controller.store.main_config, self.corpus()))

    # --- parity (vrm parity) ----------------------------------------------------------------

    @property
    def parity(self) -> ParityControl:
        return self.wiring.parity

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

    def journal_since(self, offset: int) -> tuple[list[Record], int]:
        """The records appended after byte `offset`, and the offset to read from next."""
        return self.journal.read_from(offset)

    # --- what only the faces ask (each decision made here once) ----------------------------

    @property
    def runtime_name(self) -> str:
        return self.runtime.name

    def service_names(self, installed: bool = True) -> list[str]:
        """Every service of the stack (only those installed, by default)."""
        return [s.name for s in self.runtime.services()
                if not installed or s.state != "not installed"]

    def log_lines(self, service: str, tail: int = 100, follow: bool = False,
                  keep_going: Callable[[], bool] = lambda: True) -> Iterator[str]:
        """A service's last `tail` log lines, then new ones while `follow` (StackError for an
        unknown or external service)."""
        return self.runtime.log_lines(service, tail=tail, follow=follow, keep_going=keep_going)

    def backend_names(self) -> dict[str, str]:
        """Upstream address -> backend name, for retried attempts in access-log lines."""
        return {address: str(backend)
                for address, backend in self.settings.backend_addresses.items()}

    def upstream_diff(self, current: Split, target: Split) -> str:
        """What a split change does to nginx's upstream block (see `upstream_diff`)."""
        return upstream_diff(current, target, self.settings.rust_address,
                             self.settings.ts_address)

    def split_change_question(self, target: Split | None = None) -> Question | None:
        """Changing the split stops a running migration: the question to ask first, or None
        when none runs. Both faces ask it before any operator weight change (deploy, +, -,
        w); rollback never asks."""
        try:
            view = self.migration()
        except ValueError:  # an unreadable migration record stops nothing
            return None
        if view is None or not view.state.active:
            return None
        change = (f"Change the split to rust {target.rust}% anyway?" if target is not None
                  else "Change the split anyway?")
        return Question(f"This stops migration {view.state.id} (step {view.state.step + 1}, "
                        f"{view.label}).", f"{change} The migration's record will name this "
                        "change and you.")

    def demo_traffic(self) -> SyntheticTraffic:
        """Light synthetic traffic through the proxy for `vrm demo` (started; stop it)."""
        from vrm_tui.rehearsal.traffic import SyntheticTraffic

        traffic = SyntheticTraffic(self.settings.proxy_url, self.corpus())
        traffic.start()
        return traffic

    def setup(self) -> SetupReport:
        """`vrm setup`: write .env once (a random Grafana password), make the state dir, and
        say which tools are installed."""
        env_file = self.settings.deploy_dir / ".env"
        notes: list[str] = []
        if env_file.exists():
            notes.append(f"kept existing {env_file}")
            if self.settings.grafana_password in ("", "admin123"):
                notes.append("  warning: GRAFANA_PASSWORD is empty or the seed's default; set "
                             "a strong one")
        else:
            import secrets

            text = ENV_TEMPLATE.read_text().replace("__GRAFANA_PASSWORD__",
                                                    secrets.token_urlsafe(18))
            # whole or not at all: a half .env would be "kept" by the next setup
            self.write_file(env_file, text, mode=0o600)
            notes.append(f"wrote {env_file} (random GRAFANA_PASSWORD; review it: cat .env)")
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        notes.append(f"state dir {self.settings.state_dir}")
        if self.settings.monitoring:  # a bad alert route in .env: exit 2 naming it
            from vrm_tui.stack import monitoring

            monitoring.check_alertmanager(self.settings)
        return SetupReport(tuple(notes), requirements())

    def write_file(self, path: Path, text: str, mode: int = 0o644) -> None:
        """All of `text` at `path` or nothing (a full disk leaves no half file): one line
        naming the fault otherwise."""
        from vrm_tui.system.files import write_atomic

        try:
            write_atomic(path, text, mode=mode)
        except OSError as exc:
            raise environment_fault(exc, target=path) or exc from None


ENV_TEMPLATE = CONFIGS / "env.template"


@dataclass(frozen=True)
class Requirement:
    """A tool vrm uses: whether it is installed, whether vrm needs it, how to install it."""

    name: str
    found: bool
    required: bool
    hint: str


@dataclass(frozen=True)
class SetupReport:
    notes: tuple[str, ...]
    requirements: tuple[Requirement, ...]

    @property
    def missing_required(self) -> bool:
        return any(r.required and not r.found for r in self.requirements)


def requirements() -> tuple[Requirement, ...]:
    """The tools `vrm setup` checks for, in the order it lists them."""
    import shutil

    from vrm_tui.traffic import live, nginx

    def which(name: str) -> bool:
        return bool(shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin"))

    return (
        Requirement("nginx (the proxy)", which("nginx"), True, nginx.NGINX_INSTALL_HINT),
        Requirement("nginx Lua module (weight changes without a reload)",
                    live.modules_installed(), False, live.INSTALL_HINT),
        Requirement("docker engine (VRM_RUNTIME=compose only)",
                    which("dockerd") or which("docker"), False,
                    "sudo apt-get install -y docker.io"),
        Requirement("ab (benchmarks against the seed's tool)", which("ab"), False,
                    "sudo apt-get install -y apache2-utils"),
        Requirement("prometheus (monitoring)", which("prometheus"), False,
                    "sudo apt-get install -y prometheus"),
        Requirement("prometheus-nginx-exporter (proxy metrics)",
                    which("prometheus-nginx-exporter"), False,
                    "sudo apt-get install -y prometheus-nginx-exporter"),
        Requirement("prometheus-alertmanager (alert routes: webhooks, Slack, e-mail)",
                    which("prometheus-alertmanager"), False,
                    "sudo apt-get install -y prometheus-alertmanager"),
    )


def changed_split(record: Record) -> bool:
    """A journal record that moved the split (or a rollback: always news, whatever it found).
    A reload that kept it (`vrm parity on` re-renders the config) is no split change."""
    if record.action not in SPLIT_ACTIONS or record.result != "ok" or not record.to:
        return False
    return record.action == "rollback" or record.from_ is None \
        or record.from_.get("rust") != record.to.get("rust")


def start_warnings(alerts: list[Alert], parity: ParityReport | None) -> list[str]:
    """What an operator starting a migration must hear first (from the faces' last readings):
    a firing critical alert (it fails the first step's gate anyway) and parity mismatches."""
    found = [f"critical alert firing: {a.name} ({a.summary or a.labels.get('backend', '')})"
             for a in alerts if a.state == "firing" and a.severity == "critical"]
    if parity is not None and parity.total.mismatched:
        total = parity.total
        found.append(f"parity: rust answered unlike typescript {total.mismatched} times in "
                     f"{total.compared} compared (`d` shows them)")
    return found


STEADY_OPTIONS = re.compile(r" max_fails=\d+( fail_timeout=\w+)?(?=;)")


def upstream_diff(current: Split, target: Split, rust_address: str, ts_address: str) -> str:
    """The change to the generated upstream block, as a unified diff of its server lines,
    each named by its backend (an address alone says nothing to the operator)."""
    import difflib

    from vrm_tui.traffic.nginx import render_upstream

    names = {rust_address: "rust", ts_address: "typescript"}

    def lines(split: Split) -> list[str]:
        text = render_upstream(split, 0, rust_address, ts_address)
        servers = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("server")]
        # The retry options never change with the split: leave them out, keep the weights.
        return [f"{names.get(ln.split()[1], '?'):10} {STEADY_OPTIONS.sub('', ln)}"
                for ln in servers[:2]]

    diff = difflib.unified_diff(lines(current), lines(target), "serving", "candidate",
                                lineterm="", n=0)
    body = [ln for ln in list(diff)[2:] if not ln.startswith("@@")]
    if not body:
        return "(no change)"
    head = (f"rust {current.rust}% → {target.rust}%, "
            f"typescript {current.typescript}% → {target.typescript}%")
    return "\n".join([head, *body])


def _write_fault(exc: OSError, path: Path | None = None) -> str:
    """An OSError as one phrase ("disk full at <path>"), whatever its kind."""
    return str(environment_fault(exc, path) or exc)
