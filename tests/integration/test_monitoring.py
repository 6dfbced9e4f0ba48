"""Monitoring against a real Prometheus and nginx exporter on free ports, scraping the
rehearsal stack: targets, metrics, every rule and dashboard expression, a real alert."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.support import (
    REPO,
    Stack,
    new_stack,
    rendered,
    sample_backends,
    steady_stream,
    wait_until,
)
from vrm_tui.core import services
from vrm_tui.core.errors import PrometheusUnavailable
from vrm_tui.telemetry import prometheus
from vrm_tui.tui.app import VrmApp
from vrm_tui.tui.widgets.alerts import AlertsPane

T = TypeVar("T")
MONITORING = REPO / "monitoring"
pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("prometheus-nginx-exporter") is None,
    reason="scripts/test.sh installs prometheus and prometheus-nginx-exporter")


def _fast_monitoring(deploy_dir: Path) -> None:
    """The deployment's own monitoring files: 1 s scrapes, short windows and `for:`."""
    own = deploy_dir / "monitoring"
    own.mkdir()
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (own / "prometheus.yml").write_text(yaml.safe_dump(config))
    rules = (MONITORING / "alert_rules.yml").read_text()
    rules = re.sub(r"for: \S+", "for: 3s", rules)
    rules = re.sub(r"\[(5|10)m\]", "[15s]", rules)
    (own / "alert_rules.yml").write_text(rules)


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    deploy_dir = tmp_path_factory.mktemp("monitored")
    _fast_monitoring(deploy_dir)
    # parity on, so the comparator is a target and its rule and panel have data
    stack = new_stack(deploy_dir, VRM_MONITORING="1", PARITY_SAMPLE="100",
                      PARITY_MAX_RPS="1000")
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


