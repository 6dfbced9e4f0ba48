"""Every command against a backend pair vrm did not write and that follows none of its
conventions: no X-VRM-Backend, no POST /process, no /metrics, no vision_manager_* series.

rust is a stock nginx answering static JSON (`return 200`); typescript is Python's stock
`http.server` serving files from a folder (`health`, `api/v1/vision/metrics`). nginx answers
in well under a millisecond, http.server in about one: rust is genuinely the faster one.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import Stack, new_stack, rendered, sample_backends, steady_stream
from tests.tui.test_app import dashboard, until
from vrm_tui.core import corpus
from vrm_tui.core.split import Split
from vrm_tui.journal import Journal
from vrm_tui.migrate.plan import load
from vrm_tui.migrate.runner import Runner
from vrm_tui.system.procs import free_ports
from vrm_tui.telemetry.health import probe
from vrm_tui.traffic.nginx import nginx_binary
from vrm_tui.tui.widgets.split import SplitPane
from vrm_tui.tui.widgets.vram import VramPane

METRICS = '{"tasks_processed":42,"models":["resnet50"]}'
NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
daemon off;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location = /health {{ return 200 '{{"status":"ok"}}'; }}
        location = /api/v1/vision/metrics {{ return 200 '{metrics}'; }}
        location / {{ return 404; }}
    }}
    # The same server, miswired: it claims to be typescript.
    server {{
        listen 127.0.0.1:{liar};
        default_type application/json;
        add_header X-VRM-Backend typescript always;
        location = /health {{ return 200 '{{"status":"ok"}}'; }}
        location = /api/v1/vision/metrics {{ return 200 '{metrics}'; }}
        location / {{ return 404; }}
    }}
}}
"""


