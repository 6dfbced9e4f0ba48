"""The compose runtime end to end on a real Docker engine: the rehearsal stack comes up,
serves 10/90, rolls back, shows logs, and goes away."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.support import REPO, Stack, sample_backends
from vrm_tui.core import services
from vrm_tui.core.split import Split

COMPOSE = REPO / "docker" / "docker-compose.yml"

# The session fixture builds images on first use: on a busy 2-core host that alone can take
# several minutes, and it counts against the first test that asks for the stack.
pytestmark = pytest.mark.timeout(1200)


def test_compose_file_is_valid_and_lists_the_seed_services() -> None:
    result = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "--services"],
                            capture_output=True, text=True, check=False,
                            env={"PATH": "/usr/bin:/bin:/usr/local/bin",
                                 "VRM_STATE_DIR": "/tmp/vrm-config-check/.vrm",
                                 "VRM_DEPLOY_DIR": "/tmp/vrm-config-check",
                                 "VRM_ALERTMANAGER_DIR": "/tmp/vrm-config-check/.vrm/am",
                                 "GRAFANA_PASSWORD": "check-only"})
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) >= {services.PROXY, services.RUST, services.TYPESCRIPT,
                                          services.PROMETHEUS, services.GRAFANA,
                                          services.ALERTMANAGER}


async def test_rehearsal_stack_deploys_rolls_back_and_logs(compose_stack: Stack) -> None:
    stack = compose_stack
    status = json.loads(stack.vrm("status", "--json").stdout)
    assert status["runtime"] == "compose"
    assert all(s["healthy"] for s in status["services"]), status["services"]

    deployed = stack.vrm("deploy", "--rust-weight", "10")
    assert deployed.returncode == 0, deployed.stderr
    seen = await sample_backends(f"{stack.proxy}/api/v1/vision/metrics", 1000)
    assert sum(seen.values()) == 1000 and abs(seen["rust"] - 100) <= 20, seen

    rolled = stack.vrm("rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert await sample_backends(f"{stack.proxy}/api/v1/vision/metrics", 300) == \
        {"typescript": 300}
    assert stack.controller.served().split == Split(0)

    for service, expect in ((services.RUST, "rehearsal backend"),
                            (services.PROXY, "proxy-access.log")):
        logs = stack.vrm("logs", service, "-n", "20")
        assert logs.returncode == 0 and expect in logs.stdout, (service, logs.stdout[-500:])

    # status endpoints answer on the loopback-published status port, not the public one
    assert httpx.get(f"{stack.proxy}/vrm/served").status_code == 404
    assert stack.controller.served().generation > 0


def test_prometheus_in_compose_scrapes_everything(compose_stack: Stack) -> None:
    import time

    url = f"http://127.0.0.1:{compose_stack.settings.prometheus_port}/api/v1/targets"
    deadline = time.monotonic() + 60
    while True:
        targets = httpx.get(url, timeout=5).json()["data"]["activeTargets"]
        health = {t["labels"].get("service"): t["health"] for t in targets}
        if len(health) == 4 and set(health.values()) == {"up"}:
            break
        assert time.monotonic() < deadline, health
        time.sleep(1)


def test_the_stack_lives_in_its_own_compose_project(compose_stack: Stack) -> None:
    """Project and container names come from the state dir, so this stack and any other on
    the engine (a real one, another test run) never share a name."""
    project = compose_stack.settings.compose_project
    assert project.startswith("vrm-")
    listed = subprocess.run(["docker", "ps", "--filter", f"label=com.docker.compose.project="
                             f"{project}", "--format",
                             '{{.Label "com.docker.compose.service"}} {{.Names}}'],
                            capture_output=True, text=True, check=True).stdout.split("\n")
    pairs = dict(line.split(" ", 1) for line in listed if line.strip())
    assert {services.PROXY, services.RUST, services.TYPESCRIPT} <= set(pairs), pairs
    assert all(name.startswith(project) for name in pairs.values()), pairs
