"""The fleet's monitoring: a real Prometheus on one host discovers every live host of the
fleet from the file its agent renders from etcd (file_sd), by their `host` label, and drops
a host whose lease expired."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import _require_nginx
from tests.fleet.etcd import Etcd
from tests.fleet.test_fleet import eventually
from tests.integration.test_monitoring import _fast_monitoring
from tests.support import Stack, new_stack
from vrm_tui import validate
from vrm_tui.core import services
from vrm_tui.core.errors import BadInput, SettingsError
from vrm_tui.fleet.store import HostReport
from vrm_tui.fleet.targets import own_targets, write_targets
from vrm_tui.migrate import alerts
from vrm_tui.settings import Settings
from vrm_tui.settings import load as load_settings
from vrm_tui.stack import monitoring
from vrm_tui.system.procs import ProcRecord, free_ports
from vrm_tui.telemetry import prometheus

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("prometheus-nginx-exporter") is None,
    reason="scripts/test.sh installs prometheus and prometheus-nginx-exporter")

BACKENDS = {services.RUST, services.TYPESCRIPT}
MONITORED = BACKENDS | {services.PROXY, services.PROMETHEUS}


@pytest.fixture(scope="module")
def fleet(etcd: Etcd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Stack]]:
    """Fleet `mon`: m0 runs monitoring (1 s scrapes), m1 and m2 only their stacks (their
    backends are still targets); m2's lease lives 1 s, so its loss shows fast."""
    _require_nginx()
    stacks: dict[str, Stack] = {}
    common = {"VRM_FLEET": "mon", "VRM_FLEET_ENDPOINTS": etcd.endpoints,
              "VRM_FLEET_ADVERTISE": "127.0.0.1"}
    try:
        deploy = tmp_path_factory.mktemp("m0")
        _fast_monitoring(deploy)
        stacks["m0"] = new_stack(deploy, VRM_MONITORING="1", VRM_FLEET_HOST="m0",
                                 ALERTMANAGER_CLUSTER_PORT=str(free_ports(1)[0]), **common)
        stacks["m1"] = new_stack(tmp_path_factory.mktemp("m1"), VRM_FLEET_HOST="m1", **common)
        stacks["m2"] = new_stack(tmp_path_factory.mktemp("m2"), VRM_FLEET_HOST="m2",
                                 VRM_FLEET_TTL="1", **common)
        for stack in stacks.values():
            stack.up()
        yield stacks
    finally:
        for stack in stacks.values():
            stack.down()


def _targets(stack: Stack) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{stack.settings.prometheus_port}/api/v1/targets"
    answer = httpx.get(url, params={"state": "active"}, timeout=5)
    answer.raise_for_status()
    targets: list[dict[str, Any]] = answer.json()["data"]["activeTargets"]
    return targets


def _up_by_host(stack: Stack) -> dict[str, set[str]]:
    """host -> the services Prometheus scrapes there and finds up."""
    found: dict[str, set[str]] = {}
    for target in _targets(stack):
        if target["health"] == "up":
            labels = target["labels"]
            found.setdefault(labels.get("host", ""), set()).add(labels.get("service"))
    return found


def _in_file(stack: Stack) -> set[str]:
    groups = json.loads(stack.settings.paths.fleet_targets.read_text())
    return {group["labels"]["host"] for group in groups}


