"""Benchmark: how long until a change is really live, under a steady request stream.

For each trial the clock starts when the change is asked for (the controller call, or the
`vrm` process being spawned) and stops at the start of the last request answered by the
old generation: after that moment no request reached the old split. Also reported: how long
the call itself took (it returns only once the change is verified) and whether any request
was answered by the old generation after the call returned (that would be a lie).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.support import Sent, Stack, clean_env, steady_stream
from vrm_tui.core.split import Split

RATE = 300
TRIALS = 20


@dataclass
class Trial:
    asked: float
    returned: float
    old_generation: int


def _cli(stack: Stack, *args: str) -> Callable[[], None]:
    def run() -> None:
        subprocess.run([sys.executable, "-m", "vrm_tui.cli", *args], cwd=stack.deploy_dir,
                       env=clean_env(), check=True, capture_output=True, timeout=60)
    return run


async def _measure(stack: Stack, before: Split, change: Callable[[], object]) -> list[Trial]:
    trials = []
    for _ in range(TRIALS):
        stack.controller.set_split(before)
        old = stack.controller.served().generation
        await asyncio.sleep(0.15)  # traffic on the old generation before the change
        asked = time.perf_counter()
        await asyncio.to_thread(change)
        trials.append(Trial(asked, time.perf_counter(), old))
        await asyncio.sleep(0.15)
    return trials


def _row(name: str, trials: list[Trial], sent: list[Sent]) -> dict[str, object]:
    live, calls, lies = [], [], 0
    for trial in trials:
        old = [s.start for s in sent if s.generation == trial.old_generation]
        last_old = max(old, default=trial.asked)
        live.append(max(0.0, last_old - trial.asked) * 1000)
        calls.append((trial.returned - trial.asked) * 1000)
        lies += sum(1 for s in sent if s.generation == trial.old_generation
                    and s.start > trial.returned)
    failed = sum(1 for s in sent if s.error or s.status != 200)
    return {"case": name, "trials": len(trials), "live p50": _pct(live, 50),
            "live p95": _pct(live, 95), "call p50": _pct(calls, 50), "call p95": _pct(calls, 95),
            "requests": len(sent), "failed": failed, "old after return": lies}


def _pct(values: list[float], q: int) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


Case = tuple[str, Split, Callable[[], object]]


def cases(stack: Stack, prefix: str = "") -> list[Case]:
    """Rollback from 50 and a 10 -> 50 change, each in-process and through the CLI."""
    return [
        (f"{prefix}rollback, in-process", Split(50), lambda: stack.controller.rollback()),
        (f"{prefix}rollback, vrm CLI", Split(50), _cli(stack, "rollback")),
        (f"{prefix}10 -> 50, in-process", Split(10),
         lambda: stack.controller.set_split(Split(50))),
        (f"{prefix}10 -> 50, vrm CLI", Split(10), _cli(stack, "deploy", "--rust-weight", "50")),
    ]


async def run_cases(stack: Stack, title: str, chosen: list[Case]) -> None:
    """Measure each case under its own steady stream, print the table, check nothing lied."""
    stop = asyncio.Event()
    url = f"{stack.proxy}/api/v1/vision/metrics"
    rows = []
    for name, before, change in chosen:
        stop.clear()
        stream = asyncio.create_task(steady_stream(url, RATE, stop))
        await asyncio.sleep(0.3)
        trials = await _measure(stack, before, change)
        stop.set()
        rows.append(_row(name, trials, await stream))
    _print_table(title, rows)
    for row in rows:
        assert row["failed"] == 0 and row["old after return"] == 0, row


async def test_rollback_and_change_latency(stack: Stack) -> None:
    await run_cases(stack, f"Split change latency under a steady stream ({RATE} req/s, ms; "
                    "goal: rollback live p95 <= 150 in-process, <= 500 from the CLI; "
                    "zero failed)", cases(stack))


def _print_table(title: str, rows: list[dict[str, object]]) -> None:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print(f"\n{title}")
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


pytestmark = pytest.mark.perf
