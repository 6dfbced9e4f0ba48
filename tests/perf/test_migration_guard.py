"""Benchmark: how fast the migration guard's gates roll back a fault, what clients pay for it,
and how often they roll back a healthy rust.

Each trial runs a migration step with the real runner against a real stack, injects a fault
on rust with the rehearsal backend's fault endpoint at a fixed time into the bake, and times
from the injection to the verified automatic rollback. Client failures are the requests of
the steady stream that did not get a 200. Trials and bake lengths can be cut for a quick look
(`VRM_PERF_TRIALS`, `VRM_PERF_HEALTHY_BAKES`, `VRM_PERF_HEALTHY_BAKE_S`); the note in the
project's closing notes says which were used.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Sent, Stack, new_stack, steady_stream
from vrm_tui.core import services
from vrm_tui.core.split import Split
from vrm_tui.migrate.plan import load
from vrm_tui.migrate.runner import Runner
from vrm_tui.migrate.state import MigrationState

pytestmark = [pytest.mark.perf, pytest.mark.timeout(3600)]

TRIALS = int(os.environ.get("VRM_PERF_TRIALS", "10"))
HEALTHY_BAKES = int(os.environ.get("VRM_PERF_HEALTHY_BAKES", "20"))
HEALTHY_BAKE_S = float(os.environ.get("VRM_PERF_HEALTHY_BAKE_S", "60"))
FAULT_AFTER_S = 3.0
BODY = {"model": "resnet50", "image_size": [64, 64]}


async def _stream(stack: Stack, rate: float, stop: asyncio.Event, mixed: bool) -> list[Sent]:
    if not mixed:
        return await steady_stream(f"{stack.proxy}/api/v1/vision/process", rate, stop, "POST",
                                   BODY)
    gets, posts = await asyncio.gather(
        steady_stream(f"{stack.proxy}/api/v1/vision/metrics", rate / 2, stop),
        steady_stream(f"{stack.proxy}/api/v1/vision/process", rate / 2, stop, "POST", BODY))
    return gets + posts


async def _trial(stack: Stack, weight: int, rate: float, fault: dict[str, object] | None,
                 bake: float, mixed: bool = False) -> tuple[float | None, int, str]:
    """One bake; returns (seconds from fault to verified rollback, client failures, phase)."""
    stack.controller.rollback()
    admin = stack.runtime.admin_url(services.RUST)
    stop = asyncio.Event()
    stream = asyncio.create_task(_stream(stack, rate, stop, mixed))
    done = threading.Event()
    # The bake ends when the step is decided: done, rolled back, or paused as inconclusive
    # (rust 100 without a previous step has no typescript to compare latency with).
    runner = Runner(stack.controller, on_update=lambda s, v: done.set()
                    if s.phase in ("paused", "done", "rolled-back", "aborted") else None)
    state = runner.start(load(steps=str(weight), bake=bake, gate_interval=min(10, bake)))
    final: list[MigrationState] = []

    def run_then_signal() -> None:
        final.append(runner.run(state))
        done.set()

    worker = threading.Thread(target=run_then_signal)
    worker.start()
    injected: float | None = None
    try:
        if fault is not None:
            await asyncio.sleep(FAULT_AFTER_S)
            httpx.post(f"{admin}/faults", json=fault)
            injected = time.monotonic()
        await asyncio.to_thread(done.wait, bake + 120)
        ended = time.monotonic()
    finally:
        runner.stop.set()
        worker.join(30)
        httpx.delete(f"{admin}/faults")
        await asyncio.sleep(0.5)
        stop.set()
    sent = await stream
    assert final, "the runner did not finish"
    if final[0].active:  # a paused (inconclusive) bake: end it before the next trial
        runner.abort(final[0], "the benchmark")
    failures = sum(1 for s in sent if s.status != 200)
    rolled = final[0].phase == "rolled-back" and stack.controller.served().split == Split(0)
    took = ended - injected if injected is not None and rolled else None
    return took, failures, final[0].phase


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999) - 1))]


def _print(rows: list[tuple[str, str, str, str]]) -> None:
    print("\n| case | fault -> verified rollback p50 / p95 | client failures p50 / p95 | goal |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


@pytest.fixture(scope="module")
def guard_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The hang case needs an upstream timeout a client will wait out."""
    stack = new_stack(Path(tmp_path_factory.mktemp("guard")), PROXY_UPSTREAM_TIMEOUT="2")
    stack.up()
    yield stack
    stack.down()


async def _case(name: str, goal: str, trials: int,
                run: Callable[[], Awaitable[tuple[float | None, int, str]]],
                rows: list[tuple[str, str, str, str]]) -> None:
    times, failures, missed = [], [], 0
    for _ in range(trials):
        took, failed, _phase = await run()
        failures.append(float(failed))
        if took is None:
            missed += 1
        else:
            times.append(took)
    shown = (f"{statistics.median(times):.1f} / {_pct(times, 0.95):.1f} s" if times
             else "no rollback")
    if missed:
        shown += f" ({missed} of {trials} not rolled back)"
    rows.append((name, shown, f"{statistics.median(failures):.0f} / {_pct(failures, 0.95):.0f}",
                 goal))


async def test_fault_to_rollback(guard_stack: Stack) -> None:
    stack = guard_stack
    rows: list[tuple[str, str, str, str]] = []
    await _case("rust 10%, 50 req/s, rust errors 30%", "p95 <= 10 s, failures 0", TRIALS,
                lambda: _trial(stack, 10, 50, {"error_rate": 0.3}, bake=300), rows)
    await _case("rust 10%, 7 req/s, rust errors 30%", "p95 <= 45 s", TRIALS,
                lambda: _trial(stack, 10, 7, {"error_rate": 0.3}, bake=300), rows)
    await _case("rust 50%, 100 req/s, rust hangs", "p95 <= 5 s, failures 0", TRIALS,
                lambda: _trial(stack, 50, 100, {"hang": True}, bake=300), rows)
    _print(rows)


async def test_false_alarms_on_healthy_bakes(guard_stack: Stack) -> None:
    stack = guard_stack
    alarms = 0
    phases = []
    for index in range(HEALTHY_BAKES):
        weight = (10, 50, 100)[index % 3]
        _took, _failed, phase = await _trial(stack, weight, 100, None, bake=HEALTHY_BAKE_S,
                                             mixed=True)
        phases.append(phase)
        alarms += phase == "rolled-back"
    print(f"\nfalse alarms: {alarms} rollbacks in {HEALTHY_BAKES} healthy bakes of "
          f"{HEALTHY_BAKE_S:g} s on mixed GET/POST traffic at 10/50/100 (goal 0); "
          f"phases {sorted(set(phases))}")
