"""What the compose runtime renders and asks, without an engine: nginx mirrors to vrm-control
by its fixed address, the status listener admits the host and vrm-control (not the whole
compose network), and the rollback path's `proxy_running` asks nginx, not Docker."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vrm_tui.settings import load
from vrm_tui.stack.compose import CONTROL_HOST, EXPORTER_HOST, ComposeRuntime, host_address
from vrm_tui.traffic.mirror import MirrorState


def _runtime(tmp_path: Path, **env: str) -> ComposeRuntime:
    return ComposeRuntime(load({"VRM_RUNTIME": "compose", **env}, environ={},
                               deploy_dir=tmp_path))


def test_mirror_and_status_listener_admit_only_vrm_control_and_the_host(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path, PARITY_PORT="3311")
    MirrorState(50.0, ("GET /api/v1/vision/metrics",)).save(runtime.settings.paths.parity_state)
    params = runtime.proxy_params()
    control = str(host_address(runtime.subnet, CONTROL_HOST))
    gateway = str(host_address(runtime.subnet, 1))
    assert params.mirror.on and params.mirror.host == control and params.mirror.port == 3311
    assert set(params.split_allow) == {"127.0.0.1", "::1", gateway, control}
    assert set(params.status_allow) == {"127.0.0.1", "::1", gateway, control,
                                        str(host_address(runtime.subnet, EXPORTER_HOST))}
    assert str(runtime.subnet) not in params.status_allow
    environment = runtime.environment()
    assert environment["VRM_CONTROL_ADDRESS"] == control
    assert environment["VRM_DEPLOY_DIR"] == str(tmp_path)


class _Served(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"generation": 7, "rust": 0, "worker_pid": 1}).encode()
        self.send_response(200 if self.path == "/vrm/served" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def status_listener() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Served)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _NoDocker:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the Docker API was asked for {name}")


def test_proxy_running_asks_the_status_listener_not_docker(tmp_path: Path,
                                                           status_listener: int) -> None:
    runtime = _runtime(tmp_path, PROXY_STATUS_PORT=str(status_listener))
    runtime.__dict__["client"] = _NoDocker()  # the cached Docker client, replaced
    assert runtime.proxy_running()
    assert runtime.served().generation == 7


def test_a_guard_in_another_pid_namespace_is_judged_by_its_heartbeat() -> None:
    """vrm-control's guard has its own pid namespace: its pid means nothing in the host's
    /proc, so the heartbeat alone says whether it runs (the host's guard, the other way)."""
    from vrm_tui.migrate.state import MigrationState

    state = MigrationState(plan={"steps": [10], "bake_seconds": 1})
    state.claim()
    assert state.owner_alive()
    state.owner_pid, state.owner_ticks = 7, 12345  # pid 7 of another namespace
    state.owner_ns = "pid:[1]"
    assert state.owner_alive()
    state.owner_ns = None  # recorded by a guard in this namespace (or before owner_ns)
    assert not state.owner_alive()


def test_a_rust_failure_retried_onto_typescript_counts_for_rust_under_compose() -> None:
    """nginx logs the containers' resolved addresses, which vrm's settings do not name:
    the attempt it retried from is still rust's (the migration's gates saw 0/0 without)."""
    from vrm_tui.core.backend import Backend
    from vrm_tui.telemetry.accesslog import parse_request

    line = json.dumps({"msec": 1.0, "route": "balanced", "method": "GET", "status": 200,
                       "uri": "/api/v1/vision/metrics", "backend": "typescript",
                       "upstream_addr": "172.30.49.2:3001, 172.30.49.3:3002",
                       "upstream_status": "500, 200", "upstream_response_time": "0.001, 0.002"})
    request = parse_request(line, {"127.0.0.1:41001": Backend.RUST,
                                   "127.0.0.1:41002": Backend.TYPESCRIPT})
    assert request is not None
    assert [(a.backend, a.status, a.retried) for a in request.attempts] == [
        (Backend.RUST, "500", True), (Backend.TYPESCRIPT, "200", False)]
