"""Through restarts: `docker restart` of each container and `docker compose restart` of the
whole project come back serving the last verified split (read from nginx's status listener)
with Prometheus' data kept. Skipped loudly (by the session fixture) without an engine."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from tests.compose.test_compose_control import container_id, until
from tests.support import Stack
from vrm_tui.core import services
from vrm_tui.core.errors import ProxyUnreachable
from vrm_tui.core.split import Split
from vrm_tui.stack.compose import CONTROL, ComposeRuntime

pytestmark = pytest.mark.timeout(1200)


def serving(stack: Stack, split: Split) -> bool:
    try:
        served = stack.console.runtime.served(timeout=1.0)
    except ProxyUnreachable:
        return False
    if served.split != split:
        return False
    answer = httpx.get(f"{stack.proxy}/api/v1/vision/metrics", timeout=5)
    return answer.status_code == 200


def samples_before(stack: Stack, moment: float) -> int:
    """How many `up` samples Prometheus holds from before `moment` (its TSDB survived)."""
    url = f"http://127.0.0.1:{stack.settings.prometheus_port}/api/v1/query"
    try:
        data = httpx.get(url, params={"query": "count_over_time(up[10m])", "time": moment},
                         timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return 0
    return sum(int(float(r["value"][1])) for r in data.get("data", {}).get("result", []))


def test_restarts_keep_the_verified_split_and_prometheus_data(compose_stack: Stack) -> None:
    stack = compose_stack
    deployed = stack.vrm("deploy", "--rust-weight", "30", "--yes", timeout=300)
    assert deployed.returncode == 0, deployed.stderr
    assert serving(stack, Split(30))
    until("Prometheus has scraped", lambda: samples_before(stack, time.time()) > 0, 90)
    before = time.time()
    kept = samples_before(stack, before)

    for service in (services.PROXY, services.RUST, services.TYPESCRIPT, CONTROL,
                    services.NGINX_EXPORTER, services.PROMETHEUS):
        started = time.monotonic()
        subprocess.run(["docker", "restart", container_id(stack, service)], check=True,
                       capture_output=True, timeout=120)
        until(f"after docker restart {service}: rust 30 served again",
              lambda: serving(stack, Split(30)), 120)
        print(f"docker restart {service}: serving 30/70 again after "
              f"{time.monotonic() - started:.1f}s")

    runtime = stack.console.runtime
    assert isinstance(runtime, ComposeRuntime)
    started = time.monotonic()
    runtime.compose("restart", timeout=300)
    until("after docker compose restart: rust 30 served again",
          lambda: serving(stack, Split(30)), 180)
    print(f"docker compose restart: serving 30/70 again after {time.monotonic() - started:.1f}s")
    until("Prometheus answers with its data from before the restarts",
          lambda: samples_before(stack, before) >= kept, 120)
    until("vrm status: every service healthy again",
          lambda: stack.vrm("status").returncode == 0, 120)
    assert stack.vrm("rollback").returncode == 0
