"""The Fleet pane, against a real etcd holding the hosts' reports: one row per live host with
its mode as a word, and, when etcd goes away, the reason instead of the last rows. Without a
fleet there is no pane and no fleet poll."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _require_nginx
from tests.fleet.etcd import Etcd, new_etcd
from tests.support import Stack, new_stack, rendered, wait_until
from tests.tui.test_app import SIZE, last_action, until
from vrm_tui import settings as settings_mod
from vrm_tui.console import Console
from vrm_tui.fleet.local import held_by as agent_held
from vrm_tui.fleet.store import EtcdStore, HostReport
from vrm_tui.system.procs import ProcRecord
from vrm_tui.tui.app import VrmApp
from vrm_tui.tui.polls import Source
from vrm_tui.tui.screens.confirm import ConfirmScreen
from vrm_tui.tui.widgets.action_line import ActionLine
from vrm_tui.tui.widgets.fleet import FleetPane

FLEET = "pane"


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    (folder := tmp_path / "etcd").mkdir()
    cluster = new_etcd(folder)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _reports(store: EtcdStore) -> None:
    """Four hosts in four modes, under a lease that outlives the test (revoked by it)."""
    for _ in range(2):  # desired generation 2
        store.write_desired(50, "ana", "test", "deploy", "h1", may_override=lambda _: True)
    lease = store.grant(30)
    both = {"rust": True, "typescript": True}
    for report in (
        HostReport("h1", 2, 50, "following", health=both, vram_used_gb=10.5, vram_total_gb=80,
                   traffic={"rust": {"rate": 30.0, "error_rate": 0.012, "p95_ms": 41.0}}),
        HostReport("h2", 2, 0, "held", held_by="bob", health=both),
        HostReport("h3", 1, 10, "following", health=both),
        HostReport("h4", 2, 50, "isolated", health={"rust": False, "typescript": True}),
    ):
        store.report(report, lease)


async def test_the_pane_shows_each_host_and_says_when_etcd_is_unreachable(
        etcd: Etcd, tmp_path: Path) -> None:
    settings = settings_mod.load(environ={"VRM_FLEET": FLEET, "VRM_FLEET_ENDPOINTS":
                                          etcd.endpoints, "VRM_FLEET_HOST": "h1"},
                                 deploy_dir=tmp_path)
    _reports(EtcdStore(FLEET, settings.fleet_endpoints))
    app = VrmApp(Console(settings), live=False)  # only the fleet's poll, started below
    assert Source.FLEET in app.sources()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(FleetPane)
        app.polls.poll(Source.FLEET)
        await until(pilot, lambda: len(pane.modes()) == 4, timeout=10)
        assert pane.modes() == {"h1": "following", "h2": "held", "h3": "lagging",
                                "h4": "isolated"}
        text = rendered(pane)
        assert "desired: rust 50% generation 2" in text
        row = next(line for line in text.splitlines() if line.startswith("h1 "))
        for shown in ("● following", "50/50", "rust up ts up", "1.2%", "41ms", "10.5/80"):
            assert shown in row, (shown, row)
        assert "rust DOWN" in next(line for line in text.splitlines() if line.startswith("h4"))
        assert "h2: held by bob (vrm fleet rejoin)" in text
        etcd.stop()
        await until(pilot, lambda: "etcd unreachable: " in rendered(pane), timeout=15)
        text = rendered(pane)
        assert "h1 " not in text and "following" not in text, "no stale rows"
        assert "this host (h1):" in text


async def test_without_a_fleet_there_is_no_pane_and_no_fleet_poll(tmp_path: Path) -> None:
    app = VrmApp(Console(settings_mod.load(environ={}, deploy_dir=tmp_path)), live=False)
    assert Source.FLEET not in app.sources()
    async with app.run_test(size=SIZE):
        assert not app.query(FleetPane)


# --- rolling back from the TUI in fleet mode: two real hosts (nginx, backends, agents) ------

@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Etcd, dict[str, Stack]]]:
    """h0 (where the TUI runs) and h1 (remote) of fleet `tui`, each with its agent."""
    _require_nginx()
    cluster = new_etcd(tmp_path_factory.mktemp("etcd"))
    cluster.start()
    stacks: dict[str, Stack] = {}
    try:
        for host in ("h0", "h1"):
            stacks[host] = new_stack(tmp_path_factory.mktemp(host), VRM_FLEET="tui",
                                     VRM_FLEET_ENDPOINTS=cluster.endpoints,
                                     VRM_FLEET_HOST=host, VRM_FLEET_CONFIRM_TIMEOUT="2")
            assert "fleet-agent" in stacks[host].console.up()
        yield cluster, stacks
    finally:
        for stack in stacks.values():
            stack.down()
        cluster.stop()


def _serving(stacks: dict[str, Stack], rust: int, *names: str) -> None:
    """Deploy `rust` to the fleet and wait until `names` (default: every host) serve it."""
    stacks["h0"].console.fleet().deploy(rust)
    wait_until(lambda: all(_served(stacks[h]) == rust for h in names or stacks),
               what=f"{names or 'every host'} serving rust {rust}")


def _served(stack: Stack) -> int:
    return stack.controller.served().split.rust


def _mode(stack: Stack) -> str | None:
    report = stack.console.fleet().hosts().get(stack.settings.fleet_host)
    return report.mode if report is not None else None


def _action(app: VrmApp) -> str:
    """The action line's words, its wrapping undone (a long line wraps anywhere)."""
    return " ".join(rendered(app.query_one(ActionLine)).split())


