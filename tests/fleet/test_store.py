"""The fleet's etcd keys against a real etcd: compare-and-set generations, leases, journal."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import replace

import pytest

from tests.fleet.etcd import Etcd
from vrm_tui.core.errors import FleetUnreachable, StaleDesired
from vrm_tui.fleet.store import Desired, EtcdStore, HostReport


def _store(etcd: Etcd, fleet: str) -> EtcdStore:
    return EtcdStore(fleet, tuple(etcd.endpoints.split(",")))


def test_generations_only_go_forward_and_each_write_is_journaled(etcd: Etcd) -> None:
    store = _store(etcd, "gen")
    assert store.desired() == (None, 0)
    first = store.write_desired(20, "alice", "canary", "deploy", "h1", lambda _d: True)
    second = store.write_desired(0, "bob", "bad p95", "rollback", "h2", lambda _d: True)
    assert (first.generation, second.generation) == (1, 2)
    desired, revision = store.desired()
    assert desired == second and revision > 0
    journal = store.journal()
    assert [(r["by"], r["action"], r["generation"]) for r in journal] == [
        ("alice", "deploy", 1), ("bob", "rollback", 2)]


def test_a_deploy_that_loses_the_race_to_a_rollback_is_refused(etcd: Etcd) -> None:
    """The stale writer: it read generation 1, a rollback wrote 2 first; compare-and-set
    fails and the deploy may not override a rollback, so rust is not raised on top of it."""
    store = _store(etcd, "race")
    store.write_desired(30, "alice", "", "deploy", "h1", lambda _d: True)
    slow = _store(etcd, "race")
    real_desired = slow.desired
    calls: list[tuple[Desired | None, int]] = []

    # lands between read and write
    def desired_then_rollback(patience: float = 0.0) -> tuple[Desired | None, int]:
        found = real_desired(patience)
        if not calls:
            store.write_desired(0, "bob", "", "rollback", "h2", lambda _d: True)
        calls.append(found)
        return found

    slow.desired = desired_then_rollback  # type: ignore[method-assign]
    with pytest.raises(StaleDesired, match=r"generation 2 \(rollback to rust 0 by bob\)"):
        slow.write_desired(50, "carol", "", "deploy", "h3",
                           lambda moved: moved.action != "rollback")
    assert store.desired()[0].rust == 0  # type: ignore[union-attr]


def test_two_deploys_at_once_get_distinct_generations(etcd: Etcd) -> None:
    store = _store(etcd, "two")
    results = []
    barrier = threading.Barrier(2)

    def deploy(rust: int) -> None:
        own = _store(etcd, "two")
        barrier.wait()
        results.append(own.write_desired(rust, f"op{rust}", "", "deploy", f"h{rust}",
                                         lambda moved: moved.action != "rollback"))

    threads = [threading.Thread(target=deploy, args=(rust,)) for rust in (40, 60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.generation for r in results) == [1, 2]
    final = store.desired()[0]
    assert final == max(results, key=lambda r: r.generation)


def test_a_report_under_a_lease_disappears_with_its_host(etcd: Etcd) -> None:
    store = _store(etcd, "lease")
    lease = store.grant(1)
    store.report(HostReport("h1", 3, 0, "following"), lease)
    assert set(store.hosts()) == {"h1"}
    deadline = time.monotonic() + 10
    while store.hosts() and time.monotonic() < deadline:  # etcd expires it within ~1-2 s
        time.sleep(0.1)
    assert store.hosts() == {}
    assert not store.keep_alive(lease)


def test_no_endpoint_answering_is_one_error_naming_them() -> None:
    store = EtcdStore("x", ("http://127.0.0.1:9",), timeout=0.3)
    with pytest.raises(FleetUnreachable, match=re.escape("127.0.0.1:9")):
        store.desired()


def test_a_guard_that_lost_its_lease_cannot_act(etcd: Etcd) -> None:
    """Fencing: a leader whose lease is gone (expired, revoked) has its moves refused even
    if it still believes it leads; the new leader's go through."""
    from vrm_tui.fleet.store import FleetMigration

    store = _store(etcd, "fence")
    migration = FleetMigration("m1", [10], [["a"]], 1.0, 0.05, "op", "now")
    assert store.put_migration(migration, 0)
    first_lease, second_lease = store.grant(3), store.grant(3)
    first = store.campaign("a", first_lease)
    assert first is not None and store.campaign("b", second_lease) is None
    assert store.campaign("a", first_lease) == first  # re-campaigning keeps the claim
    store.revoke(first_lease)  # a's host stopped renewing (here: at once)
    second = store.campaign("b", second_lease)
    assert second is not None and second != first and store.leader() == "b"
    _, revision = store.migration()
    assert not store.fenced(first, "a", replace(migration, step=1), revision)
    assert store.fenced(second, "b", replace(migration, leader="b"), revision)
    assert store.migration()[0].leader == "b"  # type: ignore[union-attr]
