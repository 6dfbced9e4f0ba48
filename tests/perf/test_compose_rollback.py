"""Benchmark: rollback and 10 -> 50 latency on the compose runtime, measured like the local
one (tests/perf/test_rollback_latency.py). Goal: rollback p95 <= 1 s."""

from __future__ import annotations

import pytest

from tests.compose.conftest import compose_stack  # noqa: F401  (the real compose stack)
from tests.perf.test_rollback_latency import RATE, cases, run_cases
from tests.support import Stack


async def test_compose_rollback_latency(compose_stack: Stack) -> None:  # noqa: F811
    await run_cases(compose_stack, f"Split change latency on the compose runtime ({RATE} "
                    "req/s, ms; goal: rollback p95 <= 1000; zero failed)",
                    cases(compose_stack, "compose "))


pytestmark = pytest.mark.perf
