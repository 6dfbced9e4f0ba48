"""The fleet's monitoring across hosts: two hosts of a real fleet (etcd, agents), each with a
real Prometheus, nginx exporter and Alertmanager, on addresses of their own (127.0.0.2 and
127.0.0.3, VRM_FLEET_ADVERTISE). Each host's Prometheus scrapes the other's exporter and
backends at the advertised address, and the two Alertmanagers form one cluster (gossip on
ALERTMANAGER_CLUSTER_PORT, peers from etcd at `vrm up`), so an alert that every host's
Prometheus raises reaches the webhook once, not once per host."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest

from tests.fleet.etcd import Etcd
from tests.fleet.test_fleet import eventually
from tests.integration.test_alerts import Receiver, receiver  # noqa: F401  (the fixture)
from tests.support import Stack, new_stack
from vrm_tui.core import services
from vrm_tui.fleet.store import EtcdStore
from vrm_tui.system.procs import ProcRecord, free_ports

pytestmark = pytest.mark.skipif(
    not all(shutil.which(b) for b in ("prometheus", "prometheus-nginx-exporter",
                                      "prometheus-alertmanager", "amtool")),
    reason="scripts/test.sh installs prometheus, prometheus-nginx-exporter and "
           "prometheus-alertmanager")

ADDRESS = {"a1": "127.0.0.2", "a2": "127.0.0.3"}


@pytest.fixture(scope="module")
def fleet(etcd: Etcd, receiver: Receiver,  # noqa: F811
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Stack]]:
    """Fleet `dd`: a1, then a2 (which finds a1 in etcd and joins its Alertmanager); 1 s
    scrapes and evaluations, `for: 1s`, 1 s group wait, 3 s between the peers' turns."""
    stacks: dict[str, Stack] = {}
    store = EtcdStore("dd", (etcd.endpoints,))
    try:
        for host, address in ADDRESS.items():
            stacks[host] = new_stack(
                tmp_path_factory.mktemp(host), VRM_MONITORING="1", VRM_FLEET="dd",
                VRM_FLEET_ENDPOINTS=etcd.endpoints, VRM_FLEET_HOST=host,
                VRM_FLEET_ADVERTISE=address, ALERTMANAGER_CLUSTER_PORT=str(free_ports(1)[0]),
                ALERTMANAGER_PEER_TIMEOUT="3s", ALERT_WEBHOOK_URLS=receiver.url,
                ALERT_GROUP_WAIT="1s", ALERT_GROUP_INTERVAL="1m", ALERT_REPEAT_INTERVAL="1h",
                ALERT_RULE_FOR="1s", PROMETHEUS_SCRAPE_INTERVAL="1s",
                PROMETHEUS_EVALUATION_INTERVAL="1s")
            stacks[host].up()
            eventually(partial(_reported, store, host), what=f"{host} in etcd")
        yield stacks
    finally:
        for stack in stacks.values():
            stack.down()


def _get(url: str, **params: str) -> Any:
    answer = httpx.get(url, params=params, timeout=5)
    answer.raise_for_status()
    return answer.json()


def _prometheus(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.prometheus_port}"


def _manager(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.alertmanager_port}"


