"""The fleet agent under compose (issue 25): in a fleet, `vrm up` starts the stack's
`fleet-agent` service (the `fleet` profile) instead of a host process; from its container it
reports to a real etcd on the host's loopback (host network: see docker-compose.yml) and
applies the fleet's desired split through this host's status listener, verified.
Skipped loudly (by the session fixture) without an engine."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.compose.test_compose_control import container_id, until
from tests.compose.test_compose_restarts import serving
from tests.fleet.etcd import new_etcd
from tests.support import Stack
from vrm_tui.core import services
from vrm_tui.core.split import Split
from vrm_tui.stack.compose import ComposeRuntime

pytestmark = [pytest.mark.timeout(1200),
              pytest.mark.skipif(shutil.which("etcd") is None
                                 and not Path("/usr/bin/etcd").exists(),
                                 reason="scripts/test.sh installs etcd-server")]

HOST = "compose-host"


def test_the_fleet_agent_runs_as_a_compose_service(compose_stack: Stack,
                                                   tmp_path: Path) -> None:
    stack = compose_stack
    etcd = new_etcd(tmp_path)
    etcd.start()
    try:
        stack.configure(VRM_FLEET="compose", VRM_FLEET_ENDPOINTS=etcd.endpoints,
                        VRM_FLEET_HOST=HOST)
        up = stack.vrm("up", timeout=300)
        assert up.returncode == 0, up.stderr
        agent = container_id(stack, services.FLEET_AGENT)
        shown = json.loads(subprocess.run(["docker", "inspect", agent], capture_output=True,
                                          text=True, check=True).stdout)[0]
        assert shown["HostConfig"]["NetworkMode"] == "host"
        assert shown["HostConfig"]["ReadonlyRootfs"] is True

        def reported() -> bool:
            return HOST in stack.console.fleet_status().hosts

        until("the agent in its container reports to etcd", reported, 60)
        deployed = stack.vrm("fleet", "deploy", "--rust-weight", "40")
        assert deployed.returncode == 0, deployed.stderr
        until("the agent applies the fleet's 40/60 here",
              lambda: serving(stack, Split(40)), 60)
        host = stack.console.fleet_status().hosts[HOST]
        until("its report says so, verified", lambda: (
            stack.console.fleet_status().hosts[HOST].rust == 40
            and stack.console.fleet_status().hosts[HOST].verified_at), 30)
        assert host.mode in ("following", "lagging"), host
        status = stack.vrm("status")  # the agent is `vrm fleet status`'s, not a health check
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        runtime = stack.console.runtime  # in the fleet: its `fleet` profile is on
        assert isinstance(runtime, ComposeRuntime)
        runtime.run_compose("rm", "-sf", services.FLEET_AGENT, timeout=120)
        stack.configure(VRM_FLEET="", VRM_FLEET_ENDPOINTS="", VRM_FLEET_HOST="")
        etcd.stop()
    assert stack.vrm("rollback").returncode == 0
