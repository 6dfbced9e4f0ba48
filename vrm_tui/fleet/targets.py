"""The fleet's scrape targets: each host's, as other hosts reach it, rendered for Prometheus.

Every agent reports its host's targets (`HostReport.targets`) and renders every live host's
into `StateDir.fleet_targets` in Prometheus's file_sd format; the local Prometheus's `fleet`
job reads that file (vrm_tui/stack/monitoring.py), so a host that joins is scraped within a
discovery round and a host whose lease expired is dropped with its report. Each group keeps
the job name of the single-host config (`vision-manager`, `nginx`) and its `service`
label, and adds `host`: dashboards and rules select every host's series alike. A host that
runs monitoring adds its Alertmanager's gossip address (job `alertmanager`, never scraped):
the cluster peers are read from the same file. Its API stays on the host's loopback.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vrm_tui.core import services
from vrm_tui.fleet.store import EtcdStore, FleetUnreachable, HostReport
from vrm_tui.settings import Settings
from vrm_tui.stack.monitoring import (
    ALERTMANAGER_JOB,
    CLUSTER_PEER,
    advertised,
    fleet_shared,
    hostport,
)
from vrm_tui.system.files import write_atomic

__all__ = ["own_targets", "refresh", "render", "write_targets"]

# service -> the job that scrapes it in monitoring/prometheus.yml
JOB = {services.RUST: "vision-manager", services.TYPESCRIPT: "vision-manager",
       services.PROXY: "nginx"}


def own_targets(settings: Settings) -> list[dict[str, Any]]:
    """This host's targets in file_sd form (monitoring.fleet_shared), loopback addresses
    given as VRM_FLEET_ADVERTISE (the address other hosts use for this one), and with
    monitoring its Alertmanager."""
    host, advertise = settings.fleet_host, settings.fleet_advertise
    groups: list[dict[str, Any]] = [
        {"targets": [advertised(address, advertise)],
         "labels": {"job": JOB[service], "service": service, "host": host}}
        for service, address in fleet_shared(settings).items()]
    if settings.monitoring:
        gossip = hostport(advertise, settings.alertmanager_cluster_port)
        groups.append({
            "targets": [gossip],
            "labels": {"job": ALERTMANAGER_JOB, "service": services.ALERTMANAGER, "host": host,
                       CLUSTER_PEER: gossip}})
    return groups


def render(reports: Mapping[str, HostReport]) -> str:
    """Every reported host's target groups as a file_sd JSON list, sorted by host."""
    groups = [group for host in sorted(reports) for group in reports[host].targets]
    return json.dumps(groups, indent=1, sort_keys=True) + "\n"


def write_targets(path: Path, reports: Mapping[str, HostReport]) -> bool:
    """Rewrite `path` (atomically: Prometheus never reads half a file) when the live hosts'
    targets changed; True when it was written."""
    text = render(reports)
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    write_atomic(path, text, sync=False)
    return True


def refresh(settings: Settings) -> bool:
    """The live hosts' targets read from etcd now (`vrm up`, before Alertmanager starts:
    its cluster peers come from this file). Unreachable, the last file stands and the agent
    rewrites it once etcd answers; True when it was written."""
    try:
        return write_targets(settings.paths.fleet_targets,
                             EtcdStore(settings.fleet, settings.fleet_endpoints).hosts())
    except (FleetUnreachable, OSError):
        return False
