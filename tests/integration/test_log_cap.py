"""nginx's logs stay capped whatever the traffic (issue 19): a log keeper beside each nginx
master rotates by size without any vrm action, unknown paths are rate-limited, and a flood
of refusals does not fill the error log."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx

from tests.support import Stack, clean_env
from vrm_tui.core import services
from vrm_tui.stack import logkeeper
from vrm_tui.system.procs import start_ticks


def _wait(predicate, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_logs_rotate_by_size_without_a_vrm_action(stack: Stack) -> None:
    access = stack.runtime.access_log()
    with open(access, "ab") as handle:
        handle.write(b"x" * 300_000 + b"\n")
    master = stack.runtime._record(services.PROXY)
    assert master is not None
    keeper = subprocess.Popen(
        [sys.executable, "-m", "vrm_tui.stack.logkeeper", "--deploy-dir",
         str(stack.deploy_dir), "--state-dir", str(stack.settings.state_dir),
         "--master", str(master.pid), "--max-bytes", "100000", "--interval", "0.05"],
        env=clean_env(), cwd=stack.deploy_dir)
    try:
        rotated = access.with_name(access.name + ".1")
        _wait(rotated.exists, "the access log rotated")
        # nginx writes to a fresh file (it reopened on USR1)
        httpx.get(f"{stack.proxy}/health", timeout=5)
        _wait(lambda: access.exists() and access.stat().st_size > 0, "nginx writing again")
        assert access.stat().st_size < 100_000
        stack.runtime.stop_service(services.PROXY)
        assert keeper.wait(timeout=20) == 0, "the keeper exits with its master"
    finally:
        if keeper.poll() is None:
            keeper.kill()
            keeper.wait()


def test_the_keeper_started_with_nginx_exits_with_it(stack: Stack) -> None:
    found = subprocess.run(["pgrep", "-f", f"vrm_tui.stack.logkeeper.*{stack.settings.state_dir}"],
                           capture_output=True, text=True, check=False)
    pids = [int(p) for p in found.stdout.split()]
    assert pids, "vrm up starts a log keeper beside nginx"
    stack.runtime.stop_service(services.PROXY)
    _wait(lambda: all(start_ticks(p) is None for p in pids), "the keeper to exit")


def test_keep_stops_when_asked(stack: Stack) -> None:
    master = stack.runtime._record(services.PROXY)
    assert master is not None
    stop = threading.Event()
    runner = threading.Thread(target=logkeeper.keep, args=(stack.controller, master.pid, stop,
                                                           0.01))
    runner.start()
    stop.set()
    runner.join(timeout=5)
    assert not runner.is_alive()


def test_unknown_paths_are_rate_limited_and_refusals_skip_the_error_log(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.support import new_stack

    limited = new_stack(tmp_path, PROXY_RATE_LIMIT="5")
    limited.up()
    try:
        error_log = limited.runtime.proxy_error_log()
        before = error_log.stat().st_size
        with httpx.Client() as client:
            codes = [client.get(f"{limited.proxy}/nope").status_code for _ in range(60)]
        assert 404 in codes and 429 in codes, codes
        assert codes.count(429) >= 30
        written = error_log.read_bytes()[before:]
        assert b"limiting requests" not in written
    finally:
        limited.down()