def test_prometheus_scrapes_every_live_host_by_its_host_label(
        fleet: dict[str, Stack]) -> None:
    m0 = fleet["m0"]
    eventually(lambda: m0.settings.paths.fleet_targets.exists()
               and _in_file(m0) == {"m0", "m1", "m2"}, what="every host in m0's file")
    shown = m0.vrm("fleet", "targets", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == json.loads(m0.settings.paths.fleet_targets.read_text())
    table = m0.vrm("fleet", "targets").stdout.splitlines()
    assert any(line.split()[:2] == ["m1", services.RUST] for line in table), table
    wanted = {"m0": MONITORED, "m1": BACKENDS, "m2": BACKENDS}
    eventually(lambda: _up_by_host(m0) == wanted, timeout=30,
               what="m0's Prometheus scraping every host's targets, all up")
    for target in _targets(m0):
        labels = target["labels"]
        # every host's series keep the single-host config's job names (rules, dashboards)
        assert labels["job"] in ("vision-manager", "nginx", "prometheus"), labels
        if target["scrapePool"] == "fleet":  # another host's: scraped at its advertised address
            assert labels["host"] != "m0", labels
            port = str(fleet[labels["host"]].settings.rust_port
                       if labels["service"] == services.RUST
                       else fleet[labels["host"]].settings.ts_port)
            assert labels["instance"] == f"127.0.0.1:{port}", labels
    # a dashboard's query with its host variable set to one host sees that host alone
    query = 'count by (host) (up{job="vision-manager", host=~"m1|m2"})'
    answer = httpx.get(f"http://127.0.0.1:{m0.settings.prometheus_port}/api/v1/query",
                       params={"query": query}, timeout=5).json()["data"]["result"]
    assert {r["metric"]["host"]: r["value"][1] for r in answer} == {"m1": "2", "m2": "2"}


async def test_this_hosts_history_validation_and_alerts_stay_its_own(
        fleet: dict[str, Stack]) -> None:
    """m0's Prometheus scrapes m1 too; m0's TUI history, validate and migration guard
    still judge m0 alone (m1's traffic, its down backend and its alert are m1's)."""
    m0, m1 = fleet["m0"], fleet["m1"]
    async with httpx.AsyncClient(timeout=10) as client:  # tasks on m1 only
        for _ in range(30):
            answer = await client.post(f"{m1.proxy}/api/v1/vision/process",
                                       json={"model": "resnet50", "image_size": [64, 64]})
            assert answer.status_code == 200, answer.text
    base = f"http://127.0.0.1:{m0.settings.prometheus_port}"

    def m1_rate() -> float:
        query = 'sum(rate(vision_manager_tasks_total{host="m1"}[30s]))'
        found = httpx.get(f"{base}/api/v1/query", params={"query": query},
                          timeout=5).json()["data"]["result"]
        return float(found[0]["value"][1]) if found else 0.0

    await asyncio.to_thread(eventually, lambda: m1_rate() > 0, 20, "m1's traffic in m0's")
    history = await asyncio.to_thread(m0.console.latency_history)
    assert not any(v for b in history.values() for v in b.get("rate", []) if v), history

    m1.runtime.stop_service(services.TYPESCRIPT)
    await asyncio.to_thread(
        eventually, lambda: any(a.name == "ServiceDown" and a.state == "firing"
                                and a.labels.get("host") == "m1"
                                for a in prometheus.alerts(base)), 30, "m1's ServiceDown")
    check = await asyncio.to_thread(validate._monitoring, m0.settings)
    assert check.result == "PASS", check

    def heard_unfiltered() -> bool:  # what m0's Alertmanager (or Prometheus) holds
        every = alerts._held(m0.settings, 0.5)
        return every is not None and any(a.labels.get("host") == "m1" for a in every[0])

    await asyncio.to_thread(eventually, heard_unfiltered, 15, "m1's alert held on m0")
    found = alerts.held(m0.settings)
    assert found is not None
    assert not [a for a in found[0] if a.labels.get("host") == "m1"], found


def test_a_host_whose_lease_expired_leaves_the_file_and_prometheus(
        fleet: dict[str, Stack]) -> None:
    m0, m2 = fleet["m0"], fleet["m2"]
    eventually(lambda: "m2" in _up_by_host(m0), timeout=30, what="m2 scraped")
    record = ProcRecord.load(m2.settings.paths.run, services.FLEET_AGENT)
    assert record is not None and record.alive()
    os.kill(record.pid, signal.SIGKILL)  # no revoke: only the lease's expiry removes it
    eventually(lambda: _in_file(m0) == {"m0", "m1"}, what="m2 gone from m0's file")
    eventually(lambda: "m2" not in {t["labels"].get("host") for t in _targets(m0)},
               timeout=30, what="m2 gone from m0's Prometheus")
    assert set(_up_by_host(m0)) == {"m0", "m1"}


def test_a_bad_advertised_address_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^VRM_FLEET_ADVERTISE="):
        load_settings({}, environ={"VRM_FLEET_ADVERTISE": "http://gpu-1/"},
                      deploy_dir=tmp_path)


def test_targets_are_rewritten_only_when_they_change(tmp_path: Path) -> None:
    settings = load_settings({}, environ={"VRM_FLEET": "f", "VRM_FLEET_HOST": "gpu-1",
                                          "VRM_FLEET_ADVERTISE": "10.0.0.11",
                                          "RUST_BACKEND_URL": "http://10.0.0.99:4001"},
                             deploy_dir=tmp_path)
    groups = own_targets(settings)
    where = {g["labels"]["service"]: g["targets"] for g in groups}
    assert where[services.RUST] == ["10.0.0.99:4001"]  # not on this host: as it is
    assert where[services.TYPESCRIPT] == [f"10.0.0.11:{settings.ts_port}"]  # loopback: advertised
    report = HostReport("gpu-1", 1, 10, "following", targets=groups)
    path = tmp_path / "prometheus" / "fleet-targets.json"
    assert write_targets(path, {"gpu-1": report})
    assert not write_targets(path, {"gpu-1": replace(report, generation=2)})
    assert write_targets(path, {})
    assert json.loads(path.read_text()) == []


def test_only_a_fleet_listens_beyond_loopback_and_only_at_its_advertised_address(
        tmp_path: Path) -> None:
    def load(**env: str) -> Settings:
        return load_settings({}, environ=env, deploy_dir=tmp_path)

    def listens(command: list[str]) -> list[str]:
        return [a for a in command if a.startswith(("-web.listen", "--web.listen", "--cluster"))]

    config, data = tmp_path / "alertmanager.yml", tmp_path / "data"
    alone = load()
    assert listens(monitoring.exporter_command(alone)) == [
        f"-web.listen-address=127.0.0.1:{alone.nginx_exporter_port}"]
    assert listens(monitoring.alertmanager_command(alone, config, data)) == [
        "--web.listen-address=127.0.0.1:9093", "--cluster.listen-address="]

    fleet = {"VRM_FLEET": "f", "ALERTMANAGER_CLUSTER_PORT": "9500"}
    here = load(**fleet, VRM_FLEET_HOST="gpu-1", VRM_FLEET_ADVERTISE="127.0.0.2",
                ALERTMANAGER_PEER_TIMEOUT="3s")
    there = load(**fleet, VRM_FLEET_HOST="gpu-2", VRM_FLEET_ADVERTISE="10.0.0.12")
    write_targets(here.paths.fleet_targets, {  # as the agent renders them from etcd
        s.fleet_host: HostReport(s.fleet_host, 1, 0, "following", targets=own_targets(s))
        for s in (here, there)})
    assert listens(monitoring.exporter_command(here)) == [
        f"-web.listen-address=127.0.0.2:{here.nginx_exporter_port}"]
    assert listens(monitoring.alertmanager_command(here, config, data)) == [
        "--web.listen-address=127.0.0.1:9093",  # its API (silences) on loopback only
        "--cluster.listen-address=127.0.0.2:9500", "--cluster.advertise-address=127.0.0.2:9500",
        "--cluster.peer-timeout=3s", "--cluster.peer=10.0.0.12:9500"]  # not itself

    rendered = yaml.safe_load(monitoring.render_prometheus(here, tmp_path / "rules.yml"))
    own = {g["labels"]["service"]: g for job in rendered["scrape_configs"]
           for g in job.get("static_configs", [])}
    # scraped where it listens, labelled as every other host's Prometheus labels it
    assert own[services.PROXY]["targets"] == [f"127.0.0.2:{here.nginx_exporter_port}"]
    assert own[services.TYPESCRIPT]["targets"] == [f"127.0.0.1:{here.ts_port}"]
    assert own[services.TYPESCRIPT]["labels"]["instance"] == f"127.0.0.2:{here.ts_port}"
    # its own Alertmanager only: every Prometheus raises every fleet-wide alert
    [local] = rendered["alerting"]["alertmanagers"]
    assert local["static_configs"] == [{"targets": ["127.0.0.1:9093"]}]

    with pytest.raises(BadInput, match=r"^VRM_FLEET_ADVERTISE=0\.0\.0\.0: names every"):
        monitoring.fleet_address(load(VRM_FLEET="f", VRM_FLEET_ADVERTISE="0.0.0.0"))
    refused = new_stack(tmp_path, VRM_FLEET="f", VRM_FLEET_ADVERTISE="192.0.2.1").vrm("up")
    assert (refused.returncode, refused.stderr.strip().splitlines()) == (1, [
        "vrm up: VRM_FLEET_ADVERTISE=192.0.2.1: 192.0.2.1 is not an address of this host "
        "(Cannot assign requested address)"]), refused.stderr
