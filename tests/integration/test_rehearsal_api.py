"""The rehearsal backend as a real process: the DESIGN backend API and fault injection."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from vrm_tui.rehearsal.server import TIMER_SLACK_MS
from vrm_tui.system.procs import free_ports


@dataclass
class Running:
    url: str
    admin: str
    proc: subprocess.Popen[bytes]


def _start(flavour: str, faults: bool = True, vram: float = 20.0) -> Running:
    port, admin = free_ports(2)
    command = [sys.executable, "-m", "vrm_tui.rehearsal", "--flavour", flavour, "--port",
               str(port), "--max-vram-gb", str(vram), "--seed", "3"]
    if faults:
        command += ["--faults", "--admin-port", str(admin)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(url + "/health", timeout=0.5).status_code == 200:
                return Running(url, f"http://127.0.0.1:{admin}", proc)
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "backend did not start"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def rust() -> Iterator[Running]:
    running = _start("rust", vram=8.0)
    yield running
    running.proc.terminate()
    running.proc.wait(10)


def test_every_response_names_the_backend(rust: Running) -> None:
    with httpx.Client(base_url=rust.url) as client:
        for response in (client.get("/health"), client.get("/metrics"),
                         client.get("/api/v1/vision/metrics"), client.get("/no/such/path"),
                         client.post("/api/v1/vision/process", content=b"not json")):
            assert response.headers["X-VRM-Backend"] == "rust", response.url
        health = client.get("/health").json()
        assert (health["status"], health["backend"]) == ("healthy", "rust")
        assert client.get("/api/v1/vision/metrics").json()["backend"] == "rust"


def test_process_loads_models_under_the_vram_limit(rust: Running) -> None:
    with httpx.Client(base_url=rust.url) as client:
        first = client.post("/api/v1/vision/process",
                            json={"model": "sam-vit-h", "image_size": [1024, 1024]})
        assert first.status_code == 200 and first.json()["model_cache"] == "loaded"
        again = client.post("/api/v1/vision/process",
                            json={"model": "sam-vit-h", "image_size": "640x480"})
        assert again.json()["model_cache"] == "hit"
        evicting = client.post("/api/v1/vision/process", json={"model": "detr"})
        assert evicting.json()["evicted"] == ["sam-vit-h"]
        summary = client.get("/api/v1/vision/metrics").json()
        assert summary["vram_used_gb"] <= summary["max_vram_gb"] == 8.0
        bad = client.post("/api/v1/vision/process", json={"model": "gpt-9"})
        assert bad.status_code == 400 and "available" in bad.json()["error"]
        bad_size = client.post("/api/v1/vision/process",
                               json={"model": "detr", "image_size": [0, 10]})
        assert bad_size.status_code == 400 and "image_size" in bad_size.json()["error"]
        metrics = client.get("/metrics").text
    for name in ("vision_manager_task_duration_seconds_bucket", "vision_manager_tasks_total",
                 "vision_manager_vram_used_gb", "vision_manager_models_loaded"):
        assert f'{name}{{backend="rust"' in metrics or f"{name}{{" in metrics, name
    assert 'vision_manager_tasks_total{backend="rust",status="success"} 3.0' in metrics


def test_faults_are_switched_at_run_time(rust: Running) -> None:
    with httpx.Client(base_url=rust.url) as client, httpx.Client(base_url=rust.admin) as admin:
        try:
            assert admin.post("/faults", json={"error_rate": 1.0}).status_code == 200
            assert client.get("/api/v1/vision/metrics").status_code == 500
            assert admin.post("/faults", json={"error_rate": 0, "unhealthy": True}).is_success
            assert client.get("/health").status_code == 503
            admin.post("/faults", json={"unhealthy": False, "latency_ms": 300})
            started = time.perf_counter()
            client.get("/health")
            # the server sleeps TIMER_SLACK_MS less than asked, for the event loop's wake-up
            assert time.perf_counter() - started >= 0.3 - TIMER_SLACK_MS / 1000
            admin.post("/faults", json={"latency_ms": 0, "hang": True})
            with pytest.raises(httpx.ReadTimeout):
                client.get("/health", timeout=0.5)
            assert admin.post("/faults", json={"bogus": 1}).status_code == 400
        finally:
            admin.delete("/faults")
        assert client.get("/health").status_code == 200


def test_admin_endpoint_exists_only_with_faults_and_on_loopback() -> None:
    plain = _start("typescript", faults=False)
    try:
        assert httpx.get(plain.url + "/faults").status_code == 404
        with pytest.raises(httpx.ConnectError):
            httpx.get(plain.admin + "/faults", timeout=1)
    finally:
        plain.proc.terminate()
        plain.proc.wait(10)
    faulty = _start("typescript")
    try:
        port = int(faulty.admin.rsplit(":", 1)[1])
        assert _listening_addresses(port) == {"127.0.0.1"}
    finally:
        faulty.proc.terminate()
        faulty.proc.wait(10)


def _listening_addresses(port: int) -> set[str]:
    """Addresses listening on `port`, from /proc/net/tcp{,6} (state 0A is LISTEN)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:
                found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0))
                          if len(address) == 8 else address)
    return found


