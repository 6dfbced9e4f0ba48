"""A hang on rust, against the real stack: the latency pane says so within 5 s.

nginx logs a request only when it ends, so a hang makes the access log go quiet; the pane
must read that as hanging (word and symbol), never as an improving error rate.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx

from tests.support import Stack, rendered, steady_stream
from tests.tui.test_app import dashboard, until
from vrm_tui.core import services
from vrm_tui.tui.widgets.health import HealthPane
from vrm_tui.tui.widgets.latency import LatencyPane


def _rust_line(pane: LatencyPane) -> str:
    return next((ln for ln in rendered(pane).splitlines() if ln.startswith("rust")), "")


def _in_flight(pane: LatencyPane, backend: str) -> int:
    """The requests nginx has waiting on `backend`, as its error line shows them (-1: not
    shown)."""
    lines = rendered(pane).splitlines()
    head = next((i for i, ln in enumerate(lines) if ln.startswith(backend)), len(lines))
    found = re.search(r"[·+] (\d+) in flight", "".join(lines[head + 1:head + 2]))
    return int(found.group(1)) if found else -1


async def test_a_hang_on_rust_shows_as_hanging_within_five_seconds(stack: Stack) -> None:
    admin = stack.runtime.admin_url(services.RUST)
    stop = asyncio.Event()
    load = asyncio.create_task(steady_stream(f"{stack.proxy}/api/v1/vision/metrics", 40, stop,
                                             limit_s=60))
    try:
        async with dashboard(stack, 50) as (app, pilot):
            pane = app.query_one(LatencyPane)
            await until(pilot, lambda: "● ok" in _rust_line(pane), timeout=10)
            httpx.post(f"{admin}/faults", json={"hang": True}, timeout=2)
            hung = time.perf_counter()
            typescript_words: set[str] = set()

            def rust_hangs() -> bool:  # issue 22 item 3: typescript was called hanging too
                typescript_words.add(pane.verdicts["typescript"].word)
                return "⧖ hanging" in _rust_line(pane)

            await until(pilot, rust_hangs, timeout=5)
            assert time.perf_counter() - hung <= 5.0
            assert pane.verdicts["rust"].word == "hanging"
            assert "HANGING" in rendered(pane)
            assert "improv" not in rendered(pane)
            # rust's own requests wait (its count on its line); typescript's are answered.
            await until(pilot, lambda: _in_flight(pane, "rust") > 0)
            assert "hanging" not in typescript_words, typescript_words
            assert 0 <= _in_flight(pane, "typescript") <= 1, rendered(pane)
            health = app.query_one(HealthPane)
            await until(pilot, lambda: health.states().get(services.RUST) == "hanging")
            assert "⧖ hanging" in rendered(health)
            assert re.search(r"rust: no answer within 1s; \d+ waiting", rendered(health))
    finally:
        httpx.delete(f"{admin}/faults", timeout=2)
        stop.set()
        await load


def test_the_proxys_probe_has_a_time(stack: Stack) -> None:
    """Issue 22: the Health pane's probe column was always `-` for the proxy: its probe (the
    served-split read) is timed like the backends'."""
    proxy = next(s for s in stack.console.status().services if s.state.name == services.PROXY)
    assert proxy.probe is not None and proxy.probe.latency_ms is not None
    assert proxy.health.word == "up"
