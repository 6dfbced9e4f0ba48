"""The fleet as the faces see it: status, hosts, deploy, rollback (waited for), rejoin.

Every method returns a frozen view or raises a VrmError; the CLI (and later the TUI's fleet
pane) only render them. Writes to `desired` go through EtcdStore.write_desired (compare-
and-set): a deploy that loses the race to a rollback is refused rather than rolled on top of
it; a rollback always goes through.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, replace

from vrm_tui.core.errors import BadInput, Failure, FleetUnreachable
from vrm_tui.fleet import agent
from vrm_tui.fleet.guard import resolve_waves
from vrm_tui.fleet.store import Desired, EtcdStore, FleetMigration, HostReport, now_iso
from vrm_tui.journal import operator_identity
from vrm_tui.settings import Settings
from vrm_tui.traffic.controller import TrafficController

__all__ = ["Confirmation", "FleetService", "FleetStatus", "RollbackOutcome"]

POLL_S = 0.01  # how often a rollback reads the hosts' reports while it waits


@dataclass(frozen=True)
class FleetStatus:
    fleet: str
    host: str
    endpoints: tuple[str, ...]
    desired: Desired | None
    hosts: dict[str, HostReport]
    local: agent.AgentState | None  # this host's agent record (its mode even when isolated)
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

    @property
    def ok(self) -> bool:
        return not self.missing


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
        local = agent.AgentState.load(s.paths.fleet_agent)
        held = agent.held_by(s)
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

    def rollback(self, timeout: float | None = None, reason: str = "") -> RollbackOutcome:
        """Desired rust 0, then wait until every live host reports it verified."""
        store = self._store()
        started = time.perf_counter()
        try:
            wanted = store.write_desired(0, operator_identity(), reason or "fleet rollback",
                                         "rollback", self.settings.fleet_host,
                                         may_override=lambda _moved: True)
        except FleetUnreachable as exc:
            raise FleetUnreachable(f"{exc}; nothing written: roll each host back with "
                                   "`vrm rollback` (it needs no etcd)") from None
        limit = self.settings.fleet_confirm_timeout if timeout is None else timeout
        deadline = started + limit
        confirmed: dict[str, Confirmation] = {}
        seen: set[str] = set()
        gone: set[str] = set()
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
            elif time.perf_counter() >= deadline:
                missing = tuple(sorted(seen - set(confirmed)))
                return RollbackOutcome(wanted, tuple(confirmed.values()), missing, ())
            time.sleep(POLL_S)

    def rejoin(self) -> str | None:
        """Release this host's local hold: its agent follows `desired` again. Who held it,
        or None when it was not held."""
        s = self.settings
        was = agent.held_by(s)
        if was is None:
            return None
        try:
            s.paths.fleet_held.unlink(missing_ok=True)
        except OSError as exc:
            raise Failure(f"cannot remove {s.paths.fleet_held}: {exc.strerror}") from None
        # The hold is released here either way; an unreachable etcd misses one journal line.
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
        return self.configured and agent.spawn(self.settings) is not None

    def stop_agent(self) -> bool:
        """`vrm down`: stop the agent (its report leaves the fleet at once)."""
        return agent.stop(self.settings)

    def run_agent(self) -> int:
        """`vrm agent`: the agent in the foreground (a compose service, a terminal)."""
        self._store()  # the same one-line errors as every fleet command
        return agent.run(self.settings, controller=self.controller)

    # --- a fleet migration (run by the guard that holds the leader's lease) -----------------

    def migration(self) -> tuple[FleetMigration | None, str | None]:
        """The fleet's migration (None: none ever started) and the guard leading it."""
        store = self._store()
        migration, _ = store.migration()
        return migration, store.leader()

    def migrate_start(self, steps: list[int], waves: str, bake_s: float,
                      max_error_rate: float) -> FleetMigration:
        """Record a migration; the agents' guards elect a leader that runs it."""
        if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
            raise BadInput(f"--steps={','.join(map(str, steps))}: expected rising weights "
                           "from 1 to 100, e.g. 10,50,100")
        if not re.fullmatch(r"([1-9][0-9]*|all)(,([1-9][0-9]*|all))*", waves):
            raise BadInput(f"--waves={waves}: expected host counts ending in all, e.g. 1,all")
        if not bake_s > 0 or not 0 <= max_error_rate < 1:
            raise BadInput("--bake must be positive and --max-error-rate from 0 to 99 (%)")
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
            start_rust=min(desired.rust, steps[0]) if desired else 0)
        if not store.put_migration(migration, revision):
            raise Failure("another fleet migration was started at the same moment")
        with contextlib.suppress(FleetUnreachable):
            store.note(self.settings.fleet_host, "migrate-start",
                       f"{migration.id}: steps {steps}, waves {migration.waves}",
                       migration.by)
        return migration

    def migrate_resume(self) -> FleetMigration:
        """Resume a paused migration (its held hosts stay at rust 0)."""
        store = self._store()
        current, revision = store.migration()
        if current is None or current.phase != "paused":
            raise Failure("no paused fleet migration to resume")
        resumed = replace(current, phase="running",
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
