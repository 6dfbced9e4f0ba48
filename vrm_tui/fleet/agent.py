"""`vrm agent`: one host's follower of the fleet's desired split.

It reads `/vrm/<fleet>/desired` (woken by a watch, and on every tick in case a watch was
lost), applies it through this host's own TrafficController (zero-reload, verified on a
fresh connection, journaled like any change) and reports what nginx serves under a lease
of VRM_FLEET_TTL seconds, so a dead host's report vanishes. Its rules:

- A local rollback (`vrm rollback`, the TUI's `r`) needs no etcd and no agent; the agent
  sees it in the journal and holds the host at rust 0 (`held`, the file `fleet-held`) until
  an operator runs `vrm fleet rejoin`. It checks again under the traffic lock right before
  any raise, so a rollback that lands mid-decision is never undone. The one exception is the
  TUI's fleet rollback, which rolls its own host back first and then writes a fleet rollback
  that `covers` that local one: the host then follows the fleet (a hold taken before the
  fleet's write arrived is released), because the fleet as a whole is at rust 0 and the next
  deploy is the fleet's to make. If that write never lands, the hold stays.
- An operator's rollback of this host from another (`holds/<host>`, the Fleet pane, `vrm
  fleet rollback --host`): the agent rolls back at once (woken by a watch on the key) and
  holds the host exactly like a local rollback, until `vrm fleet rejoin` here.
- etcd unreachable: the split stays as it is (`isolated`); only VRM_FLEET_ISOLATED_ROLLBACK
  seconds of isolation (off by default) lower it, to rust 0, never raise it.
- Desired generations only go forward: an older or equal generation is never applied, and
  the agent applies only the newest it reads, so one that wakes after a deploy and a
  rollback goes straight to the rollback.

`spawn()` starts it detached for `vrm up` (like the migration guard); `python -m
vrm_tui.fleet` and `vrm agent` run it in the foreground (a compose service).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from vrm_tui import __version__
from vrm_tui.core import services
from vrm_tui.core.backend import Backend
from vrm_tui.core.errors import (
    ApplyError,
    Failure,
    FleetUnreachable,
    LeaseGone,
    ProxyUnreachable,
    VrmError,
)
from vrm_tui.core.split import Split
from vrm_tui.fleet.guard import FleetGuard
from vrm_tui.fleet.local import AgentState, held_by, held_record
from vrm_tui.fleet.store import Desired, EtcdStore, Hold, HostReport, now_iso
from vrm_tui.fleet.targets import own_targets, write_targets
from vrm_tui.journal import Journal
from vrm_tui.settings import Settings
from vrm_tui.settings import load as load_settings
from vrm_tui.stack import lifecycle
from vrm_tui.system.files import write_atomic
from vrm_tui.system.procs import ProcRecord
from vrm_tui.telemetry.accesslog import AccessLogSource
from vrm_tui.telemetry.backend_metrics import scrape_vram
from vrm_tui.telemetry.gpu import read_gpus
from vrm_tui.telemetry.health import probe
from vrm_tui.traffic.controller import TrafficController

SERVICE = services.FLEET_AGENT
TICK_S = 0.5  # how often the agent renews its lease and reads `desired` without a wake-up
HEALTH_EVERY_S = 2.0  # how often the report's health, traffic and VRAM are read
START_TIMEOUT_S = 10.0
LOCK_WAIT_S = 10.0


class Agent:
    """Follows `desired` on one host; `run()` until `stop` is set."""

    def __init__(self, settings: Settings, controller: TrafficController, store: EtcdStore,
                 stop: threading.Event, tick: float = TICK_S,
                 say: Callable[[str], None] = print,
                 traffic: AccessLogSource | None = None) -> None:
        self.settings = settings
        self.controller = controller
        self.store = store
        self.stop = stop
        self.tick = tick
        self.say = say
        self.wake = threading.Event()
        self.journal = Journal(settings.paths.journal)
        self.lease: int | None = None
        self._renewed_at = 0.0  # when the lease was last renewed (monotonic)
        self._unwatch: Callable[[], None] | None = None
        self._reported: HostReport | None = None
        self._isolated_at: float | None = None
        self._held = held_by(settings) is not None
        self._desired: Desired | None = None  # the newest `desired` read
        self._obeyed: Hold | None = None  # the remote hold this agent rolled back for
        self._notes: list[tuple[str, str]] = []  # (detail, by): holds not yet in etcd
        self.traffic = traffic
        self.guard = FleetGuard(store, settings.fleet_host, say)
        self._looks: tuple[dict[str, bool], dict[str, dict[str, float | None]],
                           float | None, float | None, dict[str, Any]] = ({}, {}, None, None, {})
        self._looked_at = 0.0
        self._targets = own_targets(settings)
        self._applied_at = time.time()  # when the split of `state.generation` was verified
        old = AgentState.load(settings.paths.fleet_agent)
        self.state = AgentState(
            settings.fleet, settings.fleet_host, os.getpid(),
            generation=old.generation if old and old.fleet == settings.fleet else 0,
            since=(old.since if old else "") or now_iso(),
            journal_offset=old.journal_offset if old else self._journal_end(),
            journal_time=old.journal_time if old else "",
            previous_pid=old.pid if old else 0,
        )

    def _journal_end(self) -> int:
        try:
            return self.settings.paths.journal.stat().st_size
        except OSError:
            return 0

    # --- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        self.say(f"following fleet {self.settings.fleet} as {self.settings.fleet_host} "
                 f"via {', '.join(self.settings.fleet_endpoints)}")
        try:
            while not self.stop.is_set():
                self.step()
                self.wake.wait(self.tick)
                self.wake.clear()
        finally:
            self.close()

    def step(self) -> None:
        """One look: local rollbacks, etcd's desired split, this host's report."""
        held = self._check_local_rollback()
        if self._held and not held:
            # Rejoined (or released by a fleet rollback): the desired split it took at rust 0
            # while held is applied now.
            self.say("no longer held: following the fleet's desired split again")
            self._set(generation=0)
        self._held = held
        try:
            self._renew()
            desired, hold = self.store.look(self.settings.fleet_host)
            self._desired = desired
            self._obey(hold)
            self._release_if_covered()
            if desired is not None:
                self._follow(desired)
            self._send_notes()
            if time.monotonic() - self._renewed_at > self.settings.fleet_ttl / 3:
                self._renew()  # a long wait for the traffic lock: the report needs the lease
            self._set(mode="held" if held_by(self.settings) else "following", isolated_since="")
            if self._isolated_at is not None:
                self.say("etcd answers again: following")
            self._isolated_at = None
            self._report()
            self._render_targets()
            assert self.lease is not None
            self.guard.tick(self.lease)  # a candidate for the fleet migration's guard
        except FleetUnreachable as exc:
            self._isolated(str(exc))
        except LeaseGone as exc:
            # Expired mid-step all the same (the host paused): its report and any guard
            # claim went with it; the next tick takes a new lease, never ending the loop.
            self.say(f"lease gone, taking a new one: {exc}")
            self.lease = None
        self._set(updated=now_iso())
        self.state.save(self.settings.paths.fleet_agent)

    def close(self) -> None:
        """Stop watching and give the lease up, so the fleet sees this host gone at once."""
        if self._unwatch is not None:
            with contextlib.suppress(Exception):
                self._unwatch()
        if self.lease is not None:
            with contextlib.suppress(VrmError):  # unreachable, or the lease already gone
                self.store.revoke(self.lease)
        self._set(mode="stopped", updated=now_iso())
        self.state.save(self.settings.paths.fleet_agent)

    def _set(self, **changes: object) -> None:
        self.state = replace(self.state, **changes)  # type: ignore[arg-type]

    def _renew(self) -> None:
        """Keep the lease alive, or take a new one (and watch again) where it is gone."""
        if self.lease is None or not self.store.keep_alive(self.lease):
            self._connect()
        self._renewed_at = time.monotonic()

    def _connect(self) -> None:
        self.lease = None
        self._reported = None
        if self._unwatch is not None:
            with contextlib.suppress(Exception):
                self._unwatch()
            self._unwatch = None
        lease = self.store.grant(self.settings.fleet_ttl)
        keys = self.store.keys
        self._unwatch = self.store.watch(self.wake, keys.desired,
                                         keys.hold(self.settings.fleet_host))
        self.lease = lease

    def _isolated(self, why: str) -> None:
        """Keep the split; lower it to rust 0 only after the configured isolation."""
        self.lease = None
        if self._isolated_at is None:
            self._isolated_at = time.monotonic()
            self._set(isolated_since=now_iso())
            self.say(f"isolated, keeping the split: {why}")
        self._set(mode="isolated")
        limit = self.settings.fleet_isolated_rollback_s
        if limit and time.monotonic() - self._isolated_at >= limit:
            rust = self._served_rust()
            if rust:
                self.say(f"isolated for {limit}s: rust 0 (VRM_FLEET_ISOLATED_ROLLBACK)")
                with contextlib.suppress(ApplyError):
                    self.controller.rollback()

    # --- following -------------------------------------------------------------------------

    def _check_local_rollback(self) -> bool:
        """A rollback in this host's journal that this agent did not make holds the host."""
        start = self.state.journal_offset
        if self._journal_end() < start:  # rewritten smaller (capped): read it again, by time
            start = 0
        records, offset = self.journal.read_from(start)
        own = {os.getpid(), self.state.previous_pid}
        newest = max([self.state.since, self.state.journal_time])
        for record in records:
            if (record.action == "rollback" and record.result == "ok" and record.pid not in own
                    and record.time > newest and not self._covered(record.pid, record.time)):
                self._hold(record.operator, record.time, pid=record.pid)
        latest = max([self.state.journal_time, *(r.time for r in records)])
        self._set(journal_offset=offset, journal_time=latest)
        return held_by(self.settings) is not None

    def _covered(self, pid: int, at: str) -> bool:
        """Whether the newest `desired` is a fleet rollback covering this local one."""
        desired = self._desired
        return desired is not None and desired.covers_rollback(self.settings.fleet_host, pid, at)

    def _release_if_covered(self) -> None:
        """A hold taken for the local half of a fleet rollback, whose fleet half has now
        landed: released (the host follows the fleet, which is at rust 0)."""
        record = held_record(self.settings)
        pid, at = (record or {}).get("pid"), str((record or {}).get("at", ""))
        if isinstance(pid, int) and self._covered(pid, at):
            with contextlib.suppress(OSError):
                self.settings.paths.fleet_held.unlink(missing_ok=True)
                self.say(f"released: the fleet rollback covers the local one at {at}")

    def _obey(self, hold: Hold | None) -> None:
        """An operator's hold of this host from another: rust 0 now, held like a local
        rollback. Rolled back once per hold (a failure is retried on the next tick), so an
        operator on this host may still change its split by hand."""
        if hold is None or hold == self._obeyed:
            return
        self._hold(hold.by, hold.at, from_host=hold.from_host)
        if self._served_rust() != 0:
            try:
                self.controller.rollback()
            except (ApplyError, ProxyUnreachable) as exc:
                self._set(error=f"hold from {hold.from_host}: {exc}")
                return
        self.say(f"held at rust 0 by {hold.by} from {hold.from_host}: {hold.reason}")
        self._obeyed = hold

    def _hold(self, by: str, at: str, pid: int = 0, from_host: str = "") -> None:
        if held_by(self.settings) is None:
            self.say(f"held at rust 0: {'remote hold' if from_host else 'local rollback'} "
                     f"by {by} at {at} (vrm fleet rejoin)")
            origin: dict[str, object] = {"from_host": from_host} if from_host else {"pid": pid}
            text = json.dumps({"by": by, "at": at, **origin}) + "\n"
            try:
                write_atomic(self.settings.paths.fleet_held, text)
            except OSError:
                # Not recorded on disk (full disk): held in memory by the next look at the
                # journal, which still has the record past an unmoved offset.
                return
            self._held = True  # a rejoin before the next look still re-applies `desired`
            if not from_host:  # a remote hold was journaled with its key
                self._notes.append((f"local rollback at {at}", by))

    def _send_notes(self) -> None:
        """The fleet journal's records of local holds, sent by the step outside the traffic
        lock (a hung etcd must never delay a rollback waiting on that lock); kept for the
        next tick while etcd is unreachable."""
        while self._notes:
            detail, by = self._notes[0]
            self.store.note(self.settings.fleet_host, "held", detail, by)
            self._notes.pop(0)

    def _follow(self, desired: Desired) -> None:
        """Apply `desired` if it is newer than what this host took (held: at rust 0)."""
        if desired.generation <= self.state.generation:
            return
        start = time.perf_counter()
        try:
            with self.controller.lock.hold("deploy", timeout=LOCK_WAIT_S):
                # Under the traffic lock: a local rollback either came before (and holds the
                # host now) or waits for this change and comes after it.
                held = self._check_local_rollback()
                target = 0 if held else desired.rust_for(self.settings.fleet_host)
                served = self._served_rust()
                if served != target:
                    if target == 0:
                        self.controller.rollback()
                    else:
                        self.controller.set_split(Split(target), action="deploy")
        except (ApplyError, ProxyUnreachable) as exc:
            if self.state.error != str(exc):
                self.say(f"generation {desired.generation} not applied: {exc}")
            self._set(error=str(exc))
            return
        ms = (time.perf_counter() - start) * 1000
        self._applied_at = time.time()
        self._looked_at = 0.0  # the next report counts from this change
        self._set(generation=desired.generation, verified_at=now_iso(), apply_ms=round(ms, 1),
                  error="")
        self.say(f"generation {desired.generation}: rust {target} verified in {ms:.0f} ms"
                 + (" (held)" if held else ""))

    def _served_rust(self) -> int | None:
        try:
            return self.controller.served(timeout=0.5).split.rust
        except ProxyUnreachable:
            return None

    def _report(self) -> None:
        """Put this host's report under the lease, when it changed."""
        assert self.lease is not None
        s = self.state
        health, traffic, vram_used, vram_total, rust_vram = self._look()
        report = HostReport(self.settings.fleet_host, s.generation, self._served_rust(),
                            s.mode, s.verified_at, s.apply_ms, held_by(self.settings) or "",
                            s.error, health=health, traffic=traffic,
                            counters=self._counters(), rust_vram=rust_vram,
                            vram_used_gb=vram_used, vram_total_gb=vram_total,
                            version=__version__, targets=self._targets)
        if self._reported is not None and replace(report, at="") == replace(self._reported,
                                                                             at=""):
            return
        self.store.report(report, self.lease)
        self._reported = report

    def _render_targets(self) -> None:
        """Every live host's scrape targets into the local Prometheus's file_sd file, when
        they changed (a host joined, left, or its lease expired). Isolated, the last file
        stands: Prometheus shows those hosts down rather than forgetting them."""
        try:
            if write_targets(self.settings.paths.fleet_targets, self.store.hosts()):
                self.say("fleet targets for Prometheus rewritten")
        except OSError as exc:  # a full disk costs monitoring, never the agent
            self.say(f"fleet targets not written: {exc}")

    def _counters(self) -> dict[str, Any]:
        """Each backend's attempts, errors and latencies (whole ms, counted) in the whole
        seconds after this host's last change: the fleet guard's gates' input."""
        if self.traffic is None:
            return {}
        with contextlib.suppress(OSError):  # the lines logged since the last look
            self.traffic.stats.feed(self.traffic.cursor.read())
        backends = {}
        for backend in Backend:
            bucket = self.traffic.stats.since(backend, self._applied_at + 2)
            backends[backend.value] = {"attempts": bucket.attempts, "errors": bucket.errors,
                                       "retried": bucket.retried,
                                       "latency_ms": {f"{ms:g}": n
                                                      for ms, n in bucket.counts.items()}}
        return {"generation": self.state.generation, "backends": backends}

    def _look(self) -> tuple[dict[str, bool], dict[str, dict[str, float | None]],
                             float | None, float | None, dict[str, Any]]:
        """Each backend's health check and traffic, and the GPUs' memory, read at most every
        HEALTH_EVERY_S (with short timeouts: a hung backend must not slow a rollback)."""
        if time.monotonic() - self._looked_at < HEALTH_EVERY_S:
            return self._looks
        s = self.settings
        health = {b.value: probe(s.backend_url(b) + s.health_path, timeout=0.25).healthy
                  for b in Backend}
        traffic: dict[str, dict[str, float | None]] = {}
        if self.traffic is not None:
            try:
                snapshot = self.traffic.poll("1m")
            except OSError:
                snapshot = None
            for backend, window in (snapshot.backends.items() if snapshot else ()):
                traffic[backend.value] = {"rate": round(window.rate, 2),
                                          "error_rate": window.recent_error_rate,
                                          "p95_ms": window.p95_ms}
        gpus = read_gpus()
        used = round(sum(g.used_gb for g in gpus.gpus), 2) if gpus.available else None
        total = round(sum(g.total_gb for g in gpus.gpus), 2) if gpus.available else None
        rust = scrape_vram(Backend.RUST, s.backend_url(Backend.RUST), s.max_vram_gb, 0.25)
        self._looks = (health, traffic, used, total, asdict(rust))
        self._looked_at = time.monotonic()
        return self._looks


