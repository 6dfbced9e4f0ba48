"""The gated migration against a real stack with rehearsal backends and real traffic, run by
the runner in-process and by the detached guard (`vrm migrate`) as an operator runs it."""

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
import pytest

from tests.support import Stack, clean_env, steady_stream
from vrm_tui.console import Console
from vrm_tui.core import services
from vrm_tui.core.split import Split
from vrm_tui.journal import Journal
from vrm_tui.migrate.gates import StepEvidence, Verdict
from vrm_tui.migrate.plan import load
from vrm_tui.migrate.runner import Runner
from vrm_tui.migrate.state import MigrationState, StateStore

GATE_S = 1.0
MODELS = ("resnet50", "yolov8", "clip-vit-l", "detr")


async def _mixed(url: str, rate: float, stop: asyncio.Event) -> None:
    """Alternating GET /metrics and POST /process (several task types): the round-robin mix
    that once made a healthy rust look slower when latency was compared across routes."""
    async def process() -> None:
        for i, model in enumerate(MODELS * 1000):
            if stop.is_set():
                return
            body = {"model": model, "image_size": [64 + i % 5, 64]}
            await steady_stream(f"{url}/api/v1/vision/process", rate / 2, stop, "POST", body,
                                limit_s=0.5)

    await asyncio.gather(steady_stream(f"{url}/api/v1/vision/metrics", rate / 2, stop),
                         process())


@asynccontextmanager
async def traffic(stack: Stack, rate: float = 200, mixed: bool = False) -> AsyncIterator[None]:
    """Steady traffic through the proxy: POST /process, or the GET/POST mix."""
    stop = asyncio.Event()
    stream: asyncio.Task[object]
    if mixed:
        stream = asyncio.create_task(_mixed(stack.proxy, rate, stop))
    else:
        body = {"model": "resnet50", "image_size": [64, 64]}
        stream = asyncio.create_task(steady_stream(f"{stack.proxy}/api/v1/vision/process",
                                                   rate, stop, "POST", body))
    await asyncio.sleep(0.3)
    try:
        yield
    finally:
        stop.set()
        await stream


def _runner(stack: Stack, on_update: Callable[[MigrationState, Verdict | None], None] | None
            = None) -> Runner:
    return Runner(stack.controller, on_update=on_update)


async def _run(runner: Runner, steps: str, bake: float) -> MigrationState:
    """Run to the end; a pause (inconclusive) stops the runner, so the test fails at once
    with the reason instead of waiting for an operator until pytest's timeout."""
    given = runner.on_update

    def on_update(state: MigrationState, verdict: Verdict | None) -> None:
        given(state, verdict)
        if state.phase == "paused":
            runner.stop.set()

    runner.on_update = on_update
    state = runner.start(load(steps=steps, bake=bake, gate_interval=GATE_S))
    return await asyncio.to_thread(runner.run, state)


def _journal(stack: Stack) -> list[str]:
    return [r.detail for r in Journal(stack.settings.paths.journal).read()
            if r.action == "migration"]


def _loaded(store: StateStore) -> MigrationState:
    """The stored migration, which these tests have started."""
    state = store.load()
    assert state is not None
    return state


