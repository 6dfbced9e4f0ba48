"""The console: one deployment, wired once, with the application services both faces use.

`cli.py` and `tui/` only parse, render and bind keys. Every decision (how a migration is
steered, where reports go, whether the stack must be running for a benchmark) is made here
once, so the two faces can never disagree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from threading import Event
from typing import Any

from vrm_tui.core import services
from vrm_tui.core.backend import Backend
from vrm_tui.core.errors import BadInput, Failure
from vrm_tui.core.names import Control
from vrm_tui.core.split import Split
from vrm_tui.journal import Journal, Record
from vrm_tui.migrate import plan as plan_mod
from vrm_tui.migrate.runner import MigrationBusy, Runner, Update
from vrm_tui.migrate.state import MigrationState, StateStore
from vrm_tui.settings import Settings
from vrm_tui.stack import lifecycle
from vrm_tui.stack.runtime import Runtime
from vrm_tui.status import StackStatus, collect
from vrm_tui.telemetry import prometheus, stub_status
from vrm_tui.telemetry.accesslog import AccessLogSource
from vrm_tui.telemetry.backend_metrics import VramReading, scrape_vram
from vrm_tui.telemetry.gpu import GpuReport, Owners, read_gpus
from vrm_tui.telemetry.health import Baselines
from vrm_tui.traffic.controller import ApplyResult, TrafficController
from vrm_tui.traffic.served import Served

__all__ = ["BenchRun", "Console", "MigrationBusy", "Steered"]

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
class Steered:
    """What a steering request did, for the face to say."""

    state: MigrationState
    text: str


class Console:
    """One deployment: its settings, runtime, traffic controller, journal and migration."""

    def __init__(self, settings: Settings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self.paths = settings.paths
        self.runtime = runtime or lifecycle.runtime_for(settings)
        self.journal = Journal(self.paths.journal)
        self.controller = TrafficController(settings, self.runtime, self.journal)
        self.migrations = StateStore(settings.state_dir)
        self.baselines = Baselines()  # each service's recent probe latencies

    # --- stack -----------------------------------------------------------------------------

    def up(self) -> list[str]:
        """Start what is not running; a fresh proxy starts on the configured split."""
        return lifecycle.bring_up(self.runtime, self.controller)

    def down(self, names: list[str] | None = None) -> list[str]:
        """Stop what vrm started (all of it, or just `names`)."""
        return lifecycle.bring_down(self.runtime, self.controller, names)

    def require_running(self) -> None:
        """Refuse work that needs the proxy (a benchmark) when it is not running."""
        if not self.runtime.proxy_running():
            raise Failure("the stack is not running: start it with `vrm up`")

    # --- traffic ---------------------------------------------------------------------------

    def deploy(self, split: Split | None = None) -> tuple[list[str], ApplyResult]:
        """Start the stack if needed, then serve `split` (default: the configured one)."""
        started = self.up()
        return started, self.controller.set_split(split or self.settings.split, "deploy")

    def set_split(self, split: Split) -> ApplyResult:
        """An operator's weight change from the TUI."""
        return self.controller.set_split(split, action="set-split")

    def rollback(self) -> ApplyResult:
        """All traffic to typescript, verified. A running migration notices and stops."""
        return self.controller.rollback()

    def reload(self) -> ApplyResult:
        return self.controller.reload()

    def served(self, timeout: float = 1.0) -> Served:
        return self.controller.served(timeout=timeout)

    def status(self, timeout: float = 1.0) -> StackStatus:
        """What nginx serves, what is on disk, and each service's health."""
        return collect(self.runtime, self.controller, timeout=timeout,
                       baselines=self.baselines)

    # --- telemetry -------------------------------------------------------------------------

    def traffic_source(self, backfill: bool = True) -> AccessLogSource:
        """A tail of the proxy's access log with per-backend statistics."""
        status_url = f"http://127.0.0.1:{self.settings.proxy_status_port}{stub_status.PATH}"
        return AccessLogSource(self.runtime.access_log(), self.settings.backend_addresses,
                               backfill=backfill, status_url=status_url)

    def vram(self, timeout: float = 1.0) -> list[VramReading]:
        s = self.settings
        return [scrape_vram(b, s.backend_url(b), s.max_vram_gb, timeout) for b in Backend]

    def gpus(self) -> GpuReport:
        """NVML's view, with each backend's processes mapped to it by pid."""
        roots = {pid: backend for service, backend in services.BACKENDS.items()
                 if (pid := self.runtime.backend_pid(service))}
        return read_gpus(Owners(roots))

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.prometheus_port}"

    def alerts(self, timeout: float = 1.0) -> list[prometheus.Alert]:
        return prometheus.alerts(self.prometheus_url, timeout)

    def latency_history(self) -> dict[str, dict[str, list[float]]]:
        return prometheus.history(self.prometheus_url)

    # --- migration -------------------------------------------------------------------------

    def migration(self) -> MigrationState | None:
        return self.migrations.load()

    def load_plan(self, path: Path | None = None, steps: str | None = None,
                  bake: float | None = None, gate_interval: float | None = None) -> plan_mod.Plan:
        return plan_mod.load(path or plan_mod.DEFAULT_PLAN, steps, bake, gate_interval)

    def runner(self, on_update: Update | None = None, stop: Event | None = None) -> Runner:
        return Runner(self.controller, on_update=on_update, stop=stop)

    def start_migration(self, plan: plan_mod.Plan, runner: Runner) -> MigrationState:
        """Bring the stack up and record a new migration (it runs in `runner.run`)."""
        self.up()
        return runner.start(plan)

    def steer(self, action: Control) -> Steered:
        """pause | resume | promote | abort, from whichever face asked.

        A migration whose runner is alive gets a request it acts on at its next tick; one
        whose runner is gone can only be aborted here (resume adopts it with `resume()`)."""
        state = self.migrations.load()
        if state is None or not state.active:
            raise Failure("no migration is running")
        if state.owner_alive():
            self.migrations.request(action)
            return Steered(state, f"asked migration {state.id} (pid {state.owner_pid}) "
                                  f"to {action}")
        if action == "abort":
            self.runner().abort(state)
            return Steered(state, f"migration {state.id} aborted; rolled back")
        if action == "resume":
            raise BadInput("the migration has no runner: `vrm migrate resume` adopts it")
        raise Failure(f"migration {state.id} has no runner (cut off at step "
                      f"{state.step + 1}); `vrm migrate resume` continues it, "
                      "`vrm migrate abort` stops it")

    # --- benchmark -------------------------------------------------------------------------

    def run_benchmark(self, mode: str, options: Any,
                      progress: Callable[[str, Any, float], None] | None = None,
                      stop: asyncio.Event | None = None) -> BenchRun:
        """Run one seed mode (or `all`) against the running stack and write its reports to
        `<deploy>/results/<timestamp>/` and the proxy's /performance-comparison."""
        from vrm_tui.bench import modes, report

        if mode != "all" and mode not in BENCH_MODES:
            raise BadInput(f"benchmark mode {mode!r}: expected one of "
                           f"{', '.join((*BENCH_MODES, 'all'))}")
        self.require_running()
        pids = {s.name: s.pid for s in self.runtime.services() if s.pid}
        chosen = list(BENCH_MODES) if mode == "all" else [mode]

        runners = {"benchmark": modes.benchmark, "stress": modes.stress,
                   "compare": modes.compare}

        async def run() -> list[dict[str, Any]]:
            found = []
            for name in chosen:
                if name == "monitor":
                    found.append(await modes.monitor(self.settings, options, pids, progress,
                                                     stop))
                else:
                    found.append(await runners[name](self.settings, options, progress, stop))
            return found

        reports = asyncio.run(run())
        folder = report.write(reports, self.settings.deploy_dir / "results",
                              self.paths.comparison)
        return BenchRun(reports, folder)

    # --- validation ------------------------------------------------------------------------

    def validate(self, host: str, speedup: float) -> list[Any]:
        """The production checks as rows (PASS / WARN / FAIL)."""
        from vrm_tui import validate

        return asyncio.run(validate.run(self.settings, validate.Options(host, speedup),
                                        self.controller.store.main_config))

    # --- journal ---------------------------------------------------------------------------

    def journal_records(self, limit: int | None = None) -> list[Record]:
        return self.journal.read(limit=limit)
