"""Review reproduction (failing until fixed): a fleet agent whose step outlives its lease dies.

Agent.step renews the lease first, then may wait up to LOCK_WAIT_S (10 s) for the traffic
lock in `_follow` (a `vrm reload`, a rollback recovering nginx...); with VRM_FLEET_TTL <= 3 s
the lease expires meanwhile, and the report put on it is refused by etcd ("requested lease
not found", HTTP 404). EtcdStore raises that as Failure, which step() does not catch (only
FleetUnreachable), so the agent's loop ends and the host stops following fleet rollbacks.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet.etcd import Etcd, new_etcd
from tests.support import new_stack, wait_until
from vrm_tui.core.errors import Failure
from vrm_tui.fleet.agent import Agent
from vrm_tui.fleet.store import EtcdStore


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    (tmp_path / "etcd").mkdir()
    cluster = new_etcd(tmp_path / "etcd")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_an_agent_step_that_outlives_its_lease_keeps_the_agent_alive(
        tmp_path: Path, etcd: Etcd) -> None:
    stack = new_stack(tmp_path, VRM_FLEET="review", VRM_FLEET_HOST="h1", VRM_FLEET_TTL="1",
                      VRM_FLEET_ENDPOINTS=etcd.endpoints)
    store = EtcdStore("review", tuple(etcd.endpoints.split(",")))
    store.write_desired(50, "bob", "deploy", "deploy", "h0", lambda _d: True)
    agent = Agent(stack.settings, stack.controller, store, threading.Event(),
                  say=lambda _text: None)
    raised: list[BaseException] = []

    def step() -> None:
        try:
            agent.step()
        except BaseException as exc:  # what ends the agent's loop
            raised.append(exc)

    with stack.controller.lock.hold("reload", timeout=5):  # another vrm changes traffic
        worker = threading.Thread(target=step)
        worker.start()
        lease = wait_until(lambda: agent.lease, 10, "the agent's lease")
        # etcd says TTL -1 for a lease that is gone (and leaves out a TTL of 0)
        wait_until(lambda: int(store._post("/kv/lease/timetolive", {"ID": lease})
                               .get("TTL", 0)) == -1, 10, "the lease to expire")
    worker.join(30)
    # close() stops the watch, then revokes the lease: a lease already gone raises Failure
    # there too (a second finding: run()'s `finally` then skips saving mode=stopped)
    with contextlib.suppress(Failure):
        agent.close()
    assert not raised, f"the agent's step raised {raised[0]!r}: its loop ends there"
