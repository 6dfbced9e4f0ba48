"""Benchmark: rollback and 10 -> 50 latency on the compose runtime, measured like the local
one (tests/perf/test_rollback_latency.py). Goal: rollback p95 <= 1 s."""

from __future__ import annotations

import asyncio

import pytest

from tests.compose.conftest import compose_stack  # noqa: F401  (the real compose stack)
from tests.perf.test_rollback_latency import RATE, _cli, _measure, _print_table, _row
from tests.support import Stack, steady_stream
from vrm_tui.traffic.split import Split


async def test_compose_rollback_latency(compose_stack: Stack) -> None:  # noqa: F811
    stack = compose_stack
    stop = asyncio.Event()
    url = f"{stack.proxy}/api/v1/vision/metrics"
    rows = []
    for name, before, change in (
            ("compose rollback, in-process", Split(50), lambda: stack.controller.rollback()),
            ("compose rollback, vrm CLI", Split(50), _cli(stack, "rollback")),
            ("compose 10 -> 50, in-process", Split(10),
             lambda: stack.controller.set_split(Split(50)))):
        stop.clear()
        stream = asyncio.create_task(steady_stream(url, RATE, stop))
        await asyncio.sleep(0.3)
        trials = await _measure(stack, before, change)
        stop.set()
        rows.append(_row(name, trials, await stream))
    _print_table(f"Split change latency on the compose runtime ({RATE} req/s, ms; goal: "
                 "rollback p95 <= 1000)", rows)
    for row in rows:
        assert row["failed"] == 0 and row["old after return"] == 0, row


pytestmark = pytest.mark.perf
