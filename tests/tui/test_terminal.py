"""The real `vrm` in a real pseudo-terminal: it leaves when the terminal goes away."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.support import clean_env, new_stack


def _spawn(deploy_dir: Path) -> tuple[int, int]:
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(deploy_dir)
        os.execve(sys.executable, [sys.executable, "-m", "vrm_tui.cli"],
                  clean_env(TERM="xterm-256color"))
    return pid, fd


def _wait_for(fd: int, marker: bytes, timeout: float = 15) -> None:
    seen, deadline = b"", time.monotonic() + timeout
    while marker not in seen:
        assert time.monotonic() < deadline, f"{marker!r} never shown"
        if select.select([fd], [], [], 0.1)[0]:
            seen = (seen + os.read(fd, 65536))[-8192:]


def _exit_status(pid: int, seconds: float) -> int | None:
    """The exit status once the process ends within `seconds`; None (killed) if it does not."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@pytest.mark.parametrize("how", ["SIGHUP", "terminal closed"])
def test_tui_exits_when_the_terminal_goes_away(tmp_path: Path, how: str) -> None:
    stack = new_stack(tmp_path)  # no stack running: every pane shows its error instead
    pid, fd = _spawn(stack.deploy_dir)
    try:
        _wait_for(fd, b"Traffic split")
        if how == "SIGHUP":
            os.kill(pid, signal.SIGHUP)
        else:
            os.close(fd)
        status = _exit_status(pid, 5)
        assert status is not None, f"vrm kept running after {how}"
        assert status == 129, f"exit status {status} after {how}: a hang-up is not success"
    finally:
        if how == "SIGHUP":
            os.close(fd)
