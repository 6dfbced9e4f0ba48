"""Steering, guarding and full disks against a real stack and the real `vrm` (issue 19 items 3,
4 and 8; issue 22 item 5): the detached guard, the CLI, nginx and the rehearsal backends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.fullfs import fill, small_tmpfs
from tests.support import Stack, clean_env, new_stack
from vrm_tui.console import Console
from vrm_tui.core import services
from vrm_tui.core.split import Split
from vrm_tui.journal import Journal
from vrm_tui.migrate.state import StateStore


async def _until(check: Callable[[], bool], limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def _baking(stack: Stack, bake: str = "60") -> StateStore:
    """`vrm migrate --detach` a long 10 -> 50 migration; return once its first step bakes."""
    store = StateStore(stack.settings.state_dir)
    started = stack.vrm("migrate", "--yes", "--detach", "--steps", "10,50", "--bake", bake,
                        "--gate-interval", "1")
    assert started.returncode == 0, started.stdout + started.stderr
    await _until(lambda: (s := store.load()) is not None and s.phase == "baking", 30,
                 "never baked")
    return store


def _vrm(stack: Stack, *args: str, user: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "vrm_tui.cli", *args],
                            cwd=stack.deploy_dir, env=clean_env(USER=user), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _one_line(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert len((result.stdout + result.stderr).strip().splitlines()) == 1, \
        result.stdout + result.stderr


def _journal(stack: Stack) -> list[str]:
    return [r.detail for r in Journal(stack.settings.paths.journal).read()
            if r.action == "migration"]


@pytest.mark.parametrize("rival", ["promote", "pause"])
async def test_an_abort_is_never_lost_behind_a_rival_through_the_cli(stack: Stack,
                                                                     rival: str) -> None:
    """`vrm migrate abort & sleep 0.01; vrm migrate promote &` lost the abort and advanced to
    50% (with pause: 9 in 10 lost): now the abort wins and both commands say what became of
    their request."""
    store = await _baking(stack)
    abort = _vrm(stack, "migrate", "abort", user="alice")
    other = _vrm(stack, "migrate", rival, user="bob")
    aborted_out, aborted_err = abort.communicate(timeout=60)
    other_out, other_err = other.communicate(timeout=60)
    assert abort.returncode == 0, aborted_out + aborted_err
    assert "abort" in aborted_out and "applied" in aborted_out, aborted_out
    assert "Traceback" not in other_err + aborted_err
    final = store.load()
    assert final is not None and final.phase == "aborted", final
    assert stack.controller.served().split == Split(0)
    outcomes = [h["outcome"] for h in final.history]
    if other.returncode == 0:  # it reached the guard a tick before the abort did
        assert rival in other_out and "applied" in other_out
        assert outcomes == (["promoted", "stopped"] if rival == "promote" else ["stopped"])
    else:  # superseded in the same tick, or answered after the migration ended
        assert other.returncode == 1, other_out + other_err
        assert any(word in other_out + other_err
                   for word in ("superseded by abort", "not-applied", "no migration")), \
            other_out + other_err
        assert outcomes == ["stopped"]
    assert store.queue.pending() == [], "every request was answered"


async def test_a_pause_then_resume_in_one_tick_holds_still(stack: Stack) -> None:
    store = await _baking(stack)
    pause = store.request("pause", "carol")
    resume = store.request("resume", "dave")
    answers = {r.control: store.queue.wait(r.id, timeout=10) for r in (pause, resume)}
    paused, resumed = answers["pause"], answers["resume"]
    assert paused is not None and paused.applied, paused
    assert resumed is not None and resumed.outcome in ("superseded", "applied"), resumed
    if resumed.outcome == "superseded":  # same tick: pause wins
        loaded = store.load()
        assert loaded is not None and loaded.phase == "paused"
    result = stack.vrm("migrate", "abort", USER="erin")
    assert result.returncode == 0, result.stdout + result.stderr
    assert stack.controller.served().split == Split(0)


async def test_a_lost_guard_is_unguarded_in_status_and_abort_rolls_back_itself(
        stack: Stack) -> None:
    store = await _baking(stack)
    state = store.load()
    assert state is not None and state.owner_pid is not None
    os.kill(state.owner_pid, signal.SIGKILL)
    console = Console(stack.settings)
    await _until(lambda: (v := console.migration()) is not None and v.label == "UNGUARDED",
                 10, "never UNGUARDED")
    status = stack.vrm("status")
    assert status.returncode == 1, status.stdout
    line = next(x for x in status.stdout.splitlines() if x.startswith("migration"))
    assert "UNGUARDED" in line and f"pid {state.owner_pid}" in line and "is gone" in line
    data = json.loads(stack.vrm("status", "--json").stdout)
    assert data["migration"]["label"] == "UNGUARDED" and "is gone" in data["migration"]["reason"]
    aborted = stack.vrm("migrate", "abort", USER="frank")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    _one_line(aborted)
    assert "rolled back" in aborted.stdout
    assert stack.controller.served().split == Split(0)
    final = store.load()
    assert final is not None and final.phase == "aborted" and "frank" in final.reason
    journal = stack.vrm("journal").stdout
    assert "?->" not in journal, journal  # a migration record changes no split
    assert f"{final.id} rust 10% UNGUARDED" in journal or f"{final.id} UNGUARDED" in journal
    assert f"{final.id} rust 10% aborted: aborted by frank; rolled back" in journal, journal


async def test_no_false_unguarded_while_a_new_migration_starts(stack: Stack) -> None:
    """The previous migration's heartbeat file is there: it must not count for the new one,
    and the new one is not UNGUARDED while its guard takes over."""
    store = await _baking(stack)
    assert stack.vrm("migrate", "abort").returncode == 0
    console = Console(stack.settings)
    first = store.load()
    assert first is not None
    starting = _vrm(stack, "migrate", "--yes", "--detach", "--steps", "10,50", "--bake", "60",
                    user="grace")
    labels: set[str] = set()
    while starting.poll() is None or ((s := store.load()) is not None and s.id == first.id):
        view = console.migration()
        if view is not None and view.state.id != first.id:
            labels.add(view.label)
        await asyncio.sleep(0.02)
    out, err = starting.communicate(timeout=30)
    assert starting.returncode == 0, out + err
    labels.add(console.migration().label)  # type: ignore[union-attr]
    assert "UNGUARDED" not in labels, labels
    assert not any("UNGUARDED" in d for d in _journal(stack))
    assert stack.vrm("migrate", "abort").returncode == 0


@contextmanager
def _frozen_proxy(stack: Stack) -> Iterator[None]:
    """nginx's master and workers stopped (SIGSTOP): the proxy is down, then back."""
    master = int(stack.settings.paths.nginx_pid.read_text())
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    pids = [master, *map(int, children)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def test_a_step_never_passes_its_gates_while_the_proxy_was_down(stack: Stack) -> None:
    store = await _baking(stack, bake="6")
    with _frozen_proxy(stack):
        await _until(lambda: store.load().proxy_down_s >= 1.0, 20,  # type: ignore[union-attr]
                     "the outage was not counted")
    await _until(lambda: not store.load().active, 20,  # type: ignore[union-attr]
                 "the migration went on")
    final = store.load()
    assert final is not None
    assert final.phase == "rolled-back", final.reason
    assert "proxy up" in final.reason and "unreachable" in final.reason
    assert not any(h["outcome"] == "passed" for h in final.history)
    assert stack.controller.served().split == Split(0)


def test_parity_on_that_fails_leaves_it_off(stack: Stack) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", stack.settings.parity_port))
        taken.listen()
        result = stack.vrm("parity", "on", "--sample", "50")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert not stack.console.parity_report().on
    status = stack.vrm("parity", "status")
    assert status.returncode == 0 and "off" in status.stdout.lower(), status.stdout


# --- a full disk (a real 16 MB tmpfs as the state dir) ---------------------------------------

@contextmanager
def _stack_on_tmpfs(tmp_path: Path) -> Iterator[Stack]:
    with small_tmpfs(tmp_path / "state") as state:
        stack = new_stack(tmp_path, VRM_STATE_DIR=str(state))
        stack.up()
        try:
            yield stack
        finally:
            (state / "filler").unlink(missing_ok=True)
            stack.down()


async def test_on_a_full_disk_the_guard_rolls_back_a_hung_rust(tmp_path: Path) -> None:
    with _stack_on_tmpfs(tmp_path) as stack:
        store = await _baking(stack)
        admin = stack.runtime.admin_url(services.RUST)
        filler = fill(stack.settings.state_dir)
        httpx.post(f"{admin}/faults", json={"hang": True}, timeout=5).raise_for_status()
        try:
            await _until(lambda: stack.controller.served().split == Split(0), 30,
                         "the guard did not roll back")
            state = store.load()
            assert state is not None and store.guarded(state), "it kept beating on a full disk"
        finally:
            httpx.delete(f"{admin}/faults", timeout=5)
        filler.unlink()
        await _until(lambda: not store.load().active, 20,  # type: ignore[union-attr]
                     "the ending was never recorded")
        final = store.load()
        assert final is not None and final.phase == "rolled-back"
        assert "rust health" in final.reason and "rolled back" in final.reason


async def test_abort_on_a_full_disk_rolls_back_in_one_line(tmp_path: Path) -> None:
    with _stack_on_tmpfs(tmp_path) as stack:
        store = await _baking(stack)
        filler = fill(stack.settings.state_dir)
        result = stack.vrm("migrate", "abort", USER="heidi")
        assert result.returncode == 0, result.stdout + result.stderr
        _one_line(result)
        assert "disk full" in result.stdout and "rolled back" in result.stdout
        assert stack.controller.served().split == Split(0)
        filler.unlink()
        await _until(lambda: not store.load().active, 20,  # type: ignore[union-attr]
                     "the guard did not stop")
