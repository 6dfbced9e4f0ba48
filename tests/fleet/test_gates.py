"""The fleet guard's judgement (fleet/guard.py `judge`): the single-host migration's gates fed
by the hosts' counters as their agents report them, pooled and host by host. Pure: the real
hosts and etcd are in test_fleet.py (a canary migration, an outlier host held)."""

from __future__ import annotations

from vrm_tui.fleet.guard import judge, plan_of
from vrm_tui.fleet.store import FleetMigration, HostReport

GEN = 5
PLAN = plan_of(FleetMigration("fm", [50], [["h0", "h1", "h2"]], bake_s=10,
                              max_error_rate=0.15, by="ana", started_at="", min_samples=20))


def report(host: str, rust: tuple[int, int], typescript: tuple[int, int] = (200, 0),
           healthy: bool = True, generation: int = GEN) -> HostReport:
    """A host's report with `rust` and `typescript` as (attempts, errors) since `generation`;
    rust answers in 2 ms, typescript in 5 ms."""
    def figures(counts: tuple[int, int], ms: str) -> dict[str, object]:
        attempts, errors = counts
        return {"attempts": attempts, "errors": errors, "retried": 0,
                "latency_ms": {ms: attempts - errors}}

    return HostReport(host, GEN, 50, "following",
                      health={"rust": healthy, "typescript": True},
                      counters={"generation": generation, "backends": {
                          "rust": figures(rust, "2"), "typescript": figures(typescript, "5")}})


def test_a_fault_spread_thin_fails_the_wave_pooled_though_no_host_shows_it() -> None:
    """3 of 40 rust attempts failing on each host decides nothing host by host; the wave's
    120 against typescript's clean 600 does: the fleet rolls back."""
    hosts = [report(h, (40, 3)) for h in ("h0", "h1", "h2")]
    judged = judge(PLAN, hosts, GEN, baked=False)
    assert judged.move == "rollback" and judged.bad == ()
    assert judged.reason.startswith("the wave pooled (h0, h1, h2): rust error rate 9/120")
    assert {h: judged.verdicts[h].status for h in ("h0", "h1", "h2")} == \
        dict.fromkeys(("h0", "h1", "h2"), "inconclusive")


def test_one_hosts_bad_rust_holds_it_while_the_rest_bake_on() -> None:
    hosts = [report("h0", (60, 0)), report("h1", (60, 0)), report("h2", (30, 30))]
    judged = judge(PLAN, hosts, GEN, baked=False)
    assert judged.move == "hold" and judged.bad == ("h2",)
    assert judged.reason.startswith("h2: rust error rate 30/30 (100.0%)")
    assert judged.reason.endswith("the rest of the wave is fine: held at rust 0, "
                                  "migration paused")
    every = judge(PLAN, [report(h, (30, 30)) for h in ("h0", "h1")], GEN, baked=False)
    assert every.move == "rollback" and every.bad == ("h0", "h1")


def test_a_bake_is_judged_whole_at_its_end_and_never_passes_inconclusive() -> None:
    """Before the end only the (anytime-valid) error rate can act; at the end every gate
    judges: too little evidence pauses, unless an operator resumed it (promote); a host
    whose rust health fails is held then, not before."""
    thin = [report(h, (5, 0), (5, 0)) for h in ("h0", "h1")]
    assert judge(PLAN, thin, GEN, baked=False).move == "wait"
    paused = judge(PLAN, thin, GEN, baked=True)
    assert paused.move == "pause" and paused.reason.startswith("inconclusive after 10s: ")
    assert judge(PLAN, thin, GEN, baked=True, promote=True).move == "advance"
    enough = [report("h0", (200, 0)), report("h1", (200, 0), healthy=False)]
    assert judge(PLAN, enough, GEN, baked=False).move == "wait"
    ended = judge(PLAN, enough, GEN, baked=True)
    assert ended.move == "hold" and ended.bad == ("h1",)
    assert judge(PLAN, enough[:1], GEN, baked=True).move == "advance"


def test_counters_from_before_the_waves_change_count_for_nothing() -> None:
    """A host still reporting the previous generation's counters adds no evidence."""
    stale = [report("h0", (30, 30), generation=GEN - 1), report("h1", (5, 0), (5, 0))]
    judged = judge(PLAN, stale, GEN, baked=True)
    assert judged.move == "pause", judged
    assert judged.verdicts["h0"].gates[0].value.startswith("0/0")
