"""Benchmark: rollback and 10 -> 50 latency on the compose runtime, measured like the local
one (tests/perf/test_rollback_latency.py). Goal: rollback p95 <= 1 s."""

from __future__ import annotations

import pytest

from tests.compose.conftest import compose_stack  # noqa: F401  (the real compose stack)
from tests.conftest import stack  # noqa: F401  (the real local stack)
from tests.perf.test_rollback_latency import RATE, cases, run_cases
from tests.support import Stack


async def test_compose_rollback_latency(compose_stack: Stack) -> None:  # noqa: F811
    await run_cases(compose_stack, f"Split change latency on the compose runtime ({RATE} "
                    "req/s, ms; goal: rollback p95 <= 1000; zero failed)",
                    cases(compose_stack, "compose "))


pytestmark = pytest.mark.perf


async def test_compose_cli_rollback_as_fast_as_local(compose_stack: Stack,  # noqa: F811
                                                     stack: Stack) -> None:  # noqa: F811
    """The same `vrm rollback` on both runtimes in one run: under compose the CLI reaches
    nginx's status listener directly (no Docker API call), so its p95 is within 1.5x."""
    import asyncio

    from tests.perf.test_rollback_latency import _cli, _measure, _print_table, _row
    from tests.support import steady_stream
    from vrm_tui.core.split import Split

    rows = []
    for name, target in (("local", stack), ("compose", compose_stack)):
        stop = asyncio.Event()
        stream = asyncio.create_task(steady_stream(f"{target.proxy}/api/v1/vision/metrics",
                                                   RATE, stop))
        await asyncio.sleep(0.3)
        trials = await _measure(target, Split(50), _cli(target, "rollback"))
        stop.set()
        rows.append(_row(f"{name}: rollback, vrm CLI", trials, await stream))
    local, compose = rows
    ratio = float(compose["call p95"]) / max(1.0, float(local["call p95"]))  # type: ignore[arg-type]
    _print_table(f"vrm rollback, compose vs local in one run ({RATE} req/s, ms; goal: compose "
                 f"call p95 <= 1.5x local): ratio {ratio:.2f}", rows)
    assert ratio <= 1.5, rows