async def _until(check: Callable[[], bool], limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_healthy_backends_migrate_all_the_way(stack: Stack) -> None:
    # 300 req/s: rust gets ~30/s at 10%, so a 3 s bake sees ~90 samples (50 needed).
    async with traffic(stack, rate=300):
        state = await _run(_runner(stack), "10,50,100", bake=3)
    assert state.phase == "done", state.reason
    assert stack.controller.served().split == Split(100)
    details = _journal(stack)
    assert sum("step passed" in d for d in details) == 3
    assert all("rust error rate" in d for d in details if "step passed" in d), details


async def test_mixed_routes_never_roll_back_a_healthy_rust(stack: Stack) -> None:
    """Latency is compared per route and method: GET and POST mixed 50/50 is no fault."""
    # 5 s: at 10% the POSTs rotate models, so fewer groups reach the gate's minimum per side.
    async with traffic(stack, rate=300, mixed=True):
        state = await _run(_runner(stack), "10,50,100", bake=5)
    assert state.phase == "done", state.reason


async def test_errors_at_the_second_step_roll_back_within_a_gate_interval(stack: Stack) -> None:
    admin = stack.runtime.admin_url(services.RUST)
    injected: dict[str, float] = {}

    def inject_at_step_two(state: MigrationState, verdict: Verdict | None) -> None:
        if state.step == 1 and state.phase == "baking" and not injected:
            httpx.post(f"{admin}/faults", json={"error_rate": 0.3})
            injected["at"] = time.monotonic()

    runner = _runner(stack, inject_at_step_two)
    async with traffic(stack, rate=200):
        state = runner.start(load(steps="10,50,100", bake=5, gate_interval=5.0))
        state = await asyncio.to_thread(runner.run, state)
    ended = time.monotonic()
    httpx.delete(f"{admin}/faults")
    assert state.phase == "rolled-back", state.reason
    assert state.reason.index("rust error rate") < state.reason.index("latency"), \
        "the failing gate comes first"
    assert ended - injected["at"] <= 3.0, "the sequential test waits for no gate interval"
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
        assert saved is not None and saved.phase == "paused" and "inconclusive" in saved.reason
        assert stack.controller.served().split == Split(10), "a pause keeps the step's split"
    finally:
        StateStore(stack.settings.state_dir).request("abort", "tester")
        worker.join(15)
    assert state.phase == "aborted" and stack.controller.served().split == Split(0)
    assert "aborted by tester" in state.reason


async def test_a_rollback_from_outside_stops_the_migration_naming_who(stack: Stack) -> None:
    runner = _runner(stack)
    state = runner.start(load(steps="10,50", bake=60, gate_interval=0.5))
    worker = threading.Thread(target=runner.run, args=(state,))
    worker.start()
    try:
        store = StateStore(stack.settings.state_dir)
        await _until(lambda: (s := store.load()) is not None and s.phase == "baking", 10,
                     "never baked")
        assert stack.vrm("rollback", USER="carol").returncode == 0
    finally:
        worker.join(10)
    assert state.phase == "aborted" and "changed outside the migration" in state.reason
    assert "rollback by carol" in state.reason


async def test_pause_keeps_the_evidence_and_stops_the_bake_clock(stack: Stack) -> None:
    pause_s = 6.0
    async with traffic(stack, rate=200):
        runner = _runner(stack)
        state = runner.start(load(steps="10", bake=6, gate_interval=1))
        worker = threading.Thread(target=runner.run, args=(state,))
        worker.start()
        store = StateStore(stack.settings.state_dir)
        try:
            await _until(lambda: (s := store.load()) is not None and s.baked() >= 2, 15,
                         "never baked 2 s")
            store.request("pause", "dave")
            await _until(lambda: _loaded(store).phase == "paused", 5, "never paused")
            before = _loaded(store)
            counts = StepEvidence.from_dict(before.evidence or {}).rust.attempts
            assert counts > 0 and before.paused_at is not None
            paused_at = time.monotonic()
            await asyncio.sleep(pause_s)
            frozen = _loaded(store)
            assert abs(frozen.baked() - before.baked()) < 0.5, "the bake clock ran while paused"
            store.request("resume", "dave")
            await _until(lambda: _loaded(store).phase == "baking", 5, "never resumed")
            resumed = _loaded(store)
            assert StepEvidence.from_dict(resumed.evidence or {}).rust.attempts >= counts
        finally:
            await asyncio.to_thread(worker.join, 30)
    assert state.phase == "done", state.reason
    assert time.monotonic() - paused_at >= pause_s + (6 - before.baked()) - 0.5
    assert any("paused by dave" in d for d in _journal(stack))
    assert any("evidence kept" in d for d in _journal(stack))


def _start_cli(stack: Stack, *args: str) -> subprocess.Popen[bytes]:
    """`vrm migrate` as an operator starts it in an SSH session: its own process group."""
    return subprocess.Popen([sys.executable, "-m", "vrm_tui.cli", "migrate", "--yes", *args],
                            cwd=stack.deploy_dir, env=clean_env(USER="erin"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP], ids=["SIGKILL", "SIGHUP"])
async def test_the_guard_outlives_the_terminal_that_started_it(stack: Stack,
                                                             signum: signal.Signals) -> None:
    store = StateStore(stack.settings.state_dir)
    async with traffic(stack, rate=300):
        cli = _start_cli(stack, "--steps", "10,50", "--bake", "3", "--gate-interval", "1")
        await _until(lambda: (s := store.load()) is not None and s.phase == "baking", 30,
                     "never started baking")
        os.killpg(cli.pid, signum)  # the SSH session goes, with its whole process group
        cli.wait(10)
        await _until(lambda: not _loaded(store).active, 60, "the migration did not finish")
    final = _loaded(store)
    assert final.phase == "done", final.reason
    assert stack.controller.served().split == Split(50)
    assert final.started_by == "erin"


async def test_a_lost_guard_shows_unguarded_everywhere_and_resume_adopts_it(stack: Stack) -> None:
    store = StateStore(stack.settings.state_dir)
    console = Console(stack.settings)
    async with traffic(stack, rate=300):
        started = stack.vrm("migrate", "--yes", "--detach", "--steps", "10,50", "--bake", "3",
                            "--gate-interval", "1")
        assert started.returncode == 0, started.stderr
        await _until(lambda: (s := store.load()) is not None and s.phase == "baking", 30,
                     "never started baking")
        guard = _loaded(store).owner_pid
        assert guard is not None
        os.kill(guard, signal.SIGKILL)
        killed = time.monotonic()
        await _until(lambda: (v := console.migration()) is not None
                     and v.label == "UNGUARDED", 8, "not UNGUARDED")
        assert time.monotonic() - killed <= 6.5
        status = stack.vrm("migrate", "status")
        assert "UNGUARDED" in status.stdout and "vrm migrate resume" in status.stdout
        Console(stack.settings).migration()  # a second client notices too: journaled once
        assert sum("UNGUARDED" in d for d in _journal(stack)) == 1
        assert stack.vrm("migrate", "pause").returncode == 1, "a lost guard cannot be paused"
        resumed = stack.vrm("migrate", "resume", "--detach", USER="frank")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        await _until(lambda: not _loaded(store).active, 60, "the adopted migration did not end")
    final = _loaded(store)
    assert final.phase == "done", final.reason
    assert final.owner_pid != guard
    assert any("adopted" in d for d in _journal(stack))


async def _baking_detached(stack: Stack) -> StateStore:
    """`vrm migrate --detach` a long 10 -> 50 migration; return once its first step bakes."""
    store = StateStore(stack.settings.state_dir)
    started = stack.vrm("migrate", "--yes", "--detach", "--steps", "10,50", "--bake", "60",
                        "--gate-interval", "1")
    assert started.returncode == 0, started.stderr
    await _until(lambda: (s := store.load()) is not None and s.phase == "baking", 30,
                 "never baked")
    return store


async def test_steering_from_the_cli_names_who_asked(stack: Stack) -> None:
    store = await _baking_detached(stack)
    assert stack.vrm("migrate", "promote", USER="grace").returncode == 0
    await _until(lambda: _loaded(store).step == 1, 10, "never promoted")
    assert stack.vrm("migrate", "abort", USER="heidi").returncode == 0
    await _until(lambda: not _loaded(store).active, 15, "never aborted")
    records = [r for r in Journal(stack.settings.paths.journal).read()
               if r.action == "migration"]
    promoted = next(r for r in records if "promoted" in r.detail)
    assert promoted.operator == "grace" and "gates inconclusive" in promoted.detail
    assert next(r for r in records if "aborted" in r.detail).operator == "heidi"
    status = stack.vrm("migrate", "status")
    assert "promoted by grace (gates inconclusive)" in status.stdout
    waited = stack.vrm("migrate", "status", "--wait")
    assert waited.returncode == 1, "--wait exits 1 for an aborted migration"
    assert stack.controller.served().split == Split(0)


@pytest.mark.parametrize("args", [
    ["--steps", "50,10"], ["--steps", "10,abc"], ["--bake", "0"], ["--steps", "0,50"],
    ["--bake", "inf"], ["--bake", "nan"], ["--gate-interval", "-1"], ["--steps", "true"],
    ["--steps", "10,10"], ["--bake", "5x"],
])
def test_bad_plan_flags_exit_2_and_move_nothing(stack: Stack, args: list[str]) -> None:
    result = stack.vrm("migrate", "--yes", *args)
    assert result.returncode == 2, (args, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert stack.controller.served().split == Split(10)


@pytest.mark.parametrize("plan", [
    "vram_fraction_fail: abc", "min_samples: -1", "steps: [true]", "steps: [10, 50.5]",
    "bake_seconds: .inf", "gates: {error_rate_fail: 2}", "unknown_key: 1", "steps: 10",
])
def test_bad_plan_files_exit_2_and_move_nothing(stack: Stack, plan: str) -> None:
    path = stack.deploy_dir / "plan.yaml"
    path.write_text(plan + "\n")
    result = stack.vrm("migrate", "--yes", "--plan", str(path))
    assert result.returncode == 2, (plan, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert stack.controller.served().split == Split(10)
    assert StateStore(stack.settings.state_dir).load() is None


async def test_a_deploy_during_a_migration_asks_first(stack: Stack) -> None:
    store = await _baking_detached(stack)
    refused = stack.vrm("deploy", "--rust-weight", "30")
    assert refused.returncode == 2 and "This stops migration" in refused.stderr
    assert _loaded(store).active and stack.controller.served().split == Split(10)
    forced = stack.vrm("deploy", "--rust-weight", "30", "--yes", USER="ivan")
    assert forced.returncode == 0, forced.stderr
    await _until(lambda: not _loaded(store).active, 10, "the migration did not stop")
    assert "deploy by ivan" in _loaded(store).reason
