"""vrm-control under compose: nginx mirrors to its comparator on the compose network (`vrm
parity on|report|off` as under the local runtime), and its standby guard adopts a migration
whose guard is gone, again after vrm-control itself is killed mid-bake.
Skipped loudly (by the session fixture) when no Docker engine answers `docker info`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable

import httpx
import pytest

from tests.support import Stack, wait_until
from vrm_tui.core import services
from vrm_tui.core.split import Split
from vrm_tui.migrate.state import MigrationState, StateStore
from vrm_tui.stack.compose import CONTROL, PROJECT_LABEL, SERVICE_LABEL

pytestmark = pytest.mark.timeout(1200)


def container_id(stack: Stack, service: str) -> str:
    found = subprocess.run(["docker", "ps", "-aq", "--filter",
                            f"label={PROJECT_LABEL}={stack.settings.compose_project}",
                            "--filter", f"label={SERVICE_LABEL}={service}"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert len(found) == 1, (service, found)
    return found[0]


def until(what: str, check: Callable[[], object], timeout: float = 60.0) -> object:
    """Poll `check` (a state owned by other processes) until it is truthy."""
    return wait_until(check, timeout, what)


def test_parity_on_report_off_under_compose(compose_stack: Stack) -> None:
    stack = compose_stack
    on = stack.vrm("parity", "on", "--sample", "100")
    assert on.returncode == 0, on.stderr
    try:
        def compared() -> int:
            for _ in range(20):
                httpx.get(f"{stack.proxy}/api/v1/vision/metrics", timeout=5)
            report = stack.vrm("parity", "report", "--json")
            assert report.returncode == 0, report.stderr
            data = json.loads(report.stdout)
            return int(data["compared"]) if data["comparator"] == "running" else 0

        until("the comparator in vrm-control compares mirrored requests", compared, 120)
        status = json.loads(stack.vrm("parity", "status", "--json").stdout)
        assert status["sample"] == 100 and status["comparator"] == "running", status
    finally:
        off = stack.vrm("parity", "off")
        assert off.returncode == 0, off.stderr
    status = json.loads(stack.vrm("parity", "status", "--json").stdout)
    assert status["sample"] == 0, status  # vrm-control's comparator stays up, idle


def _state(stack: Stack) -> MigrationState | None:
    return StateStore(stack.settings.state_dir).load()


def _guarded_in_container(stack: Stack,
                          before: MigrationState | None = None) -> MigrationState | None:
    """The migration, once a guard in a container (a pid namespace not ours) other than
    `before`'s runs it and beats. (A restarted container's guard is pid 1 again, and its
    namespace may reuse the old one's number: its start time tells it apart.)"""
    state = _state(stack)
    here = os.readlink("/proc/self/ns/pid")
    store = StateStore(stack.settings.state_dir)
    if state is None or state.owner_ns in (None, here):
        return None
    if before is not None and (state.owner_pid, state.owner_ticks) == (before.owner_pid,
                                                                       before.owner_ticks):
        return None
    return state if store.guarded(state) else None


def test_vrm_control_adopts_a_migration_and_rolls_back_on_a_rust_fault(
        compose_stack: Stack) -> None:
    stack = compose_stack
    assert stack.vrm("rollback").returncode == 0
    started = stack.vrm("migrate", "start", "--steps", "10,50", "--bake", "600",
                        "--gate-interval", "2", "--yes", "--detach")
    assert started.returncode == 0, started.stderr
    try:
        host_guard = _state(stack)
        assert host_guard is not None and host_guard.owner_pid is not None
        os.kill(host_guard.owner_pid, signal.SIGKILL)  # the host's session is gone
        adopted = until("vrm-control adopts the migration",
                        lambda: _guarded_in_container(stack), 60)
        assert isinstance(adopted, MigrationState)
        status = stack.vrm("migrate", "status", "--json")
        assert "UNGUARDED" not in status.stdout, status.stdout

        # vrm-control dies mid-bake: its first process is SIGKILLed from the host, as the
        # kernel's OOM killer or a crash ends it. Its restart policy brings it back and its
        # guard adopts the migration again. Not `docker kill`: the engine takes that for an
        # operator's stop, and Docker documents that a manually stopped container is
        # restarted "only when Docker daemon restarts or the container itself is manually
        # restarted" (docs.docker.com, "Start containers automatically"; moby issue 47792
        # shows `docker kill` counting as one). After a `docker kill`, `vrm up` starts it.
        control = container_id(stack, CONTROL)
        pid = int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", control],
                                 capture_output=True, text=True, check=True).stdout)
        os.kill(pid, signal.SIGKILL)
        again = until("vrm-control restarts and adopts it again",
                      lambda: _guarded_in_container(stack, adopted), 120)
        assert isinstance(again, MigrationState) and again.active
        assert "UNGUARDED" not in stack.vrm("migrate", "status").stdout

        rust = container_id(stack, services.RUST)
        fault = subprocess.run(
            ["docker", "exec", rust, "python3", "-c",
             "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:3101/faults',"
             " data=b'{\"error_rate\": 1.0}', method='POST',"
             " headers={'Content-Type': 'application/json'}), timeout=5)"],
            capture_output=True, text=True, check=False)
        assert fault.returncode == 0, fault.stderr

        def ended() -> MigrationState | None:
            for _ in range(20):
                httpx.get(f"{stack.proxy}/api/v1/vision/metrics", timeout=5)
            state = _state(stack)
            return state if state is not None and not state.active else None

        final = until("the guard in vrm-control rolls back on rust's errors", ended, 180)
        assert isinstance(final, MigrationState)
        assert final.phase == "rolled-back", (final.phase, final.reason)
        assert stack.controller.served().split == Split(0)
        journal = stack.vrm("journal", "--json")
        assert '"adopted"' in journal.stdout or "adopted" in journal.stdout
    finally:
        state = _state(stack)
        if state is not None and state.active:
            stack.vrm("migrate", "abort", "--yes")
        rust = container_id(stack, services.RUST)
        subprocess.run(["docker", "exec", rust, "python3", "-c",
                        "import urllib.request as u; u.urlopen(u.Request("
                        "'http://127.0.0.1:3101/faults', method='DELETE'), timeout=5)"],
                       capture_output=True, check=False)
