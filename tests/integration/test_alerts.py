"""Alerts reach people: a real Prometheus and a real Alertmanager on loopback, started by the
local runtime, deliver to a webhook receiver of the test's own; vrm hears them (journal), the
guard rolls a step back on a critical alert about rust, and `vrm silence` keeps one away.

Timings come from settings (1 s scrapes and evaluations, `for: 2s`, 1 s group wait); the
shipped values are promtool-tested in test_monitoring.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import REPO, Stack, new_stack, wait_until
from vrm_tui.core import services
from vrm_tui.system.procs import free_ports
from vrm_tui.telemetry import alertmanager

MONITORING = REPO / "monitoring"
pytestmark = pytest.mark.skipif(
    not all(shutil.which(b) for b in ("prometheus", "prometheus-nginx-exporter",
                                      "prometheus-alertmanager", "amtool")),
    reason="scripts/test.sh installs prometheus, prometheus-nginx-exporter and "
           "prometheus-alertmanager")

SCRAPE_S, EVAL_S, FOR_S, GROUP_WAIT_S = 1, 1, 2, 1


class Receiver:
    """A webhook receiver (on loopback unless told where): every POSTed payload, with when
    it arrived."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.got: list[tuple[float, dict[str, Any]]] = []
        self.changed = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.changed:
                    outer.got.append((time.monotonic(), json.loads(body)))
                    outer.changed.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self) -> list[tuple[float, str, dict[str, Any]]]:
        """(arrival, payload status, alert) for every alert in every payload so far."""
        with self.changed:
            return [(at, payload["status"], alert) for at, payload in self.got
                    for alert in payload["alerts"]]

    def wait_for(self, match: Callable[[dict[str, Any]], bool],
                 timeout: float = 30.0) -> tuple[float, dict[str, Any]]:
        """The first delivered alert `match` accepts, and when it arrived."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for at, payload in self.got:
                    for alert in payload["alerts"]:
                        if match(alert):
                            return at, payload
                left = deadline - time.monotonic()
                assert left > 0, f"not delivered in {timeout:g}s; got {self.got}"
                self.changed.wait(left)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="module")
def alerting(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Stack]:
    (port,) = free_ports(1)
    stack = new_stack(tmp_path_factory.mktemp("alerting"), VRM_MONITORING="1",
                      ALERTMANAGER_PORT=str(port), ALERT_WEBHOOK_URLS=receiver.url,
                      ALERT_GROUP_WAIT=f"{GROUP_WAIT_S}s", ALERT_GROUP_INTERVAL="2s",
                      ALERT_REPEAT_INTERVAL="1h", ALERT_RULE_FOR=f"{FOR_S}s",
                      PROMETHEUS_SCRAPE_INTERVAL=f"{SCRAPE_S}s",
                      PROMETHEUS_EVALUATION_INTERVAL=f"{EVAL_S}s")
    stack.up()
    try:
        # measured from here on: Prometheus has found its Alertmanager (its notifier starts
        # sending only then)
        prometheus = f"http://127.0.0.1:{stack.settings.prometheus_port}"
        _until(lambda: httpx.get(f"{prometheus}/api/v1/alertmanagers", timeout=5)
               .json()["data"]["activeAlertmanagers"], what="Prometheus finds Alertmanager")
        yield stack
    finally:
        stack.down()


def _manager(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.alertmanager_port}"


def _until(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    return wait_until(check, timeout, what)


def test_the_shipped_alertmanager_config_passes_amtool(tmp_path: Path) -> None:
    for name in ("alertmanager.yml", "alertmanager.tmpl"):
        shutil.copy(MONITORING / name, tmp_path / name)
    result = subprocess.run(["amtool", "check-config", str(tmp_path / "alertmanager.yml")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 inhibit rules" in result.stdout


def test_alertmanager_runs_on_loopback_without_a_cluster_and_prometheus_sends_to_it(
        alerting: Stack) -> None:
    status = json.loads(alerting.vrm("status", "--json").stdout)
    states = {s["name"]: (s["state"], s["healthy"]) for s in status["services"]}
    assert states[services.ALERTMANAGER] == ("running", True)
    answer = httpx.get(f"{_manager(alerting)}/api/v2/status", timeout=5).json()
    assert answer["cluster"]["status"] == "disabled"  # no gossip port on every interface
    prometheus = f"http://127.0.0.1:{alerting.settings.prometheus_port}"
    active = _until(lambda: httpx.get(f"{prometheus}/api/v1/alertmanagers", timeout=5)
                    .json()["data"]["activeAlertmanagers"], what="Prometheus finds it")
    assert active[0]["url"].startswith(f"http://127.0.0.1:{alerting.settings.alertmanager_port}")
    config = (alerting.settings.paths.alertmanager / "alertmanager.yml")
    assert config.stat().st_mode & 0o777 == 0o600  # it may hold route secrets
    assert receiver_url_in(config.read_text(), alerting)


def receiver_url_in(text: str, stack: Stack) -> bool:
    return stack.env_values["ALERT_WEBHOOK_URLS"] in text


@pytest.mark.parametrize("command", ["up", "setup"])
def test_a_bad_route_in_env_exits_2_naming_the_setting(tmp_path: Path, command: str) -> None:
    stack = new_stack(tmp_path, VRM_MONITORING="1", ALERT_WEBHOOK_URLS="http://hooks/%zz")
    result = stack.vrm(command)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ALERT_WEBHOOK_URLS" in lines[0] and "%zz" in lines[0], lines
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / ".vrm" / "run").glob("*.json")), "something was started"


def _errors_on_rust(stack: Stack, stop: threading.Event, first: list[float]) -> None:
    """POST tasks straight to rust (not through the proxy: the migration's own error gate
    sees none of them, so only the alert can fail the step) until `stop`."""
    url = f"{stack.settings.backend_url('rust')}/api/v1/vision/process"
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            sent = time.monotonic()
            answer = client.post(url, json={"model": "resnet50", "image_size": [64, 64]})
            if answer.status_code >= 500 and not first:
                first.append(sent)
            stop.wait(0.05)


def test_a_critical_alert_on_rust_is_delivered_journaled_and_rolls_back_a_migration(
        alerting: Stack, receiver: Receiver) -> None:
    started = alerting.vrm("migrate", "--yes", "--detach", "--steps", "10,50", "--bake", "300",
                           "--gate-interval", "1", USER="alice")
    assert started.returncode == 0, started.stdout + started.stderr
    admin = alerting.runtime.admin_url(services.RUST)
    httpx.post(f"{admin}/faults", json={"error_rate": 1.0}, timeout=5).raise_for_status()
    stop, first = threading.Event(), list[float]()
    sender = threading.Thread(target=_errors_on_rust, args=(alerting, stop, first))
    sender.start()
    try:
        delivered, payload = receiver.wait_for(
            lambda a: a["labels"].get("alertname") == "HighErrorRateCritical"
            and a["status"] == "firing", timeout=60)
        took = delivered - first[0]
        # what the issue counts, and the same with the two scrapes rate() needs to see
        # the error series at all (reported, not asserted: a shared CPU is no stopwatch)
        issue = FOR_S + EVAL_S + GROUP_WAIT_S
        print(f"\nfirst failing request -> webhook delivery: {took:.2f}s; for {FOR_S}s + "
              f"evaluation {EVAL_S}s + group_wait {GROUP_WAIT_S}s = {issue}s, + two "
              f"{SCRAPE_S}s scrapes = {issue + 2 * SCRAPE_S}s")
        assert payload["receiver"] == "default" and payload["status"] == "firing"
        alert = next(a for a in payload["alerts"]
                     if a["labels"]["alertname"] == "HighErrorRateCritical")
        assert alert["labels"]["backend"] == "rust"
        assert alert["labels"]["severity"] == "critical"
        assert "rust error rate is" in alert["annotations"]["summary"]
        assert set(payload["groupLabels"]) <= {"alertname", "service"}

        view = _until(lambda: (v := alerting.console.migration()) and not v.state.active
                      and v, timeout=30, what="the migration to end")
        assert view.state.phase == "rolled-back", view.state.reason
        assert "HighErrorRateCritical" in view.state.reason, view.state.reason
        assert alerting.controller.served().split.rust == 0

        # vrm heard it: one journal line, whichever vrm process heard it first
        heard = [r for r in alerting.controller.journal.read()
                 if r.action == "alert" and "HighErrorRateCritical" in r.detail]
        assert len(heard) == 1 and heard[0].result == "failed", heard
        # the warning twin is inhibited by the critical (same backend), not delivered
        held = _until(lambda: [a for a in alertmanager.alerts(_manager(alerting))
                               if a.name == "HighErrorRate" and a.inhibited_by],
                      what="HighErrorRate inhibited")
        assert held[0].labels["backend"] == "rust"
        # the rollout's events took the same route
        for event in ("started", "rolled-back"):
            def is_event(a: dict[str, Any], e: str = event) -> bool:
                found: str | None = a["labels"].get("event")
                return found == e

            _, note = receiver.wait_for(is_event)
            assert note["receiver"] == "rollout"

        # while it fires, a new migration is refused, naming it (exit 1, one line)
        refused = alerting.vrm("migrate", "--yes", "--detach", "--steps", "10")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "HighErrorRateCritical" in lines[0], lines
        print(f"rolled back: {view.state.reason}\nrefused: {lines[0]}")
    finally:
        stop.set()
        sender.join()
        httpx.delete(f"{admin}/faults", timeout=5)


def test_a_silence_from_vrm_silence_keeps_an_alert_from_reaching_people(
        alerting: Stack, receiver: Receiver) -> None:
    made = alerting.vrm("silence", "--for", "10m", "alertname=VrmProbeSilenced", USER="bob")
    assert made.returncode == 0, made.stdout + made.stderr
    silence_id = made.stdout.split()[1].rstrip(":")
    now = datetime.now(UTC)
    probes = [{"labels": {"alertname": name, "severity": "warning"},
               "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat()}
              for name in ("VrmProbeSilenced", "VrmProbeControl")]
    alertmanager.post_alerts(_manager(alerting), probes)
    receiver.wait_for(lambda a: a["labels"]["alertname"] == "VrmProbeControl")
    # both went in together, with the same group wait: the control's delivery means the
    # silenced one would have arrived by now
    assert not [a for _, _, a in receiver.alerts()
                if a["labels"]["alertname"] == "VrmProbeSilenced"]

    listed = alerting.vrm("silence", "list")
    assert silence_id in listed.stdout and "alertname=VrmProbeSilenced" in listed.stdout
    assert "active" in listed.stdout and "bob" in listed.stdout
    expired = alerting.vrm("silence", "expire", silence_id, USER="bob")
    assert expired.returncode == 0, expired.stderr
    assert "expired" in alerting.vrm("silence", "list").stdout
    records = [r for r in alerting.controller.journal.read() if r.action == "silence"]
    assert [r.operator for r in records] == ["bob", "bob"]
    assert silence_id in records[0].detail and "VrmProbeSilenced" in records[0].detail


@pytest.mark.parametrize("args", [["alertname"], ["--for", "soon", "alertname=X"],
                                  ["expire", "not-an-id"]])
def test_bad_silence_input_exits_2_in_one_line(alerting: Stack, args: list[str]) -> None:
    result = alerting.vrm("silence", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_vrm_up_reloads_changed_routes_into_the_running_alertmanager(
        alerting: Stack, receiver: Receiver) -> None:
    original = alerting.env_values["ALERT_WEBHOOK_URLS"]
    added = f"{receiver.url}-added"
    alerting.configure(ALERT_WEBHOOK_URLS=f"{original},{added}")

    def loaded() -> str:
        config: str = httpx.get(f"{_manager(alerting)}/api/v2/status", timeout=5) \
            .json()["config"]["original"]
        return config

    try:
        result = alerting.vrm("up")
        assert result.returncode == 0, result.stdout + result.stderr
        _until(lambda: added in loaded(), what="the new route loaded")
    finally:
        alerting.configure(ALERT_WEBHOOK_URLS=original)
        alerting.vrm("up")
    _until(lambda: added not in loaded(), what="the route removed again")
