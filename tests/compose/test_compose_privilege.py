"""Least privilege in the compose stack, as `docker inspect` reports it: vrm's containers run
as a non-root user (vrm-control as the state dir's owner), with every capability dropped
(nginx's master keeps only SETUID/SETGID to switch its workers' user), no-new-privileges and
a read-only root file system. Skipped loudly (by the session fixture) without an engine."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.support import Stack
from vrm_tui.core import services
from vrm_tui.stack.compose import CONTROL, PROJECT_LABEL, SERVICE_LABEL

pytestmark = pytest.mark.timeout(1200)

NON_ROOT = (services.RUST, services.TYPESCRIPT, services.PROMETHEUS, services.NGINX_EXPORTER)


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
    assert {*NON_ROOT, services.PROXY, CONTROL} <= set(containers), sorted(containers)
    for name in (*NON_ROOT, services.PROXY, CONTROL):
        host = containers[name]["HostConfig"]
        assert host["CapDrop"] == ["ALL"] or host["CapDrop"] == ["all"], (name, host["CapDrop"])
        allowed = {"SETUID", "SETGID", "CAP_SETUID", "CAP_SETGID"} if name == services.PROXY \
            else set()
        assert set(host["CapAdd"] or []) <= allowed, (name, host["CapAdd"])
        assert "no-new-privileges:true" in (host["SecurityOpt"] or []), name
        assert host["ReadonlyRootfs"] is True, name
        assert host["Privileged"] is False, name
    for name in NON_ROOT:
        assert _uid(containers[name]) != "0", (name, containers[name]["Config"]["User"])
    owner = compose_stack.settings.state_dir.stat().st_uid
    assert _uid(containers[CONTROL]) == str(owner), containers[CONTROL]["Config"]["User"]
    # nginx's workers: whatever user, never a capability
    workers = subprocess.run(["docker", "top", containers[services.PROXY]["Id"], "-o",
                              "pid,args"], capture_output=True, text=True, check=True).stdout
    assert "nginx: worker process" in workers, workers
