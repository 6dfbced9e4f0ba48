"""Benchmark: a fault on one host's rust during a fleet migration -> that host held at rust 0
(verified by its own controller), beside a single host's guard rolling back the same fault.

Three vrm hosts follow a real etcd, each under 50 req/s (the issue's rate). Each trial deploys
rust 10 everywhere, starts a one-step fleet migration to rust 30 (one wave: every host), and
FAULT_AFTER_S into the bake makes one host's rust fail 30% of its requests (the rehearsal
backend's fault endpoint; the host changes from trial to trial). The clock runs from the
fault to that host serving rust 0; the trial then checks the other hosts kept rust 30 and
aborts the migration. The reference, in the same run, is a single host (no fleet) whose own
guard rolls back the same fault at the same rate. Issue 25's goal: p95 <= 10 s.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import _require_nginx
from tests.fleet.conftest import etcd  # noqa: F401  (a real etcd on loopback)
from tests.fleet.etcd import Etcd
from tests.fleet.test_fleet import HOSTS, all_serve, eventually, migration_of, served, traffic
from tests.perf.test_migration_guard import _trial
from tests.support import Stack, new_stack
from vrm_tui.core import services
from vrm_tui.core.stats import percentile

pytestmark = [pytest.mark.perf, pytest.mark.timeout(1800)]

TRIALS = int(os.environ.get("VRM_PERF_TRIALS", "8"))
RATE = 50  # requests a second on each host
FAULT: dict[str, object] = {"error_rate": 0.3}
FAULT_AFTER_S = 3.0


@pytest.fixture
def fleet(etcd: Etcd, tmp_path: Path) -> Iterator[dict[str, Stack]]:  # noqa: F811
    _require_nginx()
    stacks: dict[str, Stack] = {}
    try:
        for host in HOSTS:
            folder = tmp_path / host
            folder.mkdir()
            stacks[host] = new_stack(folder, VRM_FLEET="outlier",
                                     VRM_FLEET_ENDPOINTS=etcd.endpoints, VRM_FLEET_HOST=host,
                                     VRM_FLEET_CONFIRM_TIMEOUT="10")
            stacks[host].console.up()
        yield stacks
    finally:
        for stack in stacks.values():
            stack.down()


def _q(times: list[float], q: float) -> float:
    found = percentile(times, q)
    assert found is not None, "no trial"
    return found


def _held_after_fault(fleet: dict[str, Stack], bad: str) -> float:
    """One trial: seconds from the fault on `bad`'s rust to `bad` serving rust 0."""
    fleet_service = fleet["h0"].console.fleet()
    fleet_service.deploy(10)
    eventually(lambda: all_serve(fleet, 10), what="every host serving rust 10")
    admin = fleet[bad].runtime.admin_url(services.RUST)
    assert admin is not None
    try:
        with traffic(fleet, RATE):
            fleet_service.migrate_start([30], "all", bake_s=120, max_error_rate=0.05)
            eventually(lambda: all_serve(fleet, 30), timeout=30,
                       what="every host serving the step's rust 30")
            time.sleep(FAULT_AFTER_S)
            httpx.post(f"{admin}/faults", json=FAULT, timeout=2).raise_for_status()
            took = eventually(lambda: served(fleet[bad]) == 0, timeout=60,
                              what=f"{bad} held at rust 0")
            others = [h for h in HOSTS if h != bad]
            assert all(served(fleet[h]) == 30 for h in others), \
                "the healthy hosts keep the step"
            eventually(lambda: migration_of(fleet["h0"]).phase == "paused", timeout=10,
                       what="the migration paused")
            assert migration_of(fleet["h0"]).held == [bad], migration_of(fleet["h0"])
    finally:
        httpx.delete(f"{admin}/faults", timeout=2)
        fleet_service.migrate_abort(timeout=10)
    return took


async def test_one_hosts_fault_held_beside_a_single_hosts_guard(fleet: dict[str, Stack],
                                                                tmp_path: Path) -> None:
    held = [await asyncio.to_thread(_held_after_fault, fleet, HOSTS[i % len(HOSTS)])
            for i in range(TRIALS)]

    (tmp_path / "alone").mkdir()
    alone = new_stack(tmp_path / "alone", PROXY_UPSTREAM_TIMEOUT="2")
    alone.up()
    try:
        single: list[float] = []
        for _ in range(TRIALS):
            took, _failures, phase = await _trial(alone, 30, RATE, FAULT, bake=300)
            assert took is not None, f"the single host's guard did not roll back ({phase})"
            single.append(took)
    finally:
        alone.down()

    print(f"\nOne host's rust failing 30% -> verified at rust 0 ({len(HOSTS)} hosts, {RATE} "
          f"req/s each, {TRIALS} trials, s; goal: p95 <= 10)")
    print(f"{'case':<52} {'p50':>6} {'p95':>6} {'max':>6}")
    for name, times in ((f"fleet: the faulty host held, {len(HOSTS)} hosts", held),
                        ("single host: its guard's rollback (reference)", single)):
        print(f"{name:<52} {_q(times, 0.5):>6.1f} {_q(times, 0.95):>6.1f} {max(times):>6.1f}")
    assert _q(held, 0.95) <= 10
