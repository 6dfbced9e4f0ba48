"""The migration runner: apply a step, bake it under gates, then promote, pause or roll back.

The runner holds the traffic lock only while it applies a step, so `vrm rollback` (or the
TUI's `r`) is never kept waiting by a bake. A rollback or deploy by anyone else is noticed on
the next tick (nginx no longer serves the step's split) and stops the migration.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable

from vrm_tui.core.errors import Failure
from vrm_tui.core.names import Phase, Result
from vrm_tui.core.split import Split
from vrm_tui.journal import Record
from vrm_tui.migrate.gates import Verdict, evaluate
from vrm_tui.migrate.plan import Plan
from vrm_tui.migrate.state import MigrationState, StateStore
from vrm_tui.telemetry.accesslog import AccessLogSource, Bucket
from vrm_tui.telemetry.backend_metrics import scrape_vram
from vrm_tui.telemetry.health import probe
from vrm_tui.traffic.controller import ApplyError, TrafficController
from vrm_tui.traffic.served import ProxyUnreachable

TICK_S = 0.25
BASELINE_KEEP = 2000

Update = Callable[[MigrationState, Verdict | None], None]


class MigrationBusy(Failure):
    """Another process is running a migration, or an unfinished one waits to be resumed."""


class Runner:
    """Runs one migration to a terminal phase (done, rolled-back, aborted)."""

    def __init__(self, controller: TrafficController, on_update: Update | None = None,
                 stop: threading.Event | None = None) -> None:
        self.controller = controller
        self.access_log = controller.host.access_log()
        self.store = StateStore(controller.settings.state_dir)
        self.on_update = on_update or (lambda state, verdict: None)
        self.stop = stop or threading.Event()
        self._traffic: AccessLogSource | None = None

    # --- starting ------------------------------------------------------------------------

    def start(self, plan: Plan) -> MigrationState:
        existing = self.store.load()
        if existing is not None and existing.active:
            if existing.owner_alive():
                raise MigrationBusy(f"migration {existing.id} is running (pid "
                                    f"{existing.owner_pid}); steer it with vrm migrate "
                                    "pause|resume|promote|abort")
            raise MigrationBusy(f"migration {existing.id} was cut off at step "
                                f"{existing.step + 1} ({existing.phase}); continue it with "
                                "`vrm migrate resume` or stop it with `vrm migrate abort`")
        self.store.take_request()  # a stale request must not steer the new migration
        state = MigrationState(plan=plan.to_dict())
        self.store.save(state)
        self._journal(state, "started", "ok", f"plan {list(plan.steps)}, bake "
                      f"{plan.bake_seconds:g}s, gates every {plan.gate_interval_seconds:g}s")
        return state

    def resume(self) -> MigrationState:
        state = self.store.load()
        if state is None or not state.active:
            raise MigrationBusy("no unfinished migration to resume")
        if state.owner_alive() and state.owner_pid != os.getpid():
            raise MigrationBusy(f"migration {state.id} is running (pid {state.owner_pid})")
        state.claim()
        if state.phase == "baking":
            # The step's config is applied and verified; its bake window restarts so the
            # gates judge only traffic this process has seen whole.
            state.step_started = time.time()
        self.store.save(state)
        self._journal(state, "resumed", "ok", f"at step {state.step + 1} ({state.phase})")
        return state

    def abort(self, state: MigrationState) -> MigrationState:
        """Stop a migration whose runner is gone, and roll back."""
        state.claim()
        self._finish(state, "aborted", "aborted by the operator; rolling back")
        self._rollback(state, "migration aborted")
        return state

    # --- running -------------------------------------------------------------------------

    def run(self, state: MigrationState) -> MigrationState:
        plan = state.plan_obj
        settings = self.controller.settings
        self._traffic = AccessLogSource(self.access_log, settings.backend_addresses,
                                        backfill=True)
        next_gate = 0.0
        while state.active and not self.stop.is_set():
            self._control(state, plan)
            if not state.active:
                break
            if state.phase == "applying":
                self._apply(state)
                next_gate = time.monotonic() + plan.gate_interval_seconds
            elif state.phase == "baking":
                if self._preempted(state):
                    break
                if time.monotonic() >= next_gate:
                    next_gate = time.monotonic() + plan.gate_interval_seconds
                    self._judge(state, plan)
            self.stop.wait(TICK_S)
        return state

    def _control(self, state: MigrationState, plan: Plan) -> None:
        request = self.store.take_request()
        if request is None:
            return
        if request == "abort":
            self._finish(state, "aborted", "aborted by the operator; rolling back")
            self._rollback(state, "migration aborted")
        elif request == "pause" and state.phase == "baking":
            state.phase, state.reason = "paused", "paused by the operator"
            self._save(state, None)
            self._journal(state, "paused", "ok", state.reason)
        elif request == "resume" and state.phase == "paused":
            state.phase, state.reason, state.step_started = "baking", "", time.time()
            self._save(state, None)
            self._journal(state, "resumed", "ok", f"step {state.step + 1} bakes again")
        elif request == "promote" and state.phase in ("baking", "paused"):
            self._journal(state, "promoted", "ok", f"step {state.step + 1} promoted by the "
                          "operator before its bake ended")
            self._advance(state, plan)

    def _apply(self, state: MigrationState) -> None:
        target = Split(state.target)
        try:
            self.controller.set_split(target, action="migrate")
        except ApplyError as exc:
            state.phase, state.reason = "paused", f"could not apply step {state.step + 1}: {exc}"
            self._save(state, None)
            return
        state.phase, state.step_started, state.reason = "baking", time.time(), ""
        self._save(state, None)

    def _preempted(self, state: MigrationState) -> bool:
        try:
            served = self.controller.served(timeout=1.0).split
        except ProxyUnreachable as exc:
            state.reason = f"proxy unreachable: {exc}"
            self._save(state, None)
            return False
        if served.rust != state.target:
            self._finish(state, "aborted", f"stopped: nginx now serves {served} (changed "
                         "outside the migration: a rollback or a deploy)")
            return True
        return False

    def _judge(self, state: MigrationState, plan: Plan) -> Verdict:
        settings = self.controller.settings
        started = state.step_started or time.time()
        if self._traffic is not None:
            with contextlib.suppress(OSError):  # no access log yet: gates are inconclusive
                self._traffic.poll()
            rust = self._traffic.stats.since("rust", started)
            typescript = self._traffic.stats.since("typescript", started)
            recent = self._traffic.stats.since(
                "rust", max(started, time.time() - plan.gate_interval_seconds))
        else:
            rust, typescript, recent = Bucket(), Bucket(), Bucket()
        baseline = typescript.latencies if len(typescript.latencies) >= plan.min_samples \
            else state.baseline_ms
        health = probe(f"{settings.backend_url('rust')}/health", timeout=1.0)
        vram = scrape_vram("rust", settings.backend_url("rust"), settings.max_vram_gb, 1.0)
        verdict = evaluate(plan, rust, baseline, health, vram, recent)
        state.verdict = verdict.to_dict()
        baked = time.time() - started >= plan.bake_seconds
        if verdict.status == "fail":
            self._finish(state, "rolled-back", f"step {state.step + 1} failed its gates: "
                         f"{verdict.summary()}", verdict)
            self._rollback(state, f"gate failed at step {state.step + 1}")
        elif baked and verdict.status == "inconclusive":
            state.phase = "paused"
            state.reason = f"inconclusive after {plan.bake_seconds:g}s: {verdict.summary()}"
            self._save(state, verdict)
            self._journal(state, "paused", "paused", state.reason)
        elif baked:
            if len(typescript.latencies) >= plan.min_samples:
                state.baseline_ms = typescript.latencies[-BASELINE_KEEP:]
            self._journal(state, "step passed", "ok",
                          f"step {state.step + 1} ({state.target}%): {verdict.summary()}")
            self._advance(state, plan)
        else:
            self._save(state, verdict)
        return verdict

    def _advance(self, state: MigrationState, plan: Plan) -> None:
        if state.step + 1 >= len(plan.steps):
            self._finish(state, "done", f"migration complete: rust {state.target}%")
            return
        state.step += 1
        state.phase, state.reason = "applying", ""
        self._save(state, None)

    def _rollback(self, state: MigrationState, why: str) -> None:
        try:
            self.controller.rollback()
        except ApplyError as exc:
            state.reason += f"; ROLLBACK FAILED: {exc}"
            self._save(state, None)
            self._journal(state, "rollback", "failed", f"{why}: {exc}")

    def _finish(self, state: MigrationState, phase: Phase, reason: str,
                verdict: Verdict | None = None) -> None:
        state.phase, state.reason = phase, reason
        self._save(state, verdict)
        self._journal(state, phase, "ok" if phase == "done" else "failed", reason)

    def _save(self, state: MigrationState, verdict: Verdict | None) -> None:
        self.store.save(state)
        self.on_update(state, verdict)

    def _journal(self, state: MigrationState, what: str, result: Result, detail: str) -> None:
        self.controller.journal.append(Record(
            action="migration", result=result, to={"rust": state.target,
                                                 "typescript": 100 - state.target},
            detail=f"{state.id} {what}: {detail}"))
