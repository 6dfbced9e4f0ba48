"""The fleet's scrape targets: each host's, as other hosts reach it, rendered for Prometheus.

Every agent reports its host's targets (`HostReport.targets`) and renders every live host's
into `StateDir.fleet_targets` in Prometheus's file_sd format; the local Prometheus's `fleet`
job reads that file (vrm_tui/stack/monitoring.py), so a host that joins is scraped within a
discovery round and a host whose lease expired is dropped with its report. Each group keeps
the job name of the single-host config (`vision-manager`, `nginx`, `prometheus`) and its
`service` label, and adds `host`: dashboards and rules select every host's series alike.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vrm_tui.core import services
from vrm_tui.fleet.store import HostReport
from vrm_tui.settings import Settings
from vrm_tui.system.files import write_atomic

__all__ = ["own_targets", "render", "write_targets"]

# service -> the job that scrapes it in monitoring/prometheus.yml
JOB = {services.RUST: "vision-manager", services.TYPESCRIPT: "vision-manager",
       services.PROXY: "nginx", services.PROMETHEUS: "prometheus"}


def own_targets(settings: Settings) -> list[dict[str, Any]]:
    """This host's targets in file_sd form: both backends' /metrics and, when monitoring
    runs here, the proxy's nginx exporter and Prometheus; loopback addresses are given as
    VRM_FLEET_ADVERTISE (the address other hosts use for this one)."""
    addresses = {services.RUST: settings.rust_address, services.TYPESCRIPT: settings.ts_address}
    if settings.monitoring:
        addresses[services.PROXY] = f"127.0.0.1:{settings.nginx_exporter_port}"
        addresses[services.PROMETHEUS] = f"127.0.0.1:{settings.prometheus_port}"
    return [{"targets": [_advertised(address, settings.fleet_advertise)],
             "labels": {"job": JOB[service], "service": service, "host": settings.fleet_host}}
            for service, address in addresses.items()]


def _advertised(address: str, advertise: str) -> str:
    """`address` as another host reaches it: a loopback host is replaced by `advertise`."""
    host, _, port = address.rpartition(":")
    bare = host.strip("[]")
    try:
        loopback = bare == "localhost" or ipaddress.ip_address(bare).is_loopback
    except ValueError:
        loopback = False
    return f"{advertise}:{port}" if loopback else address


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
