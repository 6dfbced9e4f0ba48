"""The fleet as the faces see it: status, hosts, deploy, rollback (waited for), rejoin.

Every method returns a frozen view or raises a VrmError; the CLI and the TUI's Fleet pane
only render them. Writes to `desired` go through EtcdStore.write_desired (compare-and-set):
a deploy that loses the race to a rollback is refused rather than rolled on top of it; a
rollback always goes through.

Rolling back one host from another is a hold (`holds/<host>`), not a per-host override in
`desired`: an override lives only until the next generation (a deploy writes a whole new
`desired`, a migration's guard rewrites its per-host map), so the host would rise again with
the next deploy. A hold is its own key, written with its fleet journal record in one
transaction and without a lease: the host's agent, woken by a watch on it, rolls back and
holds the host exactly as after a local rollback, through deploys, migrations and agent
restarts, until `vrm fleet rejoin` on that host deletes it. It needs no leader and moves no
generation, so it never races a deploy's compare-and-set or stops a fleet migration.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from vrm_tui.core.errors import BadInput, Failure, FleetUnreachable, VrmError
from vrm_tui.fleet.local import AgentState, held_by
from vrm_tui.fleet.store import Desired, EtcdStore, FleetMigration, Hold, HostReport, now_iso
from vrm_tui.journal import operator_identity
from vrm_tui.settings import Settings
from vrm_tui.traffic.controller import ApplyResult, TrafficController

__all__ = ["Confirmation", "FleetRollback", "FleetService", "FleetStatus", "HostRollback",
           "RollbackOutcome"]

POLL_S = 0.01  # how often a rollback reads the hosts' reports while it waits


@dataclass(frozen=True)
class FleetStatus:
    fleet: str
    host: str
    endpoints: tuple[str, ...]
    desired: Desired | None
    hosts: dict[str, HostReport]
    local: AgentState | None  # this host's agent record (its mode even when isolated)
    held_by: str | None
    unreachable: str = ""  # why etcd could not be read ("" when it was)


@dataclass(frozen=True)
class Confirmation:
    host: str
    seen_ms: float  # from the call to the report of the rollback's generation at rust 0
    apply_ms: float | None  # the host's own time to apply and verify it


@dataclass(frozen=True)
class RollbackOutcome:
    desired: Desired
    confirmed: tuple[Confirmation, ...]
    missing: tuple[str, ...]  # live hosts that did not confirm within the timeout
    gone: tuple[str, ...]  # hosts whose report vanished while waiting (lease expired)
    waiting: tuple[str, ...] = ()  # while it waits: live hosts still confirming

    @property
    def ok(self) -> bool:
        return not self.missing and not self.waiting


@dataclass(frozen=True)
class FleetRollback:
    """A rollback of the fleet from this host (the TUI's `r`): this host first, with no
    etcd on its path, then `desired` rust 0 waited for on every live host."""

    host: str
    local: ApplyResult | None  # this host's own rollback, verified (None: it failed)
    local_error: str = ""
    fleet: RollbackOutcome | None = None  # None: not written yet, or etcd not reached
    unreachable: str = ""  # why the fleet could not be reached ("" when it was)

    @property
    def done(self) -> bool:
        return bool(self.unreachable) or (self.fleet is not None and not self.fleet.waiting)

    @property
    def ok(self) -> bool:
        return self.local is not None and self.fleet is not None and self.fleet.ok


@dataclass(frozen=True)
class HostRollback:
    """One host rolled back and held at rust 0: this host locally, another through etcd."""

    host: str
    remote: bool
    local: ApplyResult | None = None  # this host's own rollback
    seen_ms: float | None = None  # a remote host: its report said held at rust 0 (None: not
    # within the timeout; the hold stays in force)


def resolve_waves(spec: str, hosts: list[str]) -> list[list[str]]:
    """`1,all` -> [[first host], [every host]]: counts of hosts, cumulative; `all` is all."""
    waves: list[list[str]] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        count = len(hosts) if part == "all" else int(part)
        chosen = hosts[:count]
        if not waves or len(chosen) > len(waves[-1]):
            waves.append(chosen)
    if not waves or len(waves[-1]) < len(hosts):
        waves.append(list(hosts))
    return waves


class FleetService:
    """One fleet seen from one host (its settings name the fleet, endpoints and host)."""

    def __init__(self, settings: Settings, controller: TrafficController | None = None) -> None:
        self.settings = settings
        self.controller = controller  # this host's (the composition root's), for `vrm agent`

    def _store(self) -> EtcdStore:
        s = self.settings
        if not s.fleet:
            raise BadInput("VRM_FLEET is not set: name the fleet this host belongs to")
        if not s.fleet_endpoints:
            raise BadInput("VRM_FLEET_ENDPOINTS is not set: list etcd's client URLs")
        return EtcdStore(s.fleet, s.fleet_endpoints)

    def status(self) -> FleetStatus:
        """The desired split, every live host's report and this host's agent; an
        unreachable etcd is shown, not raised (the local part still tells)."""
        store = self._store()
        s = self.settings
        local = AgentState.load(s.paths.fleet_agent)
        held = held_by(s)
        try:
            desired, _ = store.desired()
            hosts = store.hosts()
        except FleetUnreachable as exc:
            return FleetStatus(s.fleet, s.fleet_host, s.fleet_endpoints, None, {}, local, held,
                               str(exc))
        return FleetStatus(s.fleet, s.fleet_host, s.fleet_endpoints, desired, hosts, local,
                           held)

    def hosts(self) -> dict[str, HostReport]:
        return self._store().hosts()

    def deploy(self, rust: int, reason: str = "") -> Desired:
        """Ask every host for `rust`; refused when a rollback moved `desired` meanwhile."""
        store = self._store()
        return store.write_desired(rust, operator_identity(), reason or f"deploy rust {rust}",
                                   "deploy", self.settings.fleet_host,
                                   may_override=lambda moved: moved.action != "rollback")

    def rollback(self, timeout: float | None = None, reason: str = "",
                 covers: dict[str, Any] | None = None,
                 progress: Callable[[RollbackOutcome], None] | None = None) -> RollbackOutcome:
        """Desired rust 0, then wait until every live host reports it verified; `progress`
        hears who is still confirming each time that changes."""
        store = self._store()
        started = time.perf_counter()
        try:
            wanted = store.write_desired(0, operator_identity(), reason or "fleet rollback",
                                         "rollback", self.settings.fleet_host,
                                         may_override=lambda _moved: True, covers=covers)
        except FleetUnreachable as exc:
            raise FleetUnreachable(f"{exc}; nothing written: roll each host back with "
                                   "`vrm rollback` (it needs no etcd)") from None
        limit = self.settings.fleet_confirm_timeout if timeout is None else timeout
        deadline = started + limit
        confirmed: dict[str, Confirmation] = {}
        seen: set[str] = set()
        gone: set[str] = set()
        told: tuple[str, ...] | None = None
        while True:
            try:
                reports = store.hosts()
            except FleetUnreachable:
                reports = None
            if reports is not None:
                gone |= seen - set(reports)
                seen |= set(reports)
                for name, report in reports.items():
                    if (name not in confirmed and report.generation >= wanted.generation
                            and report.rust == 0):
                        confirmed[name] = Confirmation(
                            name, round((time.perf_counter() - started) * 1000, 1),
                            report.apply_ms)
                live = set(reports)
                if live <= set(confirmed) or time.perf_counter() >= deadline:
                    missing = tuple(sorted(live - set(confirmed)))
                    return RollbackOutcome(wanted, tuple(confirmed.values()), missing,
                                           tuple(sorted(gone - set(confirmed))))
                waiting = tuple(sorted(live - set(confirmed)))
                if progress is not None and waiting != told:
                    told = waiting
                    progress(RollbackOutcome(wanted, tuple(confirmed.values()), (),
                                             tuple(sorted(gone - set(confirmed))), waiting))
            elif time.perf_counter() >= deadline:
                missing = tuple(sorted(seen - set(confirmed)))
                return RollbackOutcome(wanted, tuple(confirmed.values()), missing, ())
            time.sleep(POLL_S)

    def rollback_here(self, progress: Callable[[FleetRollback], None] | None = None,
                      timeout: float | None = None) -> FleetRollback:
        """The whole fleet from this host: this host's own rollback first (nginx and the
        state dir only, so an unreachable etcd never delays it), then `desired` rust 0
        covering that local rollback, waited for on every live host. Without etcd this host
        stays rolled back and held (its agent saw a local rollback the fleet never covered)."""
        s = self.settings
        tell = progress or (lambda _view: None)
        covers = {"host": s.fleet_host, "pid": os.getpid(), "from": now_iso()}
        here = FleetRollback(s.fleet_host, None)
        try:
            assert self.controller is not None, "a console's fleet has this host's controller"
            here = replace(here, local=self.controller.rollback())
        except VrmError as exc:  # the fleet is still rolled back: this host's agent follows it
            here = replace(here, local_error=str(exc))
        tell(here)
        try:
            outcome = self.rollback(timeout, "fleet rollback (TUI)",
                                    {**covers, "to": now_iso()},
                                    lambda partial: tell(replace(here, fleet=partial)))
        except VrmError as exc:  # FleetUnreachable, a bad fleet setting: one line
            here = replace(here, unreachable=str(exc).split("; nothing written")[0])
        else:
            here = replace(here, fleet=outcome)
        tell(here)
        return here

    def rollback_host(self, host: str, timeout: float | None = None,
                      reason: str = "") -> HostRollback:
        """Roll one host back and hold it at rust 0 until `vrm fleet rejoin` there: this
        host locally (no etcd, like `vrm rollback`), another through its hold key, waited
        for until its report says held at rust 0."""
        s = self.settings
        if host == s.fleet_host:
            assert self.controller is not None, "a console's fleet has this host's controller"
            return HostRollback(host, False, local=self.controller.rollback())
        store = self._store()
        live = store.hosts()
        if host not in live:
            raise BadInput(f"--host {host}: not a live host of fleet {s.fleet} "
                           f"(live: {', '.join(sorted(live)) or 'none'})")
        started = time.perf_counter()
        by = operator_identity()
        store.hold(Hold(host, by, now_iso(), reason or f"rolled back from {s.fleet_host}",
                        s.fleet_host))
        deadline = started + (s.fleet_confirm_timeout if timeout is None else timeout)
        while time.perf_counter() < deadline:
            with contextlib.suppress(FleetUnreachable):
                report = store.hosts().get(host)
                if report is not None and report.mode == "held" and report.rust == 0:
                    return HostRollback(host, True,
                                        seen_ms=round((time.perf_counter() - started) * 1000, 1))
            time.sleep(POLL_S)
        return HostRollback(host, True)

    def rejoin(self) -> str | None:
        """Release this host's hold (a local rollback's, or a remote one's key in etcd): its
        agent follows `desired` again. Who held it, or None when it was not held."""
        s = self.settings
        was = held_by(s)
        if was is None:
            return None
        released = False
        with contextlib.suppress(FleetUnreachable):  # first: or the agent would hold again
            self._store().release(s.fleet_host)
            released = True
        try:
            s.paths.fleet_held.unlink(missing_ok=True)
        except OSError as exc:
            raise Failure(f"cannot remove {s.paths.fleet_held}: {exc.strerror}") from None
        # The hold is released here either way; an unreachable etcd misses one journal line
        # (and a hold written from another host, still in etcd, holds the host again).
        if released:
            with contextlib.suppress(FleetUnreachable):
                self._store().note(s.fleet_host, "rejoin", f"held by {was} until now",
                                   operator_identity())
        return was

    # --- this host's agent -----------------------------------------------------------------

    @property
    def configured(self) -> bool:
        """Whether this host belongs to a fleet (VRM_FLEET and VRM_FLEET_ENDPOINTS set)."""
        return bool(self.settings.fleet and self.settings.fleet_endpoints)

    def start_agent(self) -> bool:
        """`vrm up`: start the agent, detached, when this host is a fleet's and none runs."""
        from vrm_tui.fleet import agent  # its loop, telemetry and gates: not for the CLI

        return self.configured and agent.spawn(self.settings) is not None

    def stop_agent(self) -> bool:
        """`vrm down`: stop the agent (its report leaves the fleet at once)."""
        from vrm_tui.fleet import agent

        return agent.stop(self.settings)

    def run_agent(self) -> int:
        """`vrm agent`: the agent in the foreground (a compose service, a terminal)."""
        self._store()  # the same one-line errors as every fleet command
        from vrm_tui.fleet import agent

        return agent.run(self.settings, controller=self.controller)

    # --- a fleet migration (run by the guard that holds the leader's lease) -----------------

    def migration(self) -> tuple[FleetMigration | None, str | None]:
        """The fleet's migration (None: none ever started) and the guard leading it."""
        store = self._store()
        migration, _ = store.migration()
        return migration, store.leader()

    def migrate_start(self, steps: list[int], waves: str, bake_s: float,
                      max_error_rate: float, min_samples: int = 50) -> FleetMigration:
        """Record a migration; the agents' guards elect a leader that runs it."""
        if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
            raise BadInput(f"--steps={','.join(map(str, steps))}: expected rising weights "
                           "from 1 to 100, e.g. 10,50,100")
        if not re.fullmatch(r"([1-9][0-9]*|all)(,([1-9][0-9]*|all))*", waves):
            raise BadInput(f"--waves={waves}: expected host counts ending in all, e.g. 1,all")
        if not bake_s > 0 or not 0 < max_error_rate < 1:
            raise BadInput("--bake must be positive and --max-error-rate above 0, below 100 "
                           "(%)")
        if min_samples < 1:
            raise BadInput(f"--min-samples={min_samples}: expected 1 or more")
        store = self._store()
        current, revision = store.migration()
        if current is not None and current.active:
            raise Failure(f"fleet migration {current.id} is {current.phase}; "
                          "`vrm fleet migrate abort` first")
        hosts = sorted(store.hosts())
        if not hosts:
            raise Failure("no live host in the fleet: start the agents (`vrm up` on each)")
        desired, _ = store.desired()
        migration = FleetMigration(
            f"fm-{time.strftime('%Y%m%d-%H%M%S')}", steps, resolve_waves(waves, hosts), bake_s,
            max_error_rate, operator_identity(), now_iso(),
            start_rust=min(desired.rust, steps[0]) if desired else 0, min_samples=min_samples)
        if not store.put_migration(migration, revision):
            raise Failure("another fleet migration was started at the same moment")
        with contextlib.suppress(FleetUnreachable):
            store.note(self.settings.fleet_host, "migrate-start",
                       f"{migration.id}: steps {steps}, waves {migration.waves}",
                       migration.by)
        return migration

    def migrate_resume(self) -> FleetMigration:
        """Resume a paused migration (its held hosts stay at rust 0). Paused inconclusive,
        the wave goes on as it is (the operator's call, as a single host's promote); paused
        for an outlier, the rest of the wave bakes again from now."""
        store = self._store()
        current, revision = store.migration()
        if current is None or current.phase != "paused":
            raise Failure("no paused fleet migration to resume")
        judged = current.evidence
        inconclusive = judged.get("fleet", {}).get("status") == "inconclusive" \
            and not any(e.get("status") == "fail" for e in judged.values())
        resumed = replace(current, phase="running", promote=inconclusive,
                          entered_at=current.entered_at if inconclusive else time.time(),
                          reason=f"resumed by {operator_identity()}")
        if not store.put_migration(resumed, revision):
            raise Failure("the migration changed meanwhile; look again")
        return resumed

    def migrate_abort(self, timeout: float | None = None) -> RollbackOutcome:
        """Stop the migration and roll the fleet back (waiting as `rollback` does)."""
        store = self._store()
        current, revision = store.migration()
        if current is not None and current.active:
            store.put_migration(replace(current, phase="stopped",
                                        reason=f"aborted by {operator_identity()}"), revision)
        return self.rollback(timeout, reason="fleet migration aborted")