def _api(stack: Stack, path: str, **params: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{stack.settings.prometheus_port}/api/v1/{path}"
    response = httpx.get(url, params=params, timeout=5)
    response.raise_for_status()
    data: dict[str, Any] = response.json()["data"]
    return data


def _until(check: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    return wait_until(check, timeout, what)


def test_promtool_accepts_config_rules_and_rule_tests() -> None:
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alert_rules.yml"],
                 ["test", "rules", *sorted(str(p.relative_to(MONITORING))
                                           for p in (MONITORING / "tests").glob("*.yml"))]):
        result = subprocess.run(["promtool", *args], cwd=MONITORING, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def _all_up(stack: Stack) -> dict[str, str]:
    """Each target's health once every one has been scraped and is up."""
    def all_up() -> dict[str, str] | None:
        targets = _api(stack, "targets")["activeTargets"]
        health = {t["labels"].get("service"): t["health"] for t in targets}
        return health if health and set(health.values()) == {"up"} else None

    return _until(all_up, what="every target up")


def test_targets_for_both_backends_nginx_and_prometheus_are_up(monitored: Stack) -> None:
    health = _all_up(monitored)
    assert set(health) == {services.RUST, services.TYPESCRIPT, services.PROXY,
                           services.PROMETHEUS, services.PARITY}
    status = json.loads(monitored.vrm("status", "--json").stdout)
    states = {s["name"]: (s["state"], s["healthy"]) for s in status["services"]}
    assert states[services.PROMETHEUS] == ("running", True)
    assert states[services.NGINX_EXPORTER] == ("running", True)


def _expressions() -> list[tuple[str, str]]:
    found = []
    for group in yaml.safe_load((MONITORING / "alert_rules.yml").read_text())["groups"]:
        for rule in group["rules"]:
            found.append((f"rule {rule['alert']}", rule["expr"]))
    for board in sorted((MONITORING / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(board.read_text())["panels"]:
            for target in panel.get("targets", []):  # a row has none
                found.append((f"{board.stem}: {panel['title']}", target["expr"]))
    return found


def test_every_dashboard_has_the_host_variable_and_filters_by_it() -> None:
    """A fleet's hosts are chosen by `host` (All by default, which keeps series without the
    label); every expression but vrm's `vector(0)` fallbacks filters by it."""
    for board in sorted((MONITORING / "grafana" / "dashboards").glob("*.json")):
        data = json.loads(board.read_text())
        variables = {v["name"]: v for v in data["templating"]["list"]}
        assert variables["host"]["definition"] == "label_values(up, host)", board.name
        assert variables["host"]["includeAll"] and variables["host"]["allValue"] == ".*"
        for panel in data["panels"]:
            for target in panel.get("targets", []):
                assert 'host=~"$host"' in target["expr"], (board.name, panel["title"])


def _sides(expr: str) -> list[str]:
    """The expression without its alert threshold: what must return data on a healthy stack
    (a comparison of two queries yields both)."""
    expr = " ".join(expr.split())
    match = re.fullmatch(r"(.*\)) > (histogram_quantile\(.*)", expr)
    if match:
        return [match.group(1), match.group(2)]
    return [re.sub(r"\s*(==|>|<)\s*[\d.]+$", "", expr)]


async def test_every_rule_and_dashboard_expression_parses_and_returns_data(
        monitored: Stack) -> None:
    stop = asyncio.Event()
    loads = [asyncio.create_task(steady_stream(
        f"{monitored.proxy}/api/v1/vision/{backend}/process", 40, stop, "POST",
        {"model": "resnet50", "image_size": [64, 64]})) for backend in ("rust", "typescript")]
    try:
        # Not only when an earlier test has waited for them (a worker of its own may run
        # this test first): every target scraped, then several 1 s scrapes with traffic.
        await asyncio.to_thread(_all_up, monitored)
        await asyncio.sleep(4)
        missing = []
        for where, expr in _expressions():
            # $host: the dashboards' host variable at its default, All (".*": series
            # without a host label, a single host's, match too)
            for side in _sides(expr.replace("$__rate_interval", "15s").replace("$host", ".*")):
                data = await asyncio.to_thread(_api, monitored, "query", query=side)
                if not data["result"]:
                    missing.append(f"{where}: {side}")
        assert not missing, "no data for:\n" + "\n".join(missing)
    finally:
        stop.set()
        await asyncio.gather(*loads)


async def test_error_rate_alert_goes_pending_then_firing_and_the_tui_shows_it(
        monitored: Stack) -> None:
    admin = monitored.runtime.admin_url(services.RUST)
    httpx.post(f"{admin}/faults", json={"error_rate": 0.5})
    stop = asyncio.Event()
    load = asyncio.create_task(steady_stream(
        f"{monitored.proxy}/api/v1/vision/rust/process", 50, stop, "POST",
        {"model": "resnet50", "image_size": [64, 64]}))
    base = f"http://127.0.0.1:{monitored.settings.prometheus_port}"

    def state_of(name: str) -> set[str]:
        return {a.state for a in prometheus.alerts(base) if a.name == name
                and a.labels.get("backend") == "rust"}

    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while "firing" not in seen:
            assert time.monotonic() < deadline, f"alert states seen: {seen}"
            seen |= await asyncio.to_thread(state_of, "HighErrorRateCritical")
            await asyncio.sleep(0.2)
        assert "pending" in seen, "the alert never showed as pending before firing"
        app = VrmApp(monitored.console)
        async with app.run_test(size=(120, 40)) as pilot:
            pane = app.query_one(AlertsPane)
            deadline = time.monotonic() + 10
            while "FIRING" not in rendered(pane) or "HighErrorRate" not in rendered(pane):
                assert time.monotonic() < deadline, "the alerts pane never showed the alert"
                await pilot.pause(0.1)
    finally:
        stop.set()
        await load
        httpx.delete(f"{admin}/faults")


def test_without_prometheus_the_tui_says_so(tmp_path: Path) -> None:
    stack = new_stack(tmp_path, VRM_MONITORING="1")
    with pytest.raises(PrometheusUnavailable, match="Prometheus not running"):
        prometheus.alerts(f"http://127.0.0.1:{stack.settings.prometheus_port}")


async def test_history_backfills_from_range_queries(monitored: Stack) -> None:
    """A rate needs two scrapes of the traffic: run alone, the module's first test would ask
    before Prometheus has them, so traffic goes on until the history shows it (bounded)."""
    url = f"http://127.0.0.1:{monitored.settings.prometheus_port}"
    deadline = time.monotonic() + 30
    while True:
        await sample_backends(f"{monitored.proxy}/api/v1/vision/metrics", 50)
        history = await asyncio.to_thread(prometheus.history, url, 2, 10)
        if any(history[b].get("rate") for b in history) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert set(history) == {"rust", "typescript"}
    assert any(history[b].get("rate") for b in history)


def test_validate_checks_targets_and_rules(monitored: Stack) -> None:
    _until(lambda: all(t["health"] == "up"
                       for t in _api(monitored, "targets")["activeTargets"]), what="targets up")
    result = monitored.vrm("validate", "--json", timeout=120)
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    row = rows["Prometheus targets and rules"]
    assert row["result"] == "PASS" and "5 targets up" in row["detail"], row  # parity on


def test_no_local_user_can_stop_monitoring_over_http(monitored: Stack) -> None:
    """Prometheus's lifecycle API is off: `/-/quit` and `/-/reload` are refused, and
    Prometheus keeps running (vrm reloads it with SIGHUP)."""
    base = f"http://127.0.0.1:{monitored.settings.prometheus_port}"
    for path in ("/-/quit", "/-/reload"):
        answer = httpx.post(base + path, timeout=5)
        assert answer.status_code == 403, (path, answer.status_code, answer.text)
    assert httpx.get(base + "/-/ready", timeout=5).status_code == 200
