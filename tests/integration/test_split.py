"""Split accuracy and the 0/100 semantics, counted from real responses through real nginx."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.support import Stack, sample_backends
from vrm_tui.core import services
from vrm_tui.core.split import Split

REQUESTS = 1000


@pytest.mark.parametrize("weight", [0, 1, 10, 33, 50, 90, 100])
async def test_split_matches_weight(shared_stack: Stack, weight: int) -> None:
    result = shared_stack.controller.set_split(Split(weight))
    assert result.verified and result.after == Split(weight)
    seen = await sample_backends(f"{shared_stack.proxy}/api/v1/vision/metrics", REQUESTS)
    assert sum(seen.values()) == REQUESTS
    assert set(seen) <= {"rust", "typescript"}, seen
    share = 100 * seen["rust"] / REQUESTS
    assert abs(share - weight) <= 2, f"rust got {share:.1f}% at weight {weight}: {seen}"
    if weight == 0:
        assert seen["rust"] == 0
    if weight == 100:
        assert seen["typescript"] == 0


async def test_served_split_is_read_back_from_nginx(shared_stack: Stack) -> None:
    shared_stack.controller.set_split(Split(42))
    served = shared_stack.controller.served()
    assert served.split == Split(42)
    status = shared_stack.vrm("status", "--json")
    assert '"rust": 42' in status.stdout, status.stdout + status.stderr


async def test_pinned_routes_ignore_the_split(shared_stack: Stack) -> None:
    shared_stack.controller.set_split(Split(0))
    for backend in ("rust", "typescript"):
        seen = await sample_backends(f"{shared_stack.proxy}/api/v1/vision/{backend}/metrics", 50)
        assert seen == {backend: 50}


async def test_at_100_typescript_serves_only_when_rust_is_down(stack: Stack) -> None:
    stack.controller.set_split(Split(100))
    url = f"{stack.proxy}/api/v1/vision/metrics"
    assert await sample_backends(url, 200) == {"rust": 200}
    rust = stack.runtime.services()[1]
    assert rust.name == services.RUST and rust.pid
    stack.runtime.stop_service(services.RUST)
    seen = await sample_backends(url, 200)
    assert seen == {"typescript": 200}, "the backup must take every request while rust is down"
    stack.up()  # restarts rust
    # rust (the canary, max_fails=0) is tried first again as soon as it answers.
    deadline = time.monotonic() + 15
    while (seen := await sample_backends(url, 50)) != {"rust": 50}:
        assert time.monotonic() < deadline, f"rust did not take traffic back: {seen}"
        await asyncio.sleep(0.2)


def test_proxy_routes_and_headers(shared_stack: Stack) -> None:
    with httpx.Client(base_url=shared_stack.proxy) as client:
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "healthy"
        assert "server" not in health.headers or "nginx/" not in health.headers["server"]
        for header in ("x-content-type-options", "x-frame-options", "referrer-policy"):
            assert header in health.headers
        assert client.get("/metrics").text.count("vision_manager_tasks_total") >= 1
        comparison = client.get("/performance-comparison")
        assert comparison.status_code == 404 and "vrm benchmark" in comparison.json()["error"]
        processed = client.post("/api/v1/vision/process",
                                json={"model": "yolov8", "image_size": [640, 480]})
        assert processed.status_code == 200
        assert processed.json()["backend"] == processed.headers["x-vrm-backend"]
