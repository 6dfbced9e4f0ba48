"""The CLI and the seed's wrapper scripts, end to end against a real stack."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO, Stack, clean_env, new_stack, sample_backends
from vrm_tui.core import services as names
from vrm_tui.core.split import Split
from vrm_tui.status import classify
from vrm_tui.system.procs import free_ports
from vrm_tui.telemetry.health import probe


def _script(stack: Stack, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "scripts" / name), *args], capture_output=True, text=True,
                          timeout=120, check=False,
                          env=clean_env(VRM_DEPLOY_DIR=str(stack.deploy_dir)))


def test_seed_wrapper_syntax_drives_vrm(tmp_path: Path) -> None:
    stack = new_stack(tmp_path)
    try:
        deployed = _script(stack, "deploy.sh", "--rust-weight", "25", "deploy")
        assert deployed.returncode == 0, deployed.stderr
        assert stack.controller.served().split == Split(25)
        status = _script(stack, "deploy.sh", "status")
        assert status.returncode == 0 and "rust 25%" in status.stdout
        logs = _script(stack, "deploy.sh", "logs", "vision-proxy")
        assert logs.returncode == 0 and "proxy-error.log" in logs.stdout
        assert _script(stack, "deploy.sh", "rollback").returncode == 0
        assert stack.controller.served().split == Split(0)
        # The other wrappers pass the seed's options through (checked here by refusals).
        for name, args, says in (
                ("deploy.sh", ["migrate"], "vrm migrate --yes"),
                ("benchmark.sh", ["--requests", "0", "benchmark"], "--requests=0"),
                ("validate.sh", ["--host", "no host"], "--host='no host'")):
            result = _script(stack, name, *args)
            assert result.returncode == 2 and says in result.stderr, (name, result.stderr)
        assert _script(stack, "deploy.sh", "--rust-weight", "abc", "deploy").returncode == 2
        assert _script(stack, "deploy.sh", "frobnicate").returncode == 2
    finally:
        stack.down()


def test_setup_writes_env_with_a_random_password(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "vrm_tui.cli", "setup"], cwd=tmp_path,
                            env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    env = (tmp_path / ".env").read_text()
    password = next(ln.split("=", 1)[1] for ln in env.splitlines()
                    if ln.startswith("GRAFANA_PASSWORD="))
    assert len(password) >= 16 and password != "admin123"
    assert "RUST_BACKEND_WEIGHT=10" in env and "TS_BACKEND_WEIGHT=90" in env
    assert (tmp_path / ".vrm").is_dir() and "nginx" in result.stdout
    again = subprocess.run([sys.executable, "-m", "vrm_tui.cli", "setup"], cwd=tmp_path,
                           env=clean_env(), capture_output=True, text=True, timeout=60)
    assert "kept existing" in again.stdout and (tmp_path / ".env").read_text() == env


def test_logs_print_and_exit_and_refuse_unknown_services(stack: Stack) -> None:
    result = stack.vrm("logs", "vision-manager-rust", "-n", "5")
    assert result.returncode == 0 and "rehearsal backend on 127.0.0.1" in result.stdout
    every = stack.vrm("logs", "-n", "2")
    assert every.returncode == 0 and every.stdout.count("==> ") == 3
    assert stack.vrm("logs", "nginx").returncode == 2
    assert stack.vrm("logs", "-f").returncode == 2, "-f needs one service"


def test_status_json_contract(stack: Stack) -> None:
    data = json.loads(stack.vrm("status", "--json").stdout)
    assert data["split"] == {"rust": 10, "typescript": 90} and data["runtime"] == "local"
    names = [s["name"] for s in data["services"]]
    assert names == ["vision-proxy", "vision-manager-rust", "vision-manager-typescript"]
    assert all({"name", "state", "healthy"} <= set(s) for s in data["services"])
    assert all(s["healthy"] for s in data["services"])


@pytest.fixture
def external_backends() -> Iterator[tuple[str, str]]:
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    for flavour, port in zip(("rust", "typescript"), free_ports(2), strict=True):
        procs.append(subprocess.Popen([sys.executable, "-m", "vrm_tui.rehearsal", "--flavour",
                                       flavour, "--port", str(port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        urls.append(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 15
    while not all(probe(f"{url}/health", timeout=0.5).healthy for url in urls):
        assert time.monotonic() < deadline, "external backends did not start"
        time.sleep(0.05)
    yield urls[0], urls[1]
    for proc in procs:
        proc.terminate()
        proc.wait(10)


async def test_external_backends_run_only_nginx(tmp_path: Path,
                                                external_backends: tuple[str, str]) -> None:
    rust_url, ts_url = external_backends
    stack = new_stack(tmp_path, RUST_BACKEND_URL=rust_url, TS_BACKEND_URL=ts_url)
    try:
        result = stack.vrm("deploy", "--rust-weight", "50", timeout=60)
        assert result.returncode == 0, result.stderr
        assert "started vision-proxy" in result.stdout and "manager" not in result.stdout
        data = json.loads(stack.vrm("status", "--json").stdout)
        states = {s["name"]: (s["state"], s["healthy"]) for s in data["services"]}
        assert states["vision-manager-rust"] == ("external", True)
        seen = await sample_backends(f"{stack.proxy}/api/v1/vision/metrics", 200)
        assert abs(seen["rust"] - 100) <= 4 and sum(seen.values()) == 200
    finally:
        stack.down()


def test_benchmark_refuses_a_stopped_stack_whatever_the_runtime_setting(tmp_path: Path) -> None:
    """The guard once compared `settings.runtime == "local"`, empty when detected."""
    stack = new_stack(tmp_path)
    result = stack.vrm("benchmark", "compare", "--duration", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the stack is not running" in result.stderr
    assert not (tmp_path / "results").exists()


def test_status_reads_health_from_the_tuis_classification(stack: Stack) -> None:
    """`vrm status` once said `exited - unknown` where the TUI said `✗ down`."""
    stack.runtime.stop_service(names.RUST)
    result = stack.vrm("status")
    rust = next(ln for ln in result.stdout.splitlines() if ln.startswith(names.RUST))
    assert "✗ down" in rust, result.stdout
    data = json.loads(stack.vrm("status", "--json").stdout)
    health = {s["name"]: s["health"] for s in data["services"]}
    state = next(s for s in stack.runtime.services() if s.name == names.RUST)
    assert health[names.RUST] == classify(state, None).word == "down"
    assert health[names.TYPESCRIPT] == "up"
