"""Alertmanager under compose (issue 24): the service is healthy, Prometheus sends to it, vrm
reads it (the Alerts pane's source, and the guard's in vrm-control through its loopback), and
an alert reaches a webhook receiver on the host, after `vrm up` reloaded a changed route.

The receiver listens on the compose network's gateway: the host's own address on the
project's bridge, which its containers reach without NAT (this engine runs with
--iptables=false). Skipped loudly (by the session fixture) without an engine."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.compose.test_compose_control import container_id, until
from tests.integration.test_alerts import Receiver
from tests.support import Stack
from vrm_tui.core import services
from vrm_tui.stack.compose import CONTROL, host_address, subnet
from vrm_tui.telemetry import alertmanager

pytestmark = pytest.mark.timeout(1200)  # the first compose test pays for the images

ALERT = "VrmComposeCheck"
# vrm-control's own view, as its guard's alert gate asks (migrate/alerts.held)
HELD = """
import sys
from pathlib import Path
from vrm_tui.migrate.alerts import held
from vrm_tui.settings import load
settings = load({"VRM_STATE_DIR": sys.argv[1], "VRM_RUNTIME": "compose"},
                deploy_dir=Path(sys.argv[2]))
alerts, where = held(settings, 3.0) or ([], None)
print(where, *sorted(alert.name for alert in alerts))
"""


def _health(stack: Stack, service: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}",
                           container_id(stack, service)], capture_output=True, text=True,
                          check=True).stdout.strip()


def _posted(ends: datetime) -> dict[str, object]:
    return {"labels": {"alertname": ALERT, "severity": "warning",
                       "service": services.PROXY},
            "annotations": {"summary": "compose e2e check"},
            "endsAt": ends.isoformat()}


def test_alertmanager_serves_prometheus_vrm_and_a_webhook(compose_stack: Stack) -> None:
    stack = compose_stack
    manager = f"http://127.0.0.1:{stack.settings.alertmanager_port}"
    until("the alertmanager container is healthy",
          lambda: _health(stack, services.ALERTMANAGER) == "healthy", 90)

    prometheus = f"http://127.0.0.1:{stack.settings.prometheus_port}"

    def active() -> list[str]:
        data = httpx.get(f"{prometheus}/api/v1/alertmanagers", timeout=5).json()["data"]
        return [a["url"] for a in data["activeAlertmanagers"]]

    urls = until("Prometheus lists Alertmanager as active", active, 90)
    assert isinstance(urls, list) and any(":9093/" in url for url in urls), urls

    gateway = str(host_address(subnet(stack.settings.compose_project), 1))
    receiver = Receiver(gateway)
    try:
        stack.configure(ALERT_WEBHOOK_URLS=receiver.url, ALERT_GROUP_WAIT="1s")
        up = stack.vrm("up", timeout=300)  # renders the routes again and reloads them
        assert up.returncode == 0, up.stderr
        until("Alertmanager reloaded the new route", lambda: receiver.url in json.dumps(
            httpx.get(f"{manager}/api/v2/status", timeout=5).json()), 60)

        alertmanager.post_alerts(manager, [_posted(datetime.now(UTC) + timedelta(minutes=5))])
        sent = time.monotonic()
        at, payload = receiver.wait_for(lambda a: a["labels"]["alertname"] == ALERT, 60)
        print(f"posted -> webhook on the host: {at - sent:.1f}s (group_wait 1s)")
        assert payload["status"] == "firing"

        pane = stack.console.alerts()
        assert any(a.name == ALERT and a.state == "firing" for a in pane), pane
        journal = stack.vrm("journal", "--json")
        assert ALERT in journal.stdout, journal.stdout[-1000:]

        seen = subprocess.run(["docker", "exec", container_id(stack, CONTROL), "python3", "-c",
                               HELD, str(stack.settings.state_dir), str(stack.deploy_dir)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert seen.returncode == 0, seen.stderr[-2000:]
        assert seen.stdout.split()[:1] == ["alertmanager"] and ALERT in seen.stdout, \
            seen.stdout
    finally:
        # resolved at once, so no later test's migration meets it
        alertmanager.post_alerts(manager, [_posted(datetime.now(UTC))])
        receiver.stop()