def _metric(stack: Stack, name: str) -> float:
    """The sum of an Alertmanager counter over its labels."""
    text = httpx.get(f"{_manager(stack)}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name)] in " {")


def _command(stack: Stack, service: str) -> list[str]:
    record = ProcRecord.load(stack.settings.paths.run, service)
    assert record is not None, service
    return record.command


def _reported(store: EtcdStore, host: str) -> bool:
    return host in store.hosts()


def _all_up(stack: Stack, host: str) -> bool:
    """Whether `stack`'s Prometheus scrapes `host`'s exporter and backends at its advertised
    address, all up."""
    found = _get(f"{_prometheus(stack)}/api/v1/targets", state="active")
    health = {t["labels"]["service"]: t["health"] for t in found["data"]["activeTargets"]
              if t["labels"].get("host") == host and t["scrapePool"] == "fleet"
              and t["labels"]["instance"].startswith(f"{ADDRESS[host]}:")}
    return health == {services.PROXY: "up", services.RUST: "up", services.TYPESCRIPT: "up"}


def _paired(stack: Stack) -> bool:
    """Its Alertmanager in a cluster of two, and its Prometheus sending to it."""
    peers = _get(f"{_manager(stack)}/api/v2/status")["cluster"]["peers"]
    managers = _get(f"{_prometheus(stack)}/api/v1/alertmanagers")["data"]
    return len(peers) == 2 and len(managers["activeAlertmanagers"]) == 1


def test_each_host_scrapes_the_others_exporter_at_its_advertised_address(
        fleet: dict[str, Stack]) -> None:
    for here, there in (("a1", "a2"), ("a2", "a1")):
        other = fleet[there].settings
        exporter = f"{ADDRESS[there]}:{other.nginx_exporter_port}"

        eventually(partial(_all_up, fleet[here], there), timeout=30,
                   what=f"{here}'s Prometheus scraping {there} at {ADDRESS[there]}")
        assert "nginx_up 1" in httpx.get(f"http://{exporter}/metrics", timeout=5).text
        # `vrm status` probes it where it listens
        shown = {s.state.name: s.healthy for s in fleet[there].console.status().services}
        assert shown[services.NGINX_EXPORTER] and shown[services.ALERTMANAGER], shown
        # exactly the advertised address: not loopback's 127.0.0.1, so not every interface
        with pytest.raises(ConnectionRefusedError), \
                socket.create_connection(("127.0.0.1", other.nginx_exporter_port), timeout=2):
            pass
        # Alertmanager's API (silences: they would also quiet the guard's alert gate) is
        # not offered to other hosts; only its gossip port is
        with pytest.raises(ConnectionRefusedError), \
                socket.create_connection((ADDRESS[there], other.alertmanager_port), timeout=2):
            pass


def test_a_fleet_wide_alert_reaches_the_webhook_once(fleet: dict[str, Stack],
                                                     receiver: Receiver) -> None:  # noqa: F811
    a1, a2 = fleet["a1"], fleet["a2"]
    # a1 started alone; a2, started later, found a1 in etcd and joined it
    peers = {name: [a for a in _command(s, services.ALERTMANAGER)
                    if a.startswith("--cluster.peer=")] for name, s in fleet.items()}
    assert peers == {"a1": [], "a2": [
        f"--cluster.peer={ADDRESS['a1']}:{a1.settings.alertmanager_cluster_port}"]}, peers
    for stack in (a1, a2):
        eventually(partial(_paired, stack), timeout=30,
                   what="one cluster of two Alertmanagers, each Prometheus sending to its own")
    a2.runtime.stop_service(services.TYPESCRIPT)

    def about_it(alert: dict[str, Any]) -> bool:
        labels: dict[str, str] = alert["labels"]
        return (labels.get("alertname") == "ServiceDown" and labels.get("host") == "a2"
                and labels.get("service") == services.TYPESCRIPT)

    _, payload = receiver.wait_for(about_it, timeout=60)
    held = {name: [a for a in _get(f"{_manager(s)}/api/v2/alerts") if about_it(a)]
            for name, s in fleet.items()}
    assert all(held.values()), held  # both Alertmanagers hold it: either could notify
    # each has been through its dedupe stage (the later one after its peer timeout) ...
    eventually(lambda: all(_metric(s, "alertmanager_nflog_queries_total") >= 1
                           for s in fleet.values()), timeout=30, what="both deduplicated")
    sent = sum(_metric(s, "alertmanager_notifications_total") for s in fleet.values())
    # ... and between them notified once: one payload for the group, with the one alert
    groups = [p for _, p in receiver.got if p["groupKey"] == payload["groupKey"]]
    assert (len(groups), sent) == (1, 1), receiver.got
    assert payload["status"] == "firing"
    assert payload["groupLabels"] == {"alertname": "ServiceDown",
                                      "service": services.TYPESCRIPT}
    [alert] = payload["alerts"]
    instance = f"{ADDRESS['a2']}:{a2.settings.ts_port}"  # the same from either Prometheus
    assert alert["labels"]["instance"] == instance, alert
    assert alert["status"] == "firing"
