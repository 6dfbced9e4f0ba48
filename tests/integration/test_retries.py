"""Users do not pay for the canary: a failing rust is retried on typescript, for GETs and
for POST /api/v1/vision/process when the deployment declares it safe, while every rust
failure still counts in the statistics the gates and panes read."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.support import Stack, steady_stream
from vrm_tui.core import services
from vrm_tui.core.backend import Backend
from vrm_tui.core.split import Split


async def test_rust_failing_every_request_costs_clients_nothing(stack: Stack) -> None:
    stack.controller.set_split(Split(50))
    admin = stack.runtime.admin_url(services.RUST)
    httpx.post(f"{admin}/faults", json={"error_rate": 1.0})
    source = stack.console.traffic_source(backfill=False)
    try:
        stop = asyncio.Event()
        body = {"model": "resnet50", "image_size": [64, 64]}
        posts = asyncio.create_task(steady_stream(
            f"{stack.proxy}/api/v1/vision/process", 50, stop, "POST", body))
        gets = asyncio.create_task(steady_stream(
            f"{stack.proxy}/api/v1/vision/metrics", 50, stop))
        await asyncio.sleep(3)
        stop.set()
        sent = await posts + await gets
    finally:
        httpx.delete(f"{admin}/faults")
    failed = [s for s in sent if s.status != 200]
    assert len(sent) > 200 and not failed, failed[:3]
    assert {s.backend for s in sent} == {"typescript"}
    time.sleep(0.2)
    rust = source.poll().backends[Backend.RUST]
    # rust, the canary, is never taken out (max_fails=0): every one of its attempts is a
    # counted failure that nginx retried on typescript.
    assert rust.errors >= 50 and rust.errors == rust.retried == rust.requests, \
        "hidden failures still count"


def test_process_retry_is_off_for_backends_vrm_did_not_write(stack: Stack) -> None:
    assert stack.settings.retry_process, "the rehearsal backends declare /process"
    stack.reload_settings(RUST_BACKEND_URL=f"http://127.0.0.1:{stack.settings.rust_port}")
    assert not stack.settings.retry_process
    stack.reload_settings(RUST_BACKEND_URL=f"http://127.0.0.1:{stack.settings.rust_port}",
                          PROXY_RETRY_PROCESS="1")
    assert stack.settings.retry_process


def test_one_declaration_says_what_may_be_repeated(stack: Stack) -> None:
    """configs/routes.yaml beside .env: nginx retries what it declares, for any backends;
    a bad entry is one line naming the file and the entry (exit 2)."""
    own = stack.deploy_dir / "configs" / "routes.yaml"
    own.parent.mkdir(exist_ok=True)
    own.write_text("safe_to_repeat:\n  - POST /api/v1/vision/process\n")
    stack.reload_settings(RUST_BACKEND_URL=f"http://127.0.0.1:{stack.settings.rust_port}")
    assert stack.settings.retry_process
    safe = stack.settings.safe_to_repeat()
    assert safe.allows("GET", "/anything") and safe.allows("post", "/api/v1/vision/process")
    assert not safe.allows("POST", "/api/v1/vision/other")
    own.write_text("safe_to_repeat:\n  - process everything\n")
    bad = stack.vrm("reload")
    assert bad.returncode == 2 and "routes.yaml" in bad.stderr and "process everything" \
        in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    # A rollback does not need the declaration: it still works, and says what is pending.
    rolled = stack.vrm("rollback")
    assert rolled.returncode == 0, rolled.stderr
