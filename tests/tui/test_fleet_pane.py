"""The Fleet pane, against a real etcd holding the hosts' reports: one row per live host with
its mode as a word, and, when etcd goes away, the reason instead of the last rows. Without a
fleet there is no pane and no fleet poll."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet.etcd import Etcd, new_etcd
from tests.support import rendered
from tests.tui.test_app import SIZE, until
from vrm_tui import settings as settings_mod
from vrm_tui.console import Console
from vrm_tui.fleet.store import EtcdStore, HostReport
from vrm_tui.tui.app import VrmApp
from vrm_tui.tui.polls import Source
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