class Foreign:
    """The two stock servers: their base URLs, and a miswired copy of rust."""

    def __init__(self, root: Path) -> None:
        rust_port, liar_port, ts_port = free_ports(3)
        self.rust = f"http://127.0.0.1:{rust_port}"
        self.liar = f"http://127.0.0.1:{liar_port}"
        self.typescript = f"http://127.0.0.1:{ts_port}"
        (root / "nginx").mkdir()
        conf = root / "nginx" / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=root / "nginx", port=rust_port, liar=liar_port,
                                          metrics=METRICS))
        site = root / "site"
        (site / "api" / "v1" / "vision").mkdir(parents=True)
        (site / "health").write_text('{"status":"ok"}')
        (site / "api" / "v1" / "vision" / "metrics").write_text(METRICS)
        self.procs = [
            subprocess.Popen([nginx_binary(), "-c", str(conf), "-p", str(root / "nginx")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen([sys.executable, "-m", "http.server", str(ts_port), "--bind",
                              "127.0.0.1", "--directory", str(site)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        deadline = time.monotonic() + 15
        while not all(probe(f"{url}/health", timeout=0.5).healthy
                      for url in (self.rust, self.liar, self.typescript)):
            assert time.monotonic() < deadline, "the foreign backends did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Foreign]:
    servers = Foreign(tmp_path_factory.mktemp("foreign"))
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def stack(foreign: Foreign, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A running vrm proxy in front of the foreign pair."""
    running = new_stack(tmp_path_factory.mktemp("deploy"), RUST_BACKEND_URL=foreign.rust,
                        TS_BACKEND_URL=foreign.typescript)
    up = running.vrm("up")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield running
    finally:
        running.down()


def _access_log(stack: Stack) -> list[dict[str, object]]:
    lines = stack.runtime.access_log().read_text().splitlines()
    return [json.loads(line) for line in lines]


async def test_deploy_split_status_and_rollback(stack: Stack) -> None:
    deployed = stack.vrm("deploy", "--rust-weight", "30")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    seen = await sample_backends(f"{stack.proxy}/api/v1/vision/metrics", 1000)
    assert set(seen) <= {"rust", "typescript"}, seen  # the proxy named every answer
    assert abs(100 * seen["rust"] / 1000 - 30) <= 2, seen

    status = stack.vrm("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "rust 30%" in status.stdout, status.stdout
    logged = [e for e in _access_log(stack) if e["route"] == "balanced"]
    assert {e["backend"] for e in logged} == {"rust", "typescript"}
    assert {e["backend_says"] for e in logged} == {""}, "they never name themselves"

    rolled = stack.vrm("rollback")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert await sample_backends(f"{stack.proxy}/api/v1/vision/metrics", 200) == {
        "typescript": 200}


def _rows(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str]]:
    return {row["name"]: (row["result"], row["detail"]) for row in json.loads(result.stdout)}


def test_validate_warns_what_they_lack_and_never_fails_them_for_it(
        foreign: Foreign, tmp_path: Path) -> None:
    checked = new_stack(tmp_path, RUST_BACKEND_URL=foreign.rust,
                        TS_BACKEND_URL=foreign.typescript, PROXY_RATE_LIMIT="50",
                        RUST_BACKEND_WEIGHT="30", TS_BACKEND_WEIGHT="70")
    checked.up()
    try:
        result = checked.vrm("validate", "--json", timeout=120)
    finally:
        checked.down()
    assert result.stdout, result.stderr
    rows = _rows(result)
    failed = {name: row for name, row in rows.items() if row[0] == "FAIL"}
    assert result.returncode == 0 and not failed, failed
    assert rows["observed split matches served"][0] == "PASS"
    assert "default" in rows["rust faster than typescript"][1]
    for backend in ("rust", "typescript"):
        assert rows[f"{backend} names itself"] == (
            "WARN", f"{backend}: no X-VRM-Backend of its own: the proxy names it")
        assert rows[f"{backend} VRAM series"] == (
            "WARN", f"{backend}: no vision_manager_vram_used_gb: VRAM gate uses NVML")


async def test_a_backend_naming_itself_wrongly_fails_validate(foreign: Foreign,
                                                             tmp_path: Path) -> None:
    """rust's URL answers as typescript: the proxy still names it rust (by its address),
    logs what it claimed, and validate says the wiring is wrong."""
    miswired = new_stack(tmp_path, RUST_BACKEND_URL=foreign.liar,
                         TS_BACKEND_URL=foreign.typescript, RUST_BACKEND_WEIGHT="100",
                         TS_BACKEND_WEIGHT="0")
    miswired.up()
    try:
        seen = await sample_backends(f"{miswired.proxy}/api/v1/vision/metrics", 20)
        assert seen == {"rust": 20}, "the client sees the proxy's name, never the claim"
        claims = {(e["backend"], e["backend_says"]) for e in _access_log(miswired)
                  if e["route"] == "balanced"}
        assert claims == {("rust", "typescript")}
        result = miswired.vrm("validate", "--json", timeout=120)
    finally:
        miswired.down()
    assert result.stdout, result.stderr
    verdict, detail = _rows(result)["rust names itself"]
    assert result.returncode == 1 and verdict == "FAIL"
    assert "answers as typescript: backends wired to the wrong ports" in detail


def _corpus_file(folder: Path) -> Path:
    path = folder / "requests.yaml"
    path.write_text(yaml.safe_dump({"name": "foreign", "requests": [
        {"method": "GET", "path": "/api/v1/vision/metrics", "weight": 3},
        {"method": "GET", "path": "/health", "headers": {"X-Probe": "bench"}}]}))
    return path


def test_every_benchmark_mode_sends_the_request_file(stack: Stack, tmp_path: Path) -> None:
    stack.controller.set_split(Split(50))
    before = len(_access_log(stack))
    result = stack.vrm("benchmark", "all", "--requests-file", str(_corpus_file(tmp_path)),
                       "--duration", "0.5", "--concurrency", "4", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = Path(result.stdout.strip().splitlines()[-1].removeprefix("reports in "))
    reports = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    assert set(reports) == {"benchmark", "stress", "compare", "monitor"}
    for mode in ("benchmark", "compare", "monitor"):
        for name, found in reports[mode]["results"].items():
            assert found["requests"] > 0 and found["failed"] == 0, (mode, name, found)
    by_backend = reports["benchmark"]["results"]
    assert set(by_backend["rust"]["by_backend"]) == {"rust"}
    assert set(by_backend["proxy"]["by_backend"]) == {"rust", "typescript"}
    assert all(step["rps"] > 0 for found in reports["stress"]["stress"].values()
               for step in found["steps"])
    sent = {e["uri"] for e in _access_log(stack)[before:]}
    assert {"/api/v1/vision/metrics", "/health"} <= sent


async def test_capture_records_live_requests_to_replay(stack: Stack, tmp_path: Path) -> None:
    stack.controller.set_split(Split(50))
    await sample_backends(f"{stack.proxy}/api/v1/vision/metrics?token=secret", 30)
    out = tmp_path / "captured.yaml"
    captured = stack.vrm("capture", "--sample", "30", "--redact-param", "token", "-o", str(out))
    assert captured.returncode == 0, captured.stderr
    replay = corpus.load(out)
    assert [(r.method, r.path, r.weight) for r in replay.requests] == [
        ("GET", "/api/v1/vision/metrics?token=REDACTED", 30.0)]
    compared = stack.vrm("benchmark", "compare", "--requests-file", str(out), "--duration",
                         "0.5", timeout=60)
    assert compared.returncode == 0, compared.stdout + compared.stderr


def test_a_bad_request_file_is_one_line_and_exit_2(stack: Stack, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("requests:\n  - {method: FETCH, path: /x}\n")
    result = stack.vrm("benchmark", "--requests-file", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"vrm: {bad}: requests[0].method: expected one of GET, "
                                     "HEAD, POST, PUT, PATCH, DELETE, OPTIONS, got 'FETCH'")


async def test_a_three_step_migration_reads_the_access_log(stack: Stack) -> None:
    stop = asyncio.Event()
    stream = asyncio.create_task(steady_stream(f"{stack.proxy}/api/v1/vision/metrics", 250,
                                               stop))
    try:
        runner = Runner(stack.controller)
        state = runner.start(load(steps="10,50,100", bake=3, gate_interval=1))
        state = await asyncio.to_thread(runner.run, state)
    finally:
        stop.set()
        await stream
    assert state.phase == "done", state.reason
    assert stack.controller.served().split == Split(100)
    details = [r.detail for r in Journal(stack.settings.paths.journal).read()
               if r.action == "migration" and "step passed" in r.detail]
    assert len(details) == 3, details
    assert all("rust VRAM n/a: no /metrics: VRAM from NVML only" in d for d in details), details


async def test_the_dashboard_shows_the_split_and_says_vram_is_not_reported(
        stack: Stack) -> None:
    async with dashboard(stack, 30) as (app, pilot):
        await until(pilot, lambda: "rust  30%" in rendered(app.query_one(SplitPane))
                    or "rust 30%" in rendered(app.query_one(SplitPane)))
        vram = app.query_one(VramPane)
        await until(pilot, lambda: "VRAM from NVML only" in rendered(vram), timeout=10)


def test_a_benchmark_never_repeats_a_request_not_declared_safe(stack: Stack,
                                                                tmp_path: Path) -> None:
    """A POST the team has not declared safe to repeat (configs/routes.yaml) is never sent
    hundreds of times by a load test against its real backends."""
    path = tmp_path / "posts.yaml"
    path.write_text(yaml.safe_dump({"name": "uploads", "requests": [
        {"name": "upload", "method": "POST", "path": "/api/v1/vision/process",
         "body": {"image": "x"}}]}))
    before = len(_access_log(stack))
    result = stack.vrm("benchmark", "--requests-file", str(path), "--duration", "0.5")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not declared safe to repeat" in result.stderr and "routes.yaml" in result.stderr
    assert len(_access_log(stack)) == before, "nothing was sent"
