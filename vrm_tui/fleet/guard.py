"""The fleet guard: runs a fleet migration from whichever host holds the leader's lease.

Every agent is a candidate. On each of its ticks it campaigns for `/vrm/<fleet>/guard` with
its own lease (TTL <= 3 s): one host wins; when that host dies its lease expires, the key goes
with it and the next candidate's tick takes over (a failover within the TTL and one tick).
Every action of the leader is one etcd transaction that also compares the guard key's create
revision with the leader's own claim, so a leader that lost its lease (stopped, partitioned)
cannot act after another took over: its write fails and it steps down.

A migration walks its steps (rust weights); each step goes out in waves of hosts (`1,all`: a
canary host, then every host), written as per-host overrides of `desired`. A wave bakes for
`bake_s` once written and is judged by the single-host migration's gates (migrate/gates.py:
the sequential error-rate test, latency against typescript, p95, health, VRAM), fed by
each wave host's counters since it applied the wave's generation (`judge`):

- host by host (the outlier check), at a confidence raised for the number of hosts (e-values
  against N / alpha: a healthy fleet of N hosts false-alarms no more often than one host):
  every host bad -> the fleet rolls back (desired rust 0); some bad while the rest, pooled,
  pass -> those hosts are held at rust 0 and the migration pauses (an outlier host, not the
  release);
- pooled over the wave's other hosts: a fault spread thin, that no one host's share of the
  traffic shows, fails the release -> the fleet rolls back.

The error-rate test is anytime valid, so it is looked at on every tick; the other gates are
not, so they judge once, at the end of the bake. An inconclusive bake pauses (never "passed");
`vrm fleet migrate resume` goes on anyway.

Where the counters come from: each agent publishes them in its report in etcd, under its
lease, not through Prometheus. The guard reads every live host's report in the one read
that also tells it which hosts are alive, so a dead host's figures vanish with its lease and
are never judged stale; the figures are the same per-attempt counts of the same access log
the single-host guard judges (retried attempts included), summed from per-second buckets
and cut at the second the host verified the wave's split, where Prometheus would give rates
over scrape windows that straddle the change, arrive a scrape interval late, and exist only
where monitoring runs (VRM_MONITORING) and every host's exporter is reachable. What it
costs: per backend a few counts and the latencies counted by whole millisecond (what nginx
logs), a few KB per report, rewritten at most every agent tick (0.5 s). The access log does
not name routes in its per-second buckets, so latencies are compared in one stratum per
host rather than per route.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from vrm_tui.core.backend import Backend
from vrm_tui.core.errors import LeaseGone
from vrm_tui.fleet.store import (
    Desired,
    EtcdStore,
    FleetMigration,
    HostReport,
    MigrationPhase,
    now_iso,
)
from vrm_tui.migrate.gates import (
    MAX_STRATUM_SAMPLES,
    BackendEvidence,
    StepEvidence,
    Verdict,
    evaluate,
)
from vrm_tui.migrate.plan import Plan, Thresholds
from vrm_tui.telemetry.backend_metrics import VramReading
from vrm_tui.telemetry.health import Probe

__all__ = ["FleetGuard", "Judgement", "judge", "plan_of"]

ERROR_GATE = "rust error rate"  # the one gate judged on every tick (anytime valid)
STRATUM = "all"  # the access log's per-second buckets do not name routes
Move = Literal["wait", "advance", "pause", "hold", "rollback"]


@dataclass(frozen=True)
class Judgement:
    """What the leader does with a wave now, why, and the verdicts behind it."""

    move: Move
    reason: str = ""
    bad: tuple[str, ...] = ()  # hosts failing on their own (held, unless every host is)
    verdicts: Mapping[str, Verdict] = field(default_factory=dict)  # host / "fleet"
    typescript: BackendEvidence | None = None  # the wave's typescript, pooled (a baseline)

    def evidence(self) -> dict[str, dict[str, Any]]:
        return {name: {"status": v.status, "summary": v.summary()}
                for name, v in self.verdicts.items()}


def plan_of(m: FleetMigration) -> Plan:
    """The single-host plan a fleet migration's gates judge by."""
    ceiling = m.max_error_rate
    return Plan(steps=tuple(m.steps), bake_seconds=m.bake_s, min_samples=m.min_samples,
                gates=Thresholds(error_rate_fail=ceiling,
                                 error_rate_warn=min(Thresholds.error_rate_warn, ceiling)))


def _backend(figures: Mapping[str, Any]) -> BackendEvidence:
    """One backend's counters (summed over hosts) as the gates' evidence; latencies counted
    by value are expanded, thinned evenly past MAX_STRATUM_SAMPLES."""
    counts = {float(ms): int(n) for ms, n in (figures.get("latency_ms") or {}).items()}
    total = sum(counts.values())
    scale = min(1.0, MAX_STRATUM_SAMPLES / total) if total else 1.0
    samples = [ms for ms, n in sorted(counts.items()) for _ in range(round(n * scale))]
    errors = int(figures.get("errors", 0))
    return BackendEvidence(int(figures.get("attempts", 0)), errors, 0,
                           min(errors, int(figures.get("retried", 0))),
                           {STRATUM: samples} if samples else {})


