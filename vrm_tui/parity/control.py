"""Switching parity mirroring on and off and reading its results, for the console (`vrm
parity`, the TUI pane) and the migration guard (a `shadow` step, the parity gate).

What nginx mirrors is persisted in the state dir (`parity-state.json`), so every later render
keeps it; a render reads only that file, never `parity.yaml`, so a broken parity config can
never block a rollback.
"""

from __future__ import annotations

from typing import Any

from vrm_tui.core import services
from vrm_tui.core.errors import BadInput, Failure
from vrm_tui.journal import Journal, Record, operator_identity
from vrm_tui.parity.config import ParityConfig
from vrm_tui.parity.report import ParityReport
from vrm_tui.settings import Settings
from vrm_tui.stack import lifecycle
from vrm_tui.stack.runtime import Runtime
from vrm_tui.traffic.controller import TrafficController

__all__ = ["ParityControl"]


class ParityControl:
    """Parity for one deployment."""

    def __init__(self, settings: Settings, runtime: Runtime, controller: TrafficController,
                 journal: Journal) -> None:
        self.settings = settings
        self.runtime = runtime
        self.controller = controller
        self.journal = journal

    DEFAULT_SAMPLE = 5.0
    """`vrm parity on` without --sample, when neither the operator nor PARITY_SAMPLE set one."""

    def config(self) -> ParityConfig:
        """The deployment's checked configs/parity.yaml (ParityConfigError: exit 2)."""
        from vrm_tui.parity.config import config_for, load_parity_config

        return load_parity_config(config_for(self.settings.deploy_dir))

    def _routes(self) -> tuple[str, ...]:
        config = self.config()
        if not config.mirror:
            raise BadInput(f"{config.source}: mirror.routes: empty; list the routes nginx may "
                           "mirror, e.g. GET /api/v1/vision/metrics")
        safe = self.settings.safe_to_repeat()
        for route in config.mirror:
            if not safe.allows(route.method, route.path):
                raise BadInput(
                    f"{config.source}: mirror.routes: {route} is not declared safe to repeat "
                    f"({', '.join(safe.sources)}); mirroring it would run it three more "
                    "times: declare it under safe_to_repeat, or stop mirroring it")
        return tuple(str(route) for route in config.mirror)

    def on(self, sample: float | None = None) -> ParityReport:
        """Mirror `sample` percent of balanced requests: persisted in the state dir (every
        later render keeps it), the comparator started, nginx re-rendered and reloaded.
        Switching on from off starts counting afresh."""
        from vrm_tui.traffic.mirror import MirrorState

        old = MirrorState.load(self.settings.paths.parity_state)
        was_on = self.report().on
        if sample is None:
            sample = old.sample or self.settings.parity_sample or self.DEFAULT_SAMPLE
        if not 0 < sample <= 100:
            raise BadInput(f"--sample={sample:g}: expected a percent above 0, at most 100 "
                           "(vrm parity off stops mirroring)")
        routes = self._routes()
        if not was_on:
            for path in (self.settings.paths.parity_results, self.settings.paths.parity_examples):
                path.unlink(missing_ok=True)
        old.with_sample(sample, routes, operator_identity()).save(self.settings.paths.parity_state)
        try:
            if self.runtime.proxy_running():
                lifecycle.bring_up(self.runtime, self.controller)  # the comparator first
                self.controller.reload()
        except BaseException:
            # Failed (its port taken, a reload refused): recorded as it was, so no later
            # render mirrors to a comparator that is not there and status never says "on".
            if was_on:
                old.save(self.settings.paths.parity_state)
            else:
                old.with_sample(0.0, old.routes, operator_identity()).save(
                    self.settings.paths.parity_state)
                self.runtime.stop_service(services.PARITY)
            raise
        self.journal.append(Record(action="parity", result="ok",
                                   detail=f"mirroring {sample:g}% of balanced requests "
                                          f"({', '.join(routes)})"))
        return self.report()

    def off(self) -> ParityReport:
        """Stop mirroring (nginx re-rendered without it), then stop the comparator. Results
        stay for `vrm parity report`."""
        from vrm_tui.traffic.mirror import MirrorState

        state = MirrorState.load(self.settings.paths.parity_state)
        state.with_sample(0.0, state.routes, operator_identity()).save(
            self.settings.paths.parity_state)
        if self.runtime.proxy_running():
            self.controller.reload()
        self.runtime.stop_service(services.PARITY)
        self.journal.append(Record(action="parity", result="ok", detail="mirroring off"))
        return self.report()

    def sync_routes(self) -> None:
        """Refresh the routes nginx may mirror from configs/parity.yaml while parity is on
        (a render reads only the state file)."""
        from vrm_tui.traffic.mirror import MirrorState

        state = MirrorState.load(self.settings.paths.parity_state)
        sample = self.settings.parity_sample if state.sample is None else state.sample
        if sample > 0:
            routes = self._routes()
            if routes != state.routes:
                MirrorState(state.sample, routes, state.since, state.by).save(
                    self.settings.paths.parity_state)

    def report(self, examples: int = 0, timeout: float = 0.5) -> ParityReport:
        """Parity now: the sample, the counts since it was switched on and the newest
        `examples` mismatches. For a gate: `report.total.compared` and `.mismatched`
        (cumulative: judge the difference between two reports)."""
        import httpx

        from vrm_tui.parity.report import ParityReport
        from vrm_tui.parity.results import ExampleStore, ParityResults
        from vrm_tui.telemetry.http import shared_client
        from vrm_tui.traffic.mirror import MirrorState

        state = MirrorState.load(self.settings.paths.parity_state)
        sample = self.settings.parity_sample if state.sample is None else state.sample
        source = "PARITY_SAMPLE" if state.sample is None else "vrm parity on|off"
        try:
            results = ParityResults.load(self.settings.paths.parity_results)
        except ValueError as exc:
            raise Failure(str(exc)) from None
        live: dict[str, Any] | None = None
        try:
            answer = shared_client().get(
                f"http://127.0.0.1:{self.settings.parity_port}/status", timeout=timeout)
            if answer.status_code == 200:
                live = answer.json()
        except (httpx.HTTPError, ValueError):
            live = None
        found: list[dict[str, Any]] = []
        if examples > 0:
            try:
                found = ExampleStore.load(self.settings.paths.parity_examples).to_list()[-examples:]
            except ValueError as exc:
                raise Failure(str(exc)) from None
        # nginx mirrors only routes the console checked; none recorded yet means nothing is
        return ParityReport(sample if state.routes else 0.0, source, state.routes, results,
                            live, found)

    def examples(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` mismatch examples (redacted), oldest first; reads a file only."""
        from vrm_tui.parity.results import ExampleStore

        if limit <= 0:
            return []
        try:
            return ExampleStore.load(self.settings.paths.parity_examples).to_list()[-limit:]
        except ValueError as exc:
            raise Failure(str(exc)) from None

    def status(self) -> ParityReport:
        return self.report(examples=0)