async def test_r_rolls_back_every_host_and_lists_each_verified_time(
        hosts: tuple[Etcd, dict[str, Stack]]) -> None:
    """One key: this host at once, then the fleet; the action line names each host's
    verified time. This host is not held afterwards (the fleet's rollback covers its local
    one): the next deploy reaches it."""
    _, stacks = hosts
    _serving(stacks, 30)
    app = VrmApp(stacks["h0"].console, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await until(pilot, lambda: app.last_action is not None, timeout=15)
        done = last_action(app)
        assert done.ok and done.action == "fleet rollback", done
        assert "rust 0 on every live host" in done.text
        assert re.search(r"h0 \+\d+ ms", done.text) and re.search(r"h1 \+\d+ ms", done.text)
        assert "fleet rollback → rust 0 on every live host" in _action(app)
    assert _served(stacks["h0"]) == 0 and _served(stacks["h1"]) == 0
    _serving(stacks, 40)  # h0 was not held: it follows the fleet again
    assert agent_held(stacks["h0"].settings) is None


async def test_r_lists_the_hosts_still_confirming_and_those_that_did_not(
        hosts: tuple[Etcd, dict[str, Stack]]) -> None:
    """h1's agent stopped (a partition): the action line says h1 is still confirming, then
    that it did not confirm within the timeout and the rollback stays in force for it."""
    _, stacks = hosts
    _serving(stacks, 30)
    agent = ProcRecord.load(stacks["h1"].settings.paths.run, "fleet-agent")
    assert agent is not None
    app = VrmApp(stacks["h0"].console, live=False)
    os.kill(agent.pid, signal.SIGSTOP)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("r")
            await until(pilot, lambda: "confirming h1" in _action(app), timeout=10)
            assert "this host (h0) rust 0 verified" in _action(app)
            await until(pilot, lambda: app.last_action is not None, timeout=15)
            done = last_action(app)
            assert not done.ok
            assert "not confirmed within the timeout: h1 (the rollback stays in force for " \
                   "them)" in done.text and re.search(r"verified h0 \+\d+ ms", done.text), done
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    wait_until(lambda: _served(stacks["h1"]) == 0, what="h1 took the rollback once resumed")


async def test_r_without_etcd_rolls_this_host_back_and_holds_it(
        hosts: tuple[Etcd, dict[str, Stack]]) -> None:
    """etcd gone: `r` still rolls this host back (nothing of etcd before it), says the fleet
    could not be reached, and the host stays held (sticky) once etcd is back."""
    etcd, stacks = hosts
    _serving(stacks, 30)
    h0 = stacks["h0"]
    app = VrmApp(h0.console, live=False)
    etcd.stop()
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("r")
            await until(pilot, lambda: app.last_action is not None, timeout=15)
            done = last_action(app)
            assert not done.ok
            assert "this host (h0) rust 0 verified" in done.text
            assert "held until `vrm fleet rejoin`; the fleet could not be reached: etcd " \
                   "unreachable" in done.text, done.text
        assert _served(h0) == 0 and _served(stacks["h1"]) == 30
    finally:
        etcd.start()
    try:
        wait_until(lambda: _mode(h0) == "held", what="h0 held once etcd answers")
        _serving(stacks, 50, "h1")
        assert _served(h0) == 0
    finally:
        assert h0.vrm("fleet", "rejoin").returncode == 0
    wait_until(lambda: _served(h0) == 50, what="h0 follows after rejoin")


async def test_h_in_the_fleet_pane_rolls_back_the_selected_host(
        hosts: tuple[Etcd, dict[str, Stack]]) -> None:
    """A remote host (asked as such) is held through etcd, through the next deploy, until
    `vrm fleet rejoin` there; this host (asked as such) is rolled back locally."""
    _, stacks = hosts
    h0, h1 = stacks["h0"], stacks["h1"]
    _serving(stacks, 30)
    app = VrmApp(h0.console, live=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(FleetPane)
        app.polls.poll(Source.FLEET)
        await until(pilot, lambda: len(pane.modes()) == 2, timeout=10)
        pane.focus()
        await pilot.press("down", "h")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question == "Roll back h1, a REMOTE host?"
        await pilot.press("y")
        await until(pilot, lambda: app.last_action is not None, timeout=15)
        done = last_action(app)
        assert done.ok and done.action == "rollback of h1", done
        assert "h1 held at rust 0, verified +" in done.text
        assert _served(h1) == 0 and _served(h0) == 30
        app.last_action = None
        await pilot.press("up", "h")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question == "Roll back THIS host (h0)?"
        await pilot.press("y")
        await until(pilot, lambda: app.last_action is not None, timeout=15)
        assert last_action(app).ok and "rust 0 on this host (h0)" in last_action(app).text
    try:
        wait_until(lambda: _mode(h0) == "held" and _mode(h1) == "held", what="both held")
        stacks["h0"].console.fleet().deploy(60)
        wait_until(lambda: _served(h0) == 0 and _served(h1) == 0 and all(
            r.generation == h0.console.fleet().status().desired.generation  # type: ignore[union-attr]
            for r in h0.console.fleet().hosts().values()), what="both took the deploy at 0")
    finally:
        for stack in (h0, h1):
            assert stack.vrm("fleet", "rejoin").returncode == 0
    wait_until(lambda: _served(h0) == 60 and _served(h1) == 60, what="both follow again")


def test_vrm_fleet_rollback_host_holds_one_host(hosts: tuple[Etcd, dict[str, Stack]]) -> None:
    """The CLI's form of the pane's key; an unknown host is bad input, in one line."""
    _, stacks = hosts
    h0, h1 = stacks["h0"], stacks["h1"]
    _serving(stacks, 20)
    try:
        done = h0.vrm("fleet", "rollback", "--host", "h1")
        assert done.returncode == 0, done.stderr
        assert re.match(r"h1: held at rust 0, verified at \+\d+ ms", done.stdout), done.stdout
        assert _served(h1) == 0 and _served(h0) == 20
        here = h0.vrm("fleet", "rollback", "--host", "h0")
        assert here.returncode == 0 and "h0 (this host): rust 0 verified" in here.stdout
        wait_until(lambda: _mode(h0) == "held", what="h0's agent holds it")
        bad = h0.vrm("fleet", "rollback", "--host", "h9")
        assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
        assert "--host h9: not a live host of fleet tui (live: h0, h1)" in bad.stderr
    finally:
        for stack in (h0, h1):
            assert stack.vrm("fleet", "rejoin").returncode == 0
    wait_until(lambda: _served(h0) == 20 and _served(h1) == 20, what="both follow again")