def _pooled(reports: list[HostReport], generation: int) -> StepEvidence:
    """The hosts' counters since `generation`, summed per backend."""
    sums: dict[str, dict[str, Any]] = {}
    for report in reports:
        counters = report.counters
        if int(counters.get("generation", 0)) < generation:
            continue  # not since this wave's change: nothing of it counts
        for backend, figures in (counters.get("backends") or {}).items():
            into = sums.setdefault(backend, {"attempts": 0, "errors": 0, "retried": 0,
                                             "latency_ms": {}})
            for key in ("attempts", "errors", "retried"):
                into[key] += int(figures.get(key, 0))
            for ms, n in (figures.get("latency_ms") or {}).items():
                into["latency_ms"][ms] = into["latency_ms"].get(ms, 0) + int(n)
    return StepEvidence(_backend(sums.get(Backend.RUST.value, {})),
                        _backend(sums.get(Backend.TYPESCRIPT.value, {})))


def _health(reports: list[HostReport]) -> Probe:
    down = [r.host for r in reports if not r.health.get(Backend.RUST.value, True)]
    return Probe("rust /health on " + ", ".join(r.host for r in reports), not down, None,
                 None, error=f"failing on {', '.join(down)}" if down else "")


def _vram(reports: list[HostReport]) -> VramReading:
    """The fullest host's rust VRAM; n/a where no agent read it (the gate passes n/a)."""
    known_fields = VramReading.__dataclass_fields__
    readings = [VramReading(**{k: v for k, v in r.rust_vram.items() if k in known_fields})
                for r in reports if r.rust_vram.get("backend")]
    known = [v for v in readings if v.reported and v.used_gb is not None and v.limit_gb]
    if known:
        return max(known, key=lambda v: (v.used_gb or 0) / (v.limit_gb or 1))
    if readings and not any(v.reported for v in readings):
        return readings[0]
    return VramReading(Backend.RUST.value, None, None, None, "not read by the agents",
                       reported=False)


def _verdict(plan: Plan, reports: list[HostReport], generation: int,
             baseline: BackendEvidence | None) -> Verdict:
    return evaluate(plan, _pooled(reports, generation), _health(reports), _vram(reports),
                    baseline)


def _failed(verdict: Verdict, baked: bool) -> bool:
    """Failed as far as may be judged now: the error-rate gate at any time, all at the end."""
    if baked:
        return verdict.status == "fail"
    return any(g.name == ERROR_GATE and g.status == "fail" for g in verdict.gates)


def judge(plan: Plan, reports: list[HostReport], generation: int, baked: bool,
          promote: bool = False, baseline: BackendEvidence | None = None) -> Judgement:
    """A wave's judgement from its hosts' reports (each already on `generation`)."""
    if not reports:
        return Judgement("wait")
    g, n = plan.gates, len(reports)
    per_host = replace(plan, gates=replace(  # N tests at once: each at N times the evidence
        g, error_confidence=1 - (1 - g.error_confidence) / n,
        latency_confidence=1 - (1 - g.latency_confidence) / n))
    verdicts = {r.host: _verdict(per_host, [r], generation, None) for r in reports}
    bad = tuple(h for h, v in verdicts.items() if _failed(v, baked))
    rest = [r for r in reports if r.host not in bad]
    if not rest:
        return Judgement("rollback", _why(bad, verdicts), bad, verdicts)
    pooled = _verdict(plan, rest, generation, baseline)
    verdicts = {**verdicts, "fleet": pooled}
    typescript = _pooled(rest, generation).typescript
    if _failed(pooled, baked):
        return Judgement("rollback", f"the wave pooled ({', '.join(r.host for r in rest)}): "
                         f"{_worst(pooled)}", bad, verdicts, typescript)
    if bad:
        return Judgement("hold", f"{_why(bad, verdicts)}; the rest of the wave is fine: "
                         "held at rust 0, migration paused", bad, verdicts, typescript)
    if not baked:
        return Judgement("wait", "", (), verdicts, typescript)
    if pooled.status == "inconclusive" and not promote:
        return Judgement("pause", f"inconclusive after {plan.bake_seconds:g}s: "
                         f"{_worst(pooled)}; `vrm fleet migrate resume` goes on anyway",
                         (), verdicts, typescript)
    return Judgement("advance", pooled.summary(), (), verdicts, typescript)


def _worst(verdict: Verdict) -> str:
    gate = verdict.by_severity()[0]
    return f"{gate.name} {gate.value} ({gate.threshold}) {gate.status}"


