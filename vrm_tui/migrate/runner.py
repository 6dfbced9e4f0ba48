"""The migration runner: apply a step, bake it under gates, then promote, pause or roll back.

It runs inside the guard (`vrm_tui.migrate.guard`), a detached process no terminal owns; tests
may run it in-process. It holds the traffic lock only while it applies a step, so `vrm
rollback` (or the TUI's `r`) never waits on a bake; a change of the split by anyone else is
noticed on the next tick and stops the migration, naming the action and who did it.

Gates decide as soon as the evidence allows: every new access-log line feeds the step's
evidence, the sequential error-rate test runs on every tick, health is probed every second
(two failed probes in a row fail the step: a hung backend answers no probe), and the full
verdict (latency per route, p95, VRAM) every gate interval. The evidence and the bake clock
survive pause and resume in migration.json.

Steering requests are drained from their queue on every tick and answered by precedence
(abort > pause > promote; see `vrm_tui.migrate.control`). A full disk is a state, not a
crash: the heartbeat is written in place into a preallocated file, a state or journal write
that fails is noted (`write_error`) and retried at the next save, and a failed gate rolls
back whatever could or could not be written. A second of the bake with the proxy
unreachable fails the step: it never passes on an outage.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from vrm_tui.core.backend import Backend
from vrm_tui.core.errors import ApplyError, Failure, MigrationBusy, ProxyUnreachable
from vrm_tui.core.names import SPLIT_ACTIONS, Phase, Result
from vrm_tui.core.split import Split
from vrm_tui.journal import Record, operator_identity
from vrm_tui.migrate import canary
from vrm_tui.migrate.alerts import Listener, notify, refuse_start
from vrm_tui.migrate.canary import TIMED_OUT, HeldClients
from vrm_tui.migrate.control import Answer, Request, settle
from vrm_tui.migrate.gates import (
    ORDER,
    BackendEvidence,
    Gate,
    StepEvidence,
    Verdict,
    attempt_outcome,
    evaluate,
    parity_gate,
    proxy_gate,
    shadow_verdict,
    stratum,
)
from vrm_tui.migrate.plan import SHADOW, Plan
from vrm_tui.migrate.sequential import error_rate_test
from vrm_tui.migrate.state import MigrationState, StateStore
from vrm_tui.migrate.timeline import step_name
from vrm_tui.parity.control import ParityControl
from vrm_tui.system.logfiles import LogCursor
from vrm_tui.telemetry.accesslog import parse_request
from vrm_tui.telemetry.backend_metrics import VramReading, scrape_vram
from vrm_tui.telemetry.health import Probe, probe
from vrm_tui.traffic.controller import TrafficController

TICK_S = 0.25
HEARTBEAT_S = 1.0
HEALTH_EVERY_S = 1.0
HEALTH_FAILURES_TO_FAIL = 2  # one slow probe is noise; two in a row is a backend not answering
SAVE_EVERY_S = 2.0
WHO_WAIT_S = 2.0  # how long a stop waits for the journal to name who changed the split
HELD_WAIT_MAX_S = 5.0  # after a hang's rollback, how long to count the clients it held

Update = Callable[[MigrationState, Verdict | None], None]


class Runner:
    """Runs one migration to a terminal phase (done, rolled-back, aborted)."""

    def __init__(self, controller: TrafficController, on_update: Update | None = None,
                 stop: threading.Event | None = None,
                 parity: ParityControl | None = None) -> None:
        self.controller = controller
        self.parity = parity
        self.store = StateStore(controller.settings.state_dir)
        self.on_update = on_update or (lambda state, verdict: None)
        self.stop = stop or threading.Event()
        self.cursor = LogCursor(controller.host.access_log(), from_end=True)
        self.addresses = controller.settings.backend_addresses
        self._health_failures = 0
        self._last_health: Probe | None = None
        self._next_health = 0.0
        self._next_beat = 0.0
        self._next_save = 0.0
        self._vram: VramReading | None = None
        self._alerts = Listener(controller.settings, controller.journal)  # Alertmanager
        self._held = HeldClients()  # clients a hung rust held in this step
        self._canary_ms = controller.settings.proxy_upstream_timeout * 1000  # until settled
        self._proxy_down_since: float | None = None  # monotonic; None while it answers
        self.write_error = ""  # the newest state or journal write that failed (a full disk)
        self._unsaved = False  # the newest state is only in memory

    # --- starting ------------------------------------------------------------------------

    def start(self, plan: Plan, operator: str | None = None) -> MigrationState:
        """Record a new migration (a guard then runs it)."""
        existing = self.store.load()
        if existing is not None and existing.active:
            if self.store.guarded(existing):
                raise MigrationBusy(f"migration {existing.id} is running (guard pid "
                                    f"{existing.owner_pid}); steer it with vrm migrate "
                                    "pause|resume|promote|abort")
            raise MigrationBusy(f"migration {existing.id} was cut off at step "
                                f"{existing.step + 1} ({existing.phase}); continue it with "
                                "`vrm migrate resume` or stop it with `vrm migrate abort`")
        refuse_start(self.controller.settings)  # names the critical alert that fires
        who = operator or operator_identity()
        state = MigrationState(plan=plan.to_dict(), started_by=who)
        # a request left from before must not steer the new migration
        self.store.queue.refuse_all(f"it was asked before migration {state.id} started")
        self.store.save(state)
        self._journal(state, "started", "ok", f"plan {list(plan.steps)}, bake "
                      f"{plan.bake_seconds:g}s, gates every {plan.gate_interval_seconds:g}s",
                      operator=who)
        return state

    def abort(self, state: MigrationState, operator: str) -> MigrationState:
        """Stop a migration whose guard is gone: roll back first, then record it (a full
        disk leaves the record unwritten, never the rollback undone; see `write_error`)."""
        self._stop(state, "aborted", f"aborted by {operator}", "migration aborted",
                   operator=operator)
        return state

    # --- running -------------------------------------------------------------------------

    def run(self, state: MigrationState, restart_step: bool = False) -> MigrationState:
        """Run (or adopt) `state` until it ends or `stop` is set."""
        plan = state.plan_obj
        adopted = state.owner_pid is not None
        state.claim()
        if restart_step and state.phase in ("baking", "paused"):
            state.evidence, state.baked_s, state.bake_since = None, 0.0, None
            if state.phase == "baking":
                state.start_clock()
        elif state.phase == "baking" and state.bake_since is None:
            state.start_clock()
        try:
            self.store.heartbeat.open()  # allocated now, while there is room for it
        except OSError as exc:
            self._note_write_error(exc)  # each beat tries again
        self.store.beat(state.id)
        self._save(state, None)
        if adopted:
            self._journal(state, "adopted", "ok", f"a new guard (pid {state.owner_pid}) runs "
                          f"step {state.step + 1} ({state.phase})"
                          + (", step restarted" if restart_step else ", evidence kept"))
        next_gate = time.monotonic() + plan.gate_interval_seconds
        while state.active and not self.stop.is_set():
            now = time.monotonic()
            if now >= self._next_beat:
                self.store.beat(state.id)
                self._next_beat = now + HEARTBEAT_S
            self._control(state, plan)
            if not state.active:
                break
            if state.phase == "applying":
                self._apply(state)
                next_gate = time.monotonic() + plan.gate_interval_seconds
            elif state.phase == "baking":
                preempted = self._preempted(state)
                if preempted is None:  # blind: no verdict, and the outage is counted
                    self.stop.wait(TICK_S)
                    continue
                if preempted:
                    break
                self._bake(state, plan, judge=time.monotonic() >= next_gate)
                if time.monotonic() >= next_gate:
                    next_gate = time.monotonic() + plan.gate_interval_seconds
            else:  # paused: evidence is neither gathered nor judged
                self._drain()
            self.stop.wait(TICK_S)
        if not state.active:  # what arrived too late is answered, not left waiting
            self.store.queue.refuse_all(f"migration {state.id} already {state.phase}")
        self._save(state, None)
        while self._unsaved and not self.stop.is_set():
            # An ending no one can read is no ending: keep beating (the migration is not
            # UNGUARDED meanwhile) until there is room to record it.
            self.store.beat(state.id)
            self.stop.wait(HEARTBEAT_S)
            self._save(state, None)
        return state

    def _control(self, state: MigrationState, plan: Plan) -> None:
        """Drain every queued request and answer each (see `vrm_tui.migrate.control`)."""
        requests = self.store.queue.pending()
        if not requests:
            return
        if state.phase == "applying" and not any(r.control == "abort" for r in requests):
            return  # the step is applied this tick; it is steered once it bakes
        settle(self.store.queue, requests, lambda request: self._act(state, plan, request))

    def _act(self, state: MigrationState, plan: Plan, request: Request) -> Answer:
        """Carry out one request; the answer says what became of it."""
        who = request.operator or "someone"

        def answer(detail: str, applied: bool = True) -> Answer:
            return Answer(request.id, request.control,
                          "applied" if applied else "not-applied", detail)

        step = f"step {state.step + 1} (rust {state.target}%)"
        if not state.active:
            return answer(f"migration {state.id} already {state.phase}", applied=False)
        if request.control == "abort":
            self._stop(state, "aborted", f"aborted by {who}", "migration aborted",
                       operator=who)
            failed = "ROLLBACK FAILED" in state.reason
            return answer(f"migration {state.id} {state.reason}", applied=not failed)
        if request.control == "pause":
            if state.phase == "paused":
                return answer(f"{step} already paused since {_clock(state.paused_at)}")
            state.stop_clock()
            state.phase, state.paused_at = "paused", time.time()
            state.reason = f"paused by {who}"
            self._save(state, None)
            self._journal(state, "paused", "paused", state.reason, operator=who)
            return answer(f"{step} paused with {state.baked():.0f}s of "
                          f"{state.plan['bake_seconds']:g}s baked")
        if request.control == "resume":
            if state.phase == "baking":
                return answer(f"{step} already baking")
            self._resume(state, who)
            return answer(f"{step} bakes again ({state.baked():.0f}s of "
                          f"{state.plan['bake_seconds']:g}s baked)")
        self._promote(state, plan, who)
        return answer(f"{step} promoted; " + (
            f"next: rust {state.target}%" if state.active else state.reason))

    def _resume(self, state: MigrationState, who: str) -> None:
        since = _clock(state.paused_at)
        state.phase, state.reason, state.paused_at = "baking", "", None
        state.start_clock()
        self._drain()  # what happened while paused is not this step's evidence
        self._save(state, None)
        self._journal(state, "resumed", "ok", f"step {state.step + 1} bakes again (paused "
                      f"since {since}; {state.baked():.0f}s of "
                      f"{state.plan['bake_seconds']:g}s baked, evidence kept)", operator=who)

    def _promote(self, state: MigrationState, plan: Plan, who: str) -> None:
        status = (state.verdict or {}).get("status", "inconclusive")
        honest = "gates passed" if status in ("pass", "warn") else f"gates {status}"
        detail = f"promoted by {who} ({honest})"
        state.record_step("promoted", detail)
        self._journal(state, "promoted", "ok", f"step {state.step + 1}: {detail}",
                      operator=who)
        self._advance(state, plan)

    def _apply(self, state: MigrationState) -> None:
        target = Split(state.target)
        try:
            self.controller.set_split(target, action="migrate")
            self._canary_ms = canary.settle(self.controller) or self._canary_ms
            if state.target == SHADOW:
                self._mirror(state)
        except (ApplyError, Failure, OSError) as exc:  # OSError: a full disk, say
            state.phase, state.reason = "paused", f"could not apply step {state.step + 1}: {exc}"
            state.paused_at = time.time()
            self._save(state, None)
            return
        state.parity_base = self._parity_counts()
        state.proxy_down_s = 0.0
        self._held = HeldClients()
        state.phase, state.step_started, state.reason = "baking", time.time(), ""
        state.evidence, state.baked_s, state.paused_at = None, 0.0, None
        state.start_clock()
        self._drain()  # evidence starts with this step
        self._save(state, None)

    def _mirror(self, state: MigrationState) -> None:
        """A shadow step compares before rust serves anyone: mirroring must be on."""
        if self.parity is None:
            raise Failure("a shadow step needs parity mirroring, which this runner cannot "
                          "switch on")
        if not self.parity.report().on:
            self.parity.on(state.plan_obj.parity_sample)
            state.parity_by_migration = True
            self._journal(state, "parity on", "ok", f"mirroring "
                          f"{state.plan_obj.parity_sample:g}% for the shadow step")

    def _parity_counts(self) -> dict[str, Any] | None:
        """Per route (compared, mismatched), and unanswered, so far, when parity is on."""
        if self.parity is None:
            return None
        try:
            report = self.parity.report(timeout=0.3)
        except Failure:
            return None
        if not report.on:
            return None
        return report.gate_counts()

    def _parity_gate(self, state: MigrationState, plan: Plan) -> Gate | None:
        now = self._parity_counts()
        if now is None:
            return None
        return parity_gate(plan, now, state.parity_base)

    def _preempted(self, state: MigrationState) -> bool | None:
        """True when someone else changed the split (the migration stops); None while the
        proxy does not answer: its down time is added to the step's `proxy_down_s`."""
        now = time.monotonic()
        try:
            served = self.controller.served(timeout=1.0).split
        except ProxyUnreachable as exc:
            if self._proxy_down_since is not None:
                state.proxy_down_s += now - self._proxy_down_since
            self._proxy_down_since = now
            state.reason = f"proxy unreachable for {state.proxy_down_s:.0f}s: {exc}"
            if time.monotonic() >= self._next_save:
                self._save(state, None)
            return None
        if self._proxy_down_since is not None:  # down until this answer
            state.proxy_down_s += now - self._proxy_down_since
            self._proxy_down_since = None
            state.reason = ""
        if served.rust != state.target:
            self._finish(state, "aborted", f"stopped: {self._who_changed(state)} (nginx now "
                         f"serves {served}; changed outside the migration)")
            return True
        return False

    def _who_changed(self, state: MigrationState) -> str:
        """The split change in the journal, since this migration started, that it did not
        make. A command journals its change just after nginx serves it, so this gate can see
        the change first: it waits up to WHO_WAIT_S for the record (the split is already
        what the change made; only the name waits)."""
        deadline = time.monotonic() + WHO_WAIT_S
        while True:
            for record in reversed(self.controller.journal.read(limit=50)):
                if record.action in SPLIT_ACTIONS and record.action != "migrate" \
                        and record.result == "ok" and _epoch(record.time) >= state.started:
                    return f"{record.action} by {record.operator} at {record.time[11:19]}"
            if time.monotonic() >= deadline:
                return "a change of the split by someone else"
            time.sleep(0.1)

    # --- evidence and gates ----------------------------------------------------------------

    def _drain(self) -> None:
        """Skip what the access log holds so far."""
        with contextlib.suppress(OSError):
            self.cursor.read()

    def _feed(self, evidence: StepEvidence) -> int:
        """Record every upstream attempt logged since the last call; returns how many."""
        try:
            lines = self.cursor.read()
        except OSError:
            return 0
        seen = 0
        for line in lines:
            request = parse_request(line, self.addresses)
            if request is None:
                continue
            key = stratum(request.method, request.path)
            for attempt in request.attempts:
                evidence.backend(attempt.backend).record(
                    key, attempt_outcome(attempt.status), attempt.latency_ms,
                    retried=attempt.retried)
                seen += 1
                if attempt.backend == Backend.RUST and attempt.status == TIMED_OUT:
                    self._held.add(attempt.latency_ms)
        return seen

    def _health(self, now: float) -> Probe:
        """rust's health, probed every second; a failure counts only when it repeats."""
        if self._last_health is None or now >= self._next_health:
            self._next_health = now + HEALTH_EVERY_S
            settings = self.controller.settings
            url = f"{settings.backend_url(Backend.RUST)}{settings.health_path}"
            self._last_health = probe(url, timeout=1.0)
            self._health_failures = 0 if self._last_health.healthy \
                else self._health_failures + 1
        return self._last_health

    def _bake(self, state: MigrationState, plan: Plan, judge: bool) -> None:
        evidence = StepEvidence.from_dict(state.evidence) if state.evidence else StepEvidence()
        self._feed(evidence)
        state.evidence = evidence.to_dict()
        health = self._health(time.monotonic())
        quick_fail = self._quick_fail(plan, evidence, state, health)
        # a critical alert about rust or the proxy; a step failing anyway does not wait on
        # Alertmanager's answer
        alert = self._alerts.last if quick_fail else self._alerts.poll()
        quick_fail = quick_fail or (alert is not None and alert.status == "fail")
        if not (judge or quick_fail):
            if time.monotonic() >= self._next_save:
                self._save(state, None)
            return
        settings = self.controller.settings
        if judge or self._vram is None:  # a quick failure does not wait on a slow scrape
            self._vram = scrape_vram(Backend.RUST, settings.backend_url(Backend.RUST),
                                     settings.max_vram_gb, 1.0)
        vram = self._vram
        baseline = BackendEvidence.from_dict(state.baseline) if state.baseline else None
        if self._health_failures < HEALTH_FAILURES_TO_FAIL and not health.healthy:
            health = Probe(health.url, True, health.status_code, health.latency_ms)
        parity = self._parity_gate(state, plan)
        if state.target == SHADOW:
            verdict = shadow_verdict(plan, parity or Gate(
                "rust answers like typescript", "inconclusive", "parity is off",
                "mirroring on"), health)
        else:
            verdict = evaluate(plan, evidence, health, vram, baseline)
            if parity is not None:
                verdict = Verdict(max((verdict.status, parity.status),
                                      key=lambda status: ORDER[status]),
                                  (*verdict.gates, parity))
        outage = proxy_gate(state.proxy_down_s)
        if outage is not None:
            verdict = Verdict(max((verdict.status, outage.status),
                                  key=lambda status: ORDER[status]), (outage, *verdict.gates))
        if alert is not None:
            verdict = Verdict(max((verdict.status, alert.status),
                                  key=lambda status: ORDER[status]), (*verdict.gates, alert))
        state.verdict = verdict.to_dict()
        baked = state.baked() >= plan.bake_seconds
        if verdict.status == "fail":
            state.record_step("failed", verdict.summary())
            self._stop(state, "rolled-back", f"step {state.step + 1} failed its gates: "
                       f"{verdict.summary()}", f"gate failed at step {state.step + 1}",
                       verdict)
            if self._health_failures >= HEALTH_FAILURES_TO_FAIL:  # a hang: clients waited
                self._report_held(state, evidence)
        elif baked and verdict.status == "inconclusive":
            state.stop_clock()
            state.phase, state.paused_at = "paused", time.time()
            state.reason = (f"inconclusive after {plan.bake_seconds:g}s: {verdict.summary()}; "
                            "promote to go on anyway, abort to roll back")
            self._save(state, verdict)
            self._journal(state, "paused", "paused", state.reason)
        elif baked:
            state.baseline = evidence.typescript.to_dict() \
                if evidence.typescript.attempts >= plan.min_samples else state.baseline
            state.record_step("passed", verdict.summary())
            self._journal(state, "step passed", "ok",
                          f"step {state.step + 1} ({state.target}%): {verdict.summary()}")
            self._advance(state, plan)
        else:
            self._save(state, verdict)

    def _quick_fail(self, plan: Plan, evidence: StepEvidence, state: MigrationState,
                    health: Probe) -> bool:
        """The cheap checks that run on every tick: the sequential error-rate test and two
        failed health probes in a row. True when the full verdict should be taken now."""
        if self._health_failures >= HEALTH_FAILURES_TO_FAIL \
                or proxy_gate(state.proxy_down_s) is not None:
            return True
        g = plan.gates
        baseline = BackendEvidence.from_dict(state.baseline) if state.baseline else None
        typescript = evidence.typescript
        if baseline is not None and typescript.attempts < plan.min_samples:
            typescript = baseline
        result = error_rate_test(evidence.rust.counts, typescript.counts,
                                 ceiling=g.error_rate_fail, confidence=g.error_confidence,
                                 min_attempts=plan.min_samples, margin=g.error_rate_margin)
        return result.decision == "fail"

    def _advance(self, state: MigrationState, plan: Plan) -> None:
        if state.step + 1 >= len(plan.steps):
            self._finish(state, "done", f"migration complete: rust {state.target}%")
            return
        state.step += 1
        state.phase, state.reason, state.verdict = "applying", "", None
        state.evidence, state.baked_s, state.bake_since = None, 0.0, None
        self._save(state, None)

    def _stop(self, state: MigrationState, phase: Phase, reason: str, why: str,
              verdict: Verdict | None = None, operator: str | None = None) -> None:
        """End the migration with a rollback: the split first (nothing waits on a write, a
        journal or parity), then the record of it."""
        try:
            self.controller.rollback()
            reason += "; rolled back"
        except (ApplyError, Failure, OSError) as exc:
            reason += f"; ROLLBACK FAILED: {exc}"
            self._journal(state, "rollback", "failed", f"{why}: {exc}")
        self._finish(state, phase, reason, verdict, operator)

    def _report_held(self, state: MigrationState, evidence: StepEvidence) -> None:
        """After a rollback (never before it): the requests that were waiting on rust end
        within the canary timeout; count them from the access log and add what clients saw
        to the reason, e.g. "12 client request(s) waited on rust until its timeout (up to
        2.0 s ...)". Nothing is added when none timed out."""
        deadline = time.monotonic() + min(self._canary_ms / 1000 + 1.0, HELD_WAIT_MAX_S)
        while time.monotonic() < deadline and not self.stop.is_set():
            self._feed(evidence)
            time.sleep(0.1)
        self._feed(evidence)
        held = self._held.said()
        if held:
            state.reason += held
            self._save(state, None)
            self._journal(state, "clients held", "failed", held.lstrip("; "))

    def _finish(self, state: MigrationState, phase: Phase, reason: str,
                verdict: Verdict | None = None, operator: str | None = None) -> None:
        if state.phase == "baking":
            state.stop_clock()
        if phase == "aborted" and state.active:
            state.record_step("stopped", reason)
        state.phase, state.reason = phase, reason
        self._save(state, verdict)
        self._journal(state, phase, "ok" if phase == "done" else "failed", reason,
                      operator=operator)
        if state.parity_by_migration and self.parity is not None:
            state.parity_by_migration = False
            try:
                self.parity.off()
            except Failure as exc:
                self._journal(state, "parity off", "failed", str(exc))
            self._save(state, None)

    def _save(self, state: MigrationState, verdict: Verdict | None) -> None:
        """Persist the state; a write that fails (a full disk) is noted, never fatal: the
        guard keeps guarding from memory and writes again at the next save."""
        self._next_save = time.monotonic() + SAVE_EVERY_S
        try:
            self.store.save(state)
            self._unsaved = False
        except OSError as exc:
            self._unsaved = True
            self._note_write_error(exc)
        self.on_update(state, verdict)

    def _note_write_error(self, exc: OSError) -> None:
        where = f" at {exc.filename}" if exc.filename else ""
        self.write_error = f"cannot write{where}: {exc.strerror or exc}"

    def _journal(self, state: MigrationState, what: str, result: Result, detail: str,
                 operator: str | None = None) -> None:
        # No from/to: a migration record changes no split (the "migrate" records do), and a
        # bare `to` read as "migration rust ?->10"; the step's weight is in the detail.
        record = Record(action="migration", result=result,
                        detail=f"{state.id} {step_name(state.target)} {what}: {detail}")
        if operator:
            record = Record(action=record.action, result=record.result, operator=operator,
                            detail=record.detail)
        try:
            self.controller.journal.append(record)
        except OSError as exc:
            self._note_write_error(exc)
        # the same event to the alert routes (webhooks, Slack, e-mail), like Flagger's
        notify(self.controller.settings, state.id, what, step_name(state.target), record.detail)


def _clock(at: float | None) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S") if at else "?"


def _epoch(stamp: str) -> float:
    """A journal record's time (ISO 8601) in seconds since the epoch; 0 where unreadable."""
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0
