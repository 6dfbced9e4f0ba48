"""The fleet's etcd keys against a real etcd: compare-and-set generations, leases, journal."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from dataclasses import replace

import pytest

from tests.fleet.etcd import Etcd, stopped
from tests.support import wait_until
from vrm_tui.core.errors import FleetUnreachable, LeaseGone, StaleDesired
from vrm_tui.fleet.store import Desired, EtcdStore, HostReport
from vrm_tui.system.procs import free_ports


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


def test_a_gone_lease_is_named_and_its_guard_steps_down(etcd: Etcd) -> None:
    """Every request on a lease etcd no longer has raises LeaseGone (the agent takes a new
    lease on it, never ending its loop); the guard that campaigned with it stops leading
    there, and another host's campaign takes over: one leader at a time."""
    from vrm_tui.fleet.guard import FleetGuard
    from vrm_tui.fleet.store import FleetMigration

    store = _store(etcd, "gone")
    assert store.put_migration(FleetMigration("m1", [10], [["a"]], 60, 0.05, "op", "now"), 0)
    lease = store.grant(3)
    guard = FleetGuard(store, "a", say=lambda _text: None)
    guard.tick(lease)
    assert guard.claim is not None and store.leader() == "a"
    store.revoke(lease)  # as an expiry would
    with pytest.raises(LeaseGone):
        guard.tick(lease)
    assert guard.claim is None
    assert store.campaign("b", store.grant(3)) is not None and store.leader() == "b"
    for on_gone in (lambda: store.report(HostReport("a", 1, 0, "following"), lease),
                    lambda: store.revoke(lease)):
        with pytest.raises(LeaseGone):
            on_gone()
    assert not store.keep_alive(lease)


def _local_port(store: EtcdStore) -> int:
    """The kept-alive connection's own port: a new one means a new connection."""
    conn = store._members[0]._conn
    assert conn is not None and conn.sock is not None
    return int(conn.sock.getsockname()[1])


def test_one_kept_alive_connection_is_remade_after_etcd_stops_answering_or_restarts(
        etcd: Etcd) -> None:
    """The agent posts every tick and a rollback polls every 10 ms, over one connection per
    member. A member that stops answering (SIGSTOP: a half-open peer) costs one request
    timeout; after a restart the next request goes through on a new connection, once."""
    member = etcd.members[0]
    store = EtcdStore("conn", (member.url,), timeout=0.5)
    store.desired()
    first = _local_port(store)
    store.hosts()
    assert _local_port(store) == first
    proc = member.proc
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: stopped(proc.pid), what="every etcd thread stopped")
        with pytest.raises(FleetUnreachable, match=re.escape(f"{member.url}: timed out")):
            store.desired()
    finally:
        proc.send_signal(signal.SIGCONT)
    assert store.desired() == (None, 0)
    answered = _local_port(store)
    assert answered != first
    etcd.stop(member)
    etcd.start(member)
    store.write_desired(10, "alice", "", "deploy", "h1", lambda _d: True)
    assert _local_port(store) != answered
    assert [r["generation"] for r in store.journal()] == [1]


def test_a_member_refusing_or_silent_is_passed_over_for_one_that_answers(etcd: Etcd) -> None:
    """Members are tried in turn: a refused connection at once, a silent member (it accepts
    and never answers) after the request timeout; both named when none answers."""
    refused = f"http://127.0.0.1:{free_ports(1)[0]}"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts; nothing ever reads or answers
        quiet = f"http://127.0.0.1:{silent.getsockname()[1]}"
        store = EtcdStore("turns", (refused, quiet, etcd.members[0].url), timeout=0.3)
        assert store.write_desired(20, "bob", "", "deploy", "h1", lambda _d: True).rust == 20
        assert store.desired()[0].rust == 20  # type: ignore[union-attr]
        alone = EtcdStore("turns", (refused, quiet), timeout=0.3)
        with pytest.raises(FleetUnreachable) as unreachable:
            alone.desired()
    assert str(unreachable.value) == (
        f"etcd unreachable ({refused}: connection refused; {quiet}: timed out)")


def test_a_request_etcd_refuses_is_one_line_in_etcds_words(etcd: Etcd) -> None:
    store = _store(etcd, "words")
    with pytest.raises(LeaseGone) as refused:
        store.report(HostReport("h1", 1, 0, "following"), lease=12345)  # no such lease
    assert str(refused.value) == (f"etcd at {etcd.members[0].url} refused /kv/put: "
                                  "etcdserver: requested lease not found (HTTP 404)")