def test_answers_follow_the_request_and_divergence_switches_at_run_time(rust: Running) -> None:
    body = {"model": "yolov8", "image_size": [640, 480], "frame": 7}
    with httpx.Client(base_url=rust.url) as client, httpx.Client(base_url=rust.admin) as admin:
        first, again = (client.post("/api/v1/vision/process", json=body).json() for _ in "ab")
        labels = [d["label"] for d in first["result"]["detections"]]
        assert labels == [d["label"] for d in again["result"]["detections"]]
        assert first["request_id"] != again["request_id"]
        try:
            assert admin.post("/faults", json={"divergence_rate": 1.0,
                                               "divergence_path": "status"}).is_success
            assert client.post("/api/v1/vision/process", json=body).status_code == 422
            assert admin.get("/faults").json()["divergence_path"] == "status"
            assert admin.post("/faults", json={"divergence_path": "colour"}).status_code == 400
        finally:
            admin.delete("/faults")
        assert client.post("/api/v1/vision/process", json=body).status_code == 200
        summary = client.get("/api/v1/vision/metrics").json()
        assert summary["api_version"] == "v1" and {"name": "yolov8", "task": "detect"} in \
            summary["models"]


def test_faults_answer_during_a_hang_and_crash_still_works() -> None:
    doomed = _start("rust")
    try:
        assert httpx.post(doomed.admin + "/faults", json={"hang": True}).is_success
        with pytest.raises(httpx.ReadTimeout):  # a request now waits on the hang
            httpx.get(doomed.url + "/health", timeout=0.5)
        state = httpx.get(doomed.admin + "/faults")
        assert state.status_code == 200 and state.json()["hang"] is True
        assert httpx.post(doomed.admin + "/faults", json={"crash": True}).status_code == 200
        assert doomed.proc.wait(10) != 0
    finally:
        if doomed.proc.poll() is None:
            doomed.proc.kill()
            doomed.proc.wait(10)


def test_crash_fault_ends_the_process() -> None:
    doomed = _start("rust")
    httpx.post(doomed.admin + "/faults", json={"crash": True})
    assert doomed.proc.wait(10) != 0


def test_the_fault_ports_can_be_set(tmp_path: Path) -> None:
    """Issue 22: the rehearsal backends' admin (fault) ports were random; an operator who
    practises with scripts sets them (REHEARSAL_RUST_ADMIN_PORT, REHEARSAL_TS_ADMIN_PORT)."""
    from tests.support import new_stack
    from vrm_tui.core import services

    rust_admin, ts_admin = free_ports(2)
    stack = new_stack(tmp_path, REHEARSAL_RUST_ADMIN_PORT=str(rust_admin),
                      REHEARSAL_TS_ADMIN_PORT=str(ts_admin))
    stack.up()
    try:
        assert stack.runtime.admin_url(services.RUST) == f"http://127.0.0.1:{rust_admin}"
        assert stack.runtime.admin_url(services.TYPESCRIPT) == f"http://127.0.0.1:{ts_admin}"
        assert httpx.get(f"http://127.0.0.1:{rust_admin}/faults", timeout=5).is_success
    finally:
        stack.down()
    bad = stack.vrm("status", REHEARSAL_RUST_ADMIN_PORT="70000")
    assert bad.returncode == 2 and "REHEARSAL_RUST_ADMIN_PORT" in bad.stderr, bad.stderr
