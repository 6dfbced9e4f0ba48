"""The fleet guard: runs a fleet migration from whichever host holds the leader's lease.

Every agent is a candidate. On each of its ticks it campaigns for `/vrm/<fleet>/guard` with
its own lease (TTL <= 3 s): one host wins; when that host dies its lease expires, the key goes
with it and the next candidate's tick takes over (a failover within the TTL and one tick).
Every action of the leader is one etcd transaction that also compares the guard key's create
revision with the leader's own claim, so a leader that lost its lease (stopped, partitioned)
cannot act after another took over: its write fails and it steps down.

A migration walks its steps (rust weights); each step goes out in waves of hosts (`1,all`: a
canary host, then every host), written as per-host overrides of `desired`. A wave bakes for
`bake_s` once written; the judgement reads each host's own report (its access log's rust
attempts and errors since it applied the wave's generation, at least MIN_ATTEMPTS of them
before a host can fail; a wave whose bake ends with fewer still advances, its evidence saying
how many there were): every host of the wave bad -> the fleet rolls back (desired
rust 0); some bad while others are fine -> those hosts are held at rust 0 and the migration
pauses (an outlier host, not the release). This is a threshold gate on the agents' figures,
not yet the single-host guard's sequential tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from vrm_tui.fleet.store import (
    Desired,
    EtcdStore,
    FleetMigration,
    HostReport,
    MigrationPhase,
    now_iso,
)

__all__ = ["FleetGuard", "resolve_waves"]

MIN_ATTEMPTS = 10  # rust attempts on a host before its error rate can fail it


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


class FleetGuard:
    """One host's candidacy and, while it leads, the migration's next move."""

    def __init__(self, store: EtcdStore, host: str, say: Callable[[str], None] = print) -> None:
        self.store = store
        self.host = host
        self.say = say
        self.claim: int | None = None

    def tick(self, lease: int) -> None:
        """Campaign when a migration runs; lead it one move if this host leads."""
        migration, revision = self.store.migration()
        if migration is None or migration.phase != "running":
            self.claim = None
            return
        claim = self.store.campaign(self.host, lease)
        if claim != self.claim:
            self.say(f"guard: {'leading' if claim else 'following'} migration {migration.id}")
        self.claim = claim
        if claim is None:
            return
        if not self._move(claim, migration, revision):
            self.say("guard: a fenced write failed (leadership or state moved); re-reading")

    def _move(self, claim: int, m: FleetMigration, revision: int) -> bool:
        desired, desired_rev = self.store.desired()
        if m.generation and desired is not None and desired.generation != m.generation:
            # An operator's deploy or rollback moved the split: the migration stops there.
            phase: MigrationPhase = "rolled-back" if desired.action == "rollback" else "stopped"
            return self.store.fenced(claim, self.host, replace(
                m, phase=phase, leader=self.host,
                reason=f"desired split moved by {desired.by} ({desired.action} to rust "
                       f"{desired.rust})"), revision)
        if not m.generation:
            return self._enter(claim, m, revision, desired, desired_rev)
        reports = self.store.hosts()
        wave = [h for h in m.waves[m.wave] if h not in m.held and h in reports]
        if any(reports[h].generation < m.generation for h in wave):
            return True  # hosts still applying: nothing to judge yet
        evidence = {h: _rust_figures(reports[h], m.generation) for h in wave}
        bad = [h for h, e in evidence.items() if (e["attempts"] or 0) >= MIN_ATTEMPTS
               and (e["error_rate"] or 0.0) > m.max_error_rate]
        if bad and len(bad) == len(evidence):
            return self._rollback(claim, m, revision, desired_rev, evidence,
                                  f"rust error rate over {m.max_error_rate:.0%} on "
                                  f"{', '.join(bad)}")
        if bad:
            return self._hold(claim, m, revision, desired, desired_rev, evidence, bad)
        if time.time() - m.entered_at < m.bake_s:
            return True
        return self._advance(claim, m, revision, evidence)

    def _target(self, m: FleetMigration) -> Desired:
        """The desired split of the current step and wave, as per-host overrides."""
        rust = m.steps[m.step]
        before = m.steps[m.step - 1] if m.step else m.start_rust
        wave = set(m.waves[m.wave])
        everyone = m.wave == len(m.waves) - 1
        hosts = {} if everyone else {h: rust for h in wave}
        hosts.update(dict.fromkeys(m.held, 0))
        who = "every host" if everyone else ", ".join(sorted(wave))
        reason = (f"migration {m.id}: step {m.step + 1}/{len(m.steps)} rust {rust}, wave "
                  f"{m.wave + 1}/{len(m.waves)} ({who})")
        return Desired(0, rust if everyone else before, m.by, now_iso(), reason, "migrate", hosts)

    def _enter(self, claim: int, m: FleetMigration, revision: int, desired: Desired | None,
               desired_rev: int) -> bool:
        target = self._target(m)
        wanted = replace(target, generation=(desired.generation if desired else 0) + 1)
        self.say(f"guard: {wanted.reason}")
        return self.store.fenced(claim, self.host, replace(
            m, generation=wanted.generation, entered_at=time.time(), leader=self.host),
            revision, wanted, desired_rev)

    def _advance(self, claim: int, m: FleetMigration, revision: int,
                 evidence: dict[str, dict[str, float | None]]) -> bool:
        if m.wave + 1 < len(m.waves):
            nxt = replace(m, wave=m.wave + 1, generation=0)
        elif m.step + 1 < len(m.steps):
            nxt = replace(m, step=m.step + 1, wave=0, generation=0)
        else:
            nxt = replace(m, phase="done", reason=f"rust {m.steps[-1]} on every host")
            self.say(f"guard: migration {m.id} done")
        return self.store.fenced(claim, self.host, replace(nxt, evidence=evidence,
                                                           leader=self.host), revision)

    def _hold(self, claim: int, m: FleetMigration, revision: int, desired: Desired | None,
              desired_rev: int, evidence: dict[str, dict[str, float | None]],
              bad: list[str]) -> bool:
        """Outliers: hold those hosts at rust 0 and pause; the others keep their split."""
        held = sorted({*m.held, *bad})
        reason = (f"{', '.join(bad)}: rust error rate over {m.max_error_rate:.0%} while "
                  "the rest of the wave is fine: held at rust 0, migration paused")
        self.say(f"guard: {reason}")
        assert desired is not None
        hosts = {**desired.hosts, **dict.fromkeys(bad, 0)}
        wanted = Desired(desired.generation + 1, desired.rust, m.by, now_iso(), reason,
                         "migrate", hosts)
        return self.store.fenced(claim, self.host, replace(
            m, phase="paused", held=held, reason=reason, evidence=evidence,
            generation=wanted.generation, leader=self.host), revision, wanted, desired_rev)

    def _rollback(self, claim: int, m: FleetMigration, revision: int, desired_rev: int,
                  evidence: dict[str, dict[str, float | None]], why: str) -> bool:
        self.say(f"guard: rolling the fleet back: {why}")
        current, _ = self.store.desired()
        wanted = Desired((current.generation if current else 0) + 1, 0, f"guard@{self.host}",
                         now_iso(), f"migration {m.id}: {why}", "rollback")
        return self.store.fenced(claim, self.host, replace(
            m, phase="rolled-back", reason=why, evidence=evidence,
            generation=wanted.generation, leader=self.host), revision, wanted, desired_rev)


def _rust_figures(report: HostReport, generation: int) -> dict[str, float | None]:
    """A host's rust attempts and errors since it took `generation` (or a later one)."""
    since = report.rust_since
    attempts = since.get("attempts", 0) if since.get("generation", 0) >= generation else 0
    errors = since.get("errors", 0) if attempts else 0
    return {"attempts": attempts, "errors": errors,
            "error_rate": errors / attempts if attempts else None,
            "p95_ms": report.traffic.get("rust", {}).get("p95_ms"), "rust": report.rust}
