"""The real `vrm` in a real terminal (tmux): the command palette never swallows rollback.

Issue 22: in tmux, `ctrl+p` then `r` typed `r` into the palette's search (its top match was
"Screenshot"); the split stayed and nothing was journaled.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.support import Stack, clean_env
from vrm_tui.core.split import Split

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not seen within {timeout:g} s: {what}"
        time.sleep(0.1)  # polling the terminal: tmux has no event to wait on


@contextmanager
def _vrm_in_tmux(stack: Stack, name: str) -> Iterator[Callable[..., str]]:
    """`vrm` in a detached tmux session of its own server (`-L`), 120x40; yields `tmux`."""

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-L", name, *args], capture_output=True, text=True,
                              check=True, env=clean_env(TERM="xterm-256color")).stdout

    tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "40", "-c",
         str(stack.deploy_dir), f"exec {sys.executable} -m vrm_tui.cli")
    try:
        yield tmux
    finally:
        subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True, check=False)


@pytest.mark.parametrize("key", ["r", "C-r"])
def test_the_real_vrm_rolls_back_from_the_command_palette(stack: Stack, key: str) -> None:
    stack.controller.set_split(Split(30))
    with _vrm_in_tmux(stack, f"vrm-palette-{key}") as tmux:

        def screen() -> str:
            return tmux("capture-pane", "-p")

        _wait(lambda: "r Rollback" in screen() and "30%" in screen(), "the dashboard")
        tmux("send-keys", "C-p")
        _wait(lambda: "Search for commands" in screen(), "the command palette")
        tmux("send-keys", key)
        _wait(lambda: stack.controller.served().split == Split(0), "rust at 0%")
        assert any(r.action == "rollback" and r.result == "ok"
                   for r in stack.console.journal_records())
        _wait(lambda: "✓ rollback" in screen(), "the rollback's result on screen")