# --- the process ---------------------------------------------------------------------------

def spawn(settings: Settings) -> ProcRecord | None:
    """Start this host's agent, detached, unless one runs; its record, or None if one ran."""
    paths = settings.paths
    running = ProcRecord.load(paths.run, SERVICE)
    if running is not None and running.alive():
        return None
    paths.logs.mkdir(parents=True, exist_ok=True)
    log = paths.service_log(SERVICE)
    command = [sys.executable, "-m", "vrm_tui.fleet",
               "--deploy-dir", str(settings.deploy_dir), "--state-dir", str(settings.state_dir)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, cwd=settings.deploy_dir)
    record = ProcRecord.of(SERVICE, proc.pid, command, {})
    record.save(paths.run)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:  # its first look written: it runs (isolated or not)
        state = AgentState.load(paths.fleet_agent)
        if state is not None and state.pid == proc.pid and state.updated:
            return record
        if proc.poll() is not None:
            raise Failure(f"the fleet agent exited at start (exit {proc.returncode}); "
                          f"see {log}")
        time.sleep(0.05)
    return record


def stop(settings: Settings) -> bool:
    """Stop this host's agent (it gives its lease up); True if one ran."""
    return ProcRecord.stop_recorded(settings.paths.run, SERVICE)


def run(settings: Settings, stop_event: threading.Event | None = None,
        controller: TrafficController | None = None) -> int:
    """Run the agent in this process until SIGTERM/SIGINT (or `stop_event`), on this host's
    controller (the composition root's when given)."""
    if not settings.fleet or not settings.fleet_endpoints:
        raise Failure("no fleet: set VRM_FLEET and VRM_FLEET_ENDPOINTS")
    stop_event = stop_event or threading.Event()

    def stopping(*_: object) -> None:
        stop_event.set()
        agent.wake.set()

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stopping)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    runtime = lifecycle.runtime_for(settings)
    controller = controller or TrafficController(settings, runtime)
    traffic = AccessLogSource(runtime.access_log(), settings.backend_addresses, backfill=False)
    store = EtcdStore(settings.fleet, settings.fleet_endpoints)

    def say(text: str) -> None:
        with contextlib.suppress(OSError):
            print(f"{now_iso()} agent {os.getpid()}: {text}", flush=True)

    agent = Agent(settings, controller, store, stop_event, say=say, traffic=traffic)
    lock = _hold_lock(settings)
    try:
        agent.run()
    finally:
        os.close(lock)
    return 0


def _hold_lock(settings: Settings) -> int:
    """One agent per state dir (two would both apply and both report): an flock for life."""
    path = settings.paths.fleet_agent_lock
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Failure(f"another fleet agent runs for {settings.state_dir}") from None
    return fd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vrm_tui.fleet")
    parser.add_argument("--deploy-dir", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    settings = load_settings({"VRM_STATE_DIR": str(args.state_dir)}, deploy_dir=args.deploy_dir)
    try:
        return run(settings)
    except Failure as exc:
        print(f"vrm agent: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
