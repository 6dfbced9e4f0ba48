"""A hung canary never holds a client much longer than typescript would (issue 20).

Real nginx with the Lua module and real rehearsal backends: rust attempts in the rust-first
pool get max(2 s, 4 x typescript p99) instead of PROXY_UPSTREAM_TIMEOUT (30 s); requests safe
to repeat are retried on typescript; after a rollback no client is left waiting on rust.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.support import Sent, Stack, sample_backends, steady_stream
from vrm_tui.core import services
from vrm_tui.core.paths import StateDir
from vrm_tui.core.split import Split
from vrm_tui.telemetry import canary
from vrm_tui.traffic import live, nginx

pytestmark = pytest.mark.skipif(not live.modules_installed(),
                                reason="LUA MODULE MISSING: scripts/test.sh installs "
                                       "libnginx-mod-http-lua")


def test_the_timeout_is_derived_from_typescript() -> None:
    assert canary.derive(None, 30) == 30_000, "no basis: the upstream timeout"
    assert canary.derive(3.0, 30) == canary.FLOOR_MS
    assert canary.derive(1_500.0, 30) == 6_000
    assert canary.derive(20_000.0, 30) == 30_000, "never above the upstream timeout"


def test_backends_reached_by_name_keep_nginx_balancing() -> None:
    text = nginx.render_upstream(Split(50), 3, "rust.internal:3001", "ts.internal:3002",
                                 "ab", live.live_split(StateDir(nginx.TEMPLATE.parent / "x")),
                                 30_000, 2_000)
    assert ".balance()" not in text and "canary = {" not in text, "nginx balances them"
    shape = nginx.upstream_shape(text)
    assert (shape.rust_address, shape.upstream_ms, shape.canary_ms) == (
        "rust.internal:3001", 30_000, 2_000)


async def test_a_hung_canary_holds_no_client_after_the_rollback(stack: Stack) -> None:
    await sample_backends(f"{stack.proxy}/api/v1/vision/metrics", 60)  # typescript's p99
    stack.console.set_split(Split(50))
    served = stack.controller.served()
    assert served.canary_ms == canary.FLOOR_MS, served
    assert "canary" in stack.vrm("status").stdout

    admin = stack.runtime.admin_url(services.RUST)
    assert admin is not None
    httpx.post(f"{admin}/faults", json={"hang": True}, timeout=5).raise_for_status()
    stop = asyncio.Event()
    body = {"model": "resnet50", "image_size": [64, 64]}
    streams = [asyncio.create_task(steady_stream(f"{stack.proxy}/api/v1/vision/metrics",
                                                 20, stop)),
               asyncio.create_task(steady_stream(f"{stack.proxy}/api/v1/vision/process",
                                                 20, stop, "POST", body))]
    await asyncio.sleep(3)
    await asyncio.to_thread(stack.controller.rollback)
    rolled_back = time.perf_counter()
    await asyncio.sleep(0.5)
    stop.set()
    sent: list[Sent] = [s for stream in streams for s in await stream]
    httpx.post(f"{admin}/faults", json={"hang": False}, timeout=5)
    assert sent
    waiting = [s for s in sent if s.end - rolled_back > 5]
    assert not waiting, f"{len(waiting)} clients still waiting 5 s after the rollback"
    slowest = max(s.end - s.start for s in sent)
    assert slowest < canary.FLOOR_MS / 1000 + 3, f"a client waited {slowest:.1f} s"
    # Both routes are declared safe to repeat here: every attempt rust hung on was
    # answered by typescript.
    failed = [s for s in sent if s.status != 200]
    assert not failed, failed[:3]
    assert any(s.backend == "typescript" and s.end - s.start > 1.5 for s in sent), \
        "some requests did wait out the canary timeout on rust"


def test_a_fixed_canary_timeout_is_served_and_bad_values_name_the_setting(stack: Stack) -> None:
    stack.configure(PROXY_CANARY_TIMEOUT="3")
    stack.console.set_split(Split(20))
    assert stack.controller.served().canary_ms == 3000
    bad = stack.vrm("status", PROXY_CANARY_TIMEOUT="31")
    assert bad.returncode == 2 and "PROXY_CANARY_TIMEOUT='31'" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr

