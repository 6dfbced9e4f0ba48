"""The gated migration against a real stack with rehearsal backends and real traffic."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from tests.support import Stack, clean_env, steady_stream
from vrm_tui.core import services
from vrm_tui.core.split import Split
from vrm_tui.journal import Journal
from vrm_tui.migrate.plan import load
from vrm_tui.migrate.runner import Runner
from vrm_tui.migrate.state import MigrationState, StateStore

GATE_S = 1.0


@asynccontextmanager
async def traffic(stack: Stack, rate: float = 200) -> AsyncIterator[None]:
    """Steady POST /process traffic through the proxy (errors are not retried for POST)."""
    stop = asyncio.Event()
    body = {"model": "resnet50", "image_size": [64, 64]}
    stream = asyncio.create_task(steady_stream(f"{stack.proxy}/api/v1/vision/process", rate,
                                               stop, "POST", body))
    await asyncio.sleep(0.3)
    try:
        yield
    finally:
        stop.set()
        await stream


def _runner(stack: Stack, on_update: Callable | None = None) -> Runner:
    return Runner(stack.controller, on_update=on_update)


async def _run(runner: Runner, steps: str, bake: float) -> MigrationState:
    state = runner.start(load(steps=steps, bake=bake, gate_interval=GATE_S))
    return await asyncio.to_thread(runner.run, state)


async def test_healthy_backends_migrate_all_the_way(stack: Stack) -> None:
    # 300 req/s: rust gets ~30/s at 10%, so a 3 s bake sees ~90 samples (50 needed).
    async with traffic(stack, rate=300):
        state = await _run(_runner(stack), "10,50,100", bake=3)
    assert state.phase == "done", state.reason
    assert stack.controller.served().split == Split(100)
    details = [r.detail for r in Journal(stack.settings.state_dir / "journal.jsonl").read()
               if r.action == "migration"]
    assert sum("step passed" in d for d in details) == 3
    assert all("rust error rate" in d for d in details if "step passed" in d), details


async def test_errors_at_the_second_step_roll_back_within_a_gate_interval(stack: Stack) -> None:
    admin = stack.runtime.admin_url(services.RUST)
    injected: dict[str, float] = {}

    def inject_at_step_two(state: MigrationState, verdict) -> None:
        if state.step == 1 and state.phase == "baking" and not injected:
            httpx.post(f"{admin}/faults", json={"error_rate": 0.2})
            injected["at"] = time.monotonic()

    # 400 req/s gives ~400 rust attempts per 2 s gate at 50%: enough that a 20% error rate
    # reads above the 15% threshold at the first gate (a miss would be 2.5 sigma away).
    runner = _runner(stack, inject_at_step_two)
    async with traffic(stack, rate=400):
        state = runner.start(load(steps="10,50,100", bake=3, gate_interval=2.0))
        state = await asyncio.to_thread(runner.run, state)
    ended = time.monotonic()
    httpx.delete(f"{admin}/faults")
    assert state.phase == "rolled-back", state.reason
    assert "rust error rate" in state.reason and "fail" in state.reason
    assert ended - injected["at"] <= 2.0 + 1.0, "took longer than one gate interval"
    assert stack.controller.served().split == Split(0)


async def test_too_little_traffic_pauses_as_inconclusive(stack: Stack) -> None:
    runner = _runner(stack)
    paused = threading.Event()
    runner.on_update = lambda state, verdict: paused.set() if state.phase == "paused" else None
    state = runner.start(load(steps="10,50", bake=1.5, gate_interval=0.5))
    worker = threading.Thread(target=runner.run, args=(state,))
    worker.start()
    try:
        assert await asyncio.to_thread(paused.wait, 15), "the migration did not pause"
        saved = StateStore(stack.settings.state_dir).load()
        assert saved.phase == "paused" and "inconclusive" in saved.reason
        assert stack.controller.served().split == Split(10), "a pause keeps the step's split"
    finally:
        StateStore(stack.settings.state_dir).request("abort")
        worker.join(15)
    assert state.phase == "aborted" and stack.controller.served().split == Split(0)


async def test_a_rollback_from_outside_stops_the_migration(stack: Stack) -> None:
    runner = _runner(stack)
    state = runner.start(load(steps="10,50", bake=60, gate_interval=0.5))
    worker = threading.Thread(target=runner.run, args=(state,))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while StateStore(stack.settings.state_dir).load().phase != "baking":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert stack.vrm("rollback").returncode == 0
    finally:
        worker.join(10)
    assert state.phase == "aborted" and "changed outside the migration" in state.reason


async def test_killed_mid_step_then_resumed_continues_from_the_saved_state(stack: Stack) -> None:
    store = StateStore(stack.settings.state_dir)
    async with traffic(stack):
        proc = subprocess.Popen([sys.executable, "-m", "vrm_tui.cli", "migrate", "--steps",
                                 "10,50", "--bake", "4", "--gate-interval", "0.5", "--yes"],
                                cwd=stack.deploy_dir, env=clean_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not ((s := store.load()) and s.step == 1 and s.phase == "baking"):
            assert time.monotonic() < deadline and proc.poll() is None, "never reached step 2"
            await asyncio.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        cut = store.load()
        assert cut.active and not cut.owner_alive() and cut.step == 1
        again = stack.vrm("migrate", "--yes", "--steps", "10,50")
        assert again.returncode == 1 and "was cut off" in again.stderr
        resumed = await asyncio.to_thread(stack.vrm, "migrate", "resume", timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = store.load()
    assert final.phase == "done" and final.id == cut.id
    assert stack.controller.served().split == Split(50)
    records = [r for r in Journal(stack.settings.state_dir / "journal.jsonl").read()
               if r.action == "migration"]
    assert any("resumed" in r.detail for r in records)


def test_bad_plans_exit_2(stack: Stack) -> None:
    for args in (["--steps", "50,10"], ["--steps", "10,abc"], ["--bake", "0"],
                 ["--steps", "0,50"]):
        result = stack.vrm("migrate", "--yes", *args)
        assert result.returncode == 2, (args, result.stderr)
    status = stack.vrm("migrate", "status")
    assert status.returncode == 0 and "no migration yet" in status.stdout
