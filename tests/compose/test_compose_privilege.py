"""Least privilege in the compose stack, as `docker inspect` reports it: vrm's containers run
as a non-root user (vrm-control and Alertmanager as the state dir's owner), with every
capability dropped (nginx's master keeps only SETUID/SETGID/CHOWN to hand its workers to
`nobody`; the workers run as `nobody`), no-new-privileges and a read-only root file system.
Skipped loudly (by the session fixture) without an engine."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.support import Stack
from vrm_tui.core import services
from vrm_tui.stack.compose import CONTROL, PROJECT_LABEL, SERVICE_LABEL

NOBODY = 65534  # Debian's `nobody`, in the base image as on the host

pytestmark = pytest.mark.timeout(1200)

NON_ROOT = (services.RUST, services.TYPESCRIPT, services.PROMETHEUS, services.NGINX_EXPORTER)
AS_OWNER = (CONTROL, services.ALERTMANAGER)  # they read what only the state dir's owner may


def inspect_all(stack: Stack) -> dict[str, dict[str, Any]]:
    ids = subprocess.run(["docker", "ps", "-q", "--filter",
                          f"label={PROJECT_LABEL}={stack.settings.compose_project}"],
                         capture_output=True, text=True, check=True).stdout.split()
    found = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True,
                                      text=True, check=True).stdout)
    return {c["Config"]["Labels"][SERVICE_LABEL]: c for c in found}


def _uid(container: dict[str, Any]) -> str:
    """The user the container's first process runs as, numerically where docker names one."""
    user = container["Config"]["User"] or "0"
    name = user.split(":")[0]
    if name.isdigit():
        return name
    passwd = subprocess.run(["docker", "exec", container["Id"], "id", "-u"],
                            capture_output=True, text=True, check=True)
    return passwd.stdout.strip()


def test_every_container_runs_with_least_privilege(compose_stack: Stack) -> None:
    containers = inspect_all(compose_stack)
    everyone = (*NON_ROOT, *AS_OWNER, services.PROXY)
    assert set(everyone) <= set(containers), sorted(containers)
    for name in everyone:
        host = containers[name]["HostConfig"]
        assert host["CapDrop"] == ["ALL"] or host["CapDrop"] == ["all"], (name, host["CapDrop"])
        allowed = {f"{prefix}{cap}" for prefix in ("", "CAP_")
                   for cap in ("SETUID", "SETGID", "CHOWN")} if name == services.PROXY \
            else set()
        assert set(host["CapAdd"] or []) <= allowed, (name, host["CapAdd"])
        assert "no-new-privileges:true" in (host["SecurityOpt"] or []), name
        assert host["ReadonlyRootfs"] is True, name
        assert host["Privileged"] is False, name
    for name in NON_ROOT:
        assert _uid(containers[name]) != "0", (name, containers[name]["Config"]["User"])
    owner = str(compose_stack.settings.state_dir.stat().st_uid)
    for name in AS_OWNER:
        assert _uid(containers[name]) == owner, (name, containers[name]["Config"]["User"])
    # nginx: the master as root (it reads the state dir), every worker as `nobody`
    # (docker top needs the pid column to pick the container's processes)
    top = subprocess.run(["docker", "top", containers[services.PROXY]["Id"], "-o",
                          "pid,uid,args"], capture_output=True, text=True,
                         check=True).stdout.splitlines()[1:]
    workers = [line.split()[1] for line in top if "nginx: worker process" in line]
    assert workers and set(workers) == {str(NOBODY)}, top
    masters = [line.split()[1] for line in top if "nginx: master process" in line]
    assert masters == ["0"], top