def _why(bad: tuple[str, ...], verdicts: Mapping[str, Verdict]) -> str:
    return "; ".join(f"{h}: {_worst(verdicts[h])}" for h in bad)


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
        try:
            claim = self.store.campaign(self.host, lease)
        except LeaseGone:
            # The guard key went with the lease: another host may lead now, and this one's
            # fenced writes (by the old claim) fail. It campaigns again with its next lease.
            if self.claim is not None:
                self.say(f"guard: lease gone, no longer leading migration {migration.id}")
            self.claim = None
            raise
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
        if not wave:
            return self._empty_wave(claim, m, revision)
        if any(reports[h].generation < m.generation for h in wave):
            return True  # hosts still applying: nothing to judge yet
        plan = plan_of(m)
        baseline = BackendEvidence.from_dict(m.baseline) if m.baseline else None
        verdict = judge(plan, [reports[h] for h in wave], m.generation,
                        baked=time.time() - m.entered_at >= m.bake_s, promote=m.promote,
                        baseline=baseline)
        evidence = verdict.evidence()
        if verdict.move == "rollback":
            return self._rollback(claim, m, revision, desired_rev, evidence, verdict.reason)
        if verdict.move == "hold":
            return self._hold(claim, m, revision, desired, desired_rev, evidence,
                              list(verdict.bad), verdict.reason)
        if verdict.move == "pause":
            self.say(f"guard: paused: {verdict.reason}")
            return self.store.fenced(claim, self.host, replace(
                m, phase="paused", reason=verdict.reason, evidence=evidence,
                leader=self.host), revision)
        if verdict.move == "advance":
            ts = verdict.typescript
            if ts is not None and ts.attempts >= plan.min_samples:
                m = replace(m, baseline=ts.to_dict())  # rust at 100% leaves typescript little
            return self._advance(claim, m, revision, evidence)
        return True

    def _empty_wave(self, claim: int, m: FleetMigration, revision: int) -> bool:
        """No live host of the wave is left to judge (a canary host died: its report went with
        its lease). Waiting would leave the migration running with nothing behind it, so once
        the wave has baked it pauses naming them; a resume goes on without the wave's
        evidence (the operator's call, as for an inconclusive wave), and a host that comes
        back before then is judged as usual."""
        if m.promote:
            return self._advance(claim, m, revision, {})
        if time.time() - m.entered_at < m.bake_s:
            return True
        gone = [h for h in m.waves[m.wave] if h not in m.held]
        reason = (f"wave {m.wave + 1}/{len(m.waves)}: {', '.join(gone) or 'every host held'} "
                  "gone from the fleet (no report), nothing to judge; `vrm fleet migrate "
                  "resume` goes on without this wave's evidence")
        self.say(f"guard: paused: {reason}")
        evidence = {"fleet": {"status": "inconclusive", "summary": "no live host in the wave"}}
        return self.store.fenced(claim, self.host, replace(
            m, phase="paused", reason=reason, evidence=evidence, leader=self.host), revision)

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
                 evidence: dict[str, dict[str, Any]]) -> bool:
        if m.wave + 1 < len(m.waves):
            nxt = replace(m, wave=m.wave + 1, generation=0, promote=False)
        elif m.step + 1 < len(m.steps):
            nxt = replace(m, step=m.step + 1, wave=0, generation=0, promote=False)
        else:
            nxt = replace(m, phase="done", reason=f"rust {m.steps[-1]} on every host")
            self.say(f"guard: migration {m.id} done")
        return self.store.fenced(claim, self.host, replace(nxt, evidence=evidence,
                                                           leader=self.host), revision)

    def _hold(self, claim: int, m: FleetMigration, revision: int, desired: Desired | None,
              desired_rev: int, evidence: dict[str, dict[str, Any]],
              bad: list[str], reason: str) -> bool:
        """Outliers: hold those hosts at rust 0 and pause; the others keep their split."""
        held = sorted({*m.held, *bad})
        self.say(f"guard: {reason}")
        assert desired is not None
        hosts = {**desired.hosts, **dict.fromkeys(bad, 0)}
        wanted = Desired(desired.generation + 1, desired.rust, m.by, now_iso(), reason,
                         "migrate", hosts)
        return self.store.fenced(claim, self.host, replace(
            m, phase="paused", held=held, reason=reason, evidence=evidence,
            generation=wanted.generation, leader=self.host), revision, wanted, desired_rev)

    def _rollback(self, claim: int, m: FleetMigration, revision: int, desired_rev: int,
                  evidence: dict[str, dict[str, Any]], why: str) -> bool:
        self.say(f"guard: rolling the fleet back: {why}")
        current, _ = self.store.desired()
        wanted = Desired((current.generation if current else 0) + 1, 0, f"guard@{self.host}",
                         now_iso(), f"migration {m.id}: {why}", "rollback")
        return self.store.fenced(claim, self.host, replace(
            m, phase="rolled-back", reason=why, evidence=evidence,
            generation=wanted.generation, leader=self.host), revision, wanted, desired_rev)

