"""Benchmark: the TUI's own cost while 300 and 3,000 req/s flow through the proxy
(`VRM_PERF_RATE=300,3000`, the default).

The TUI runs as `vrm` in a real pseudo-terminal (120x40); load comes from another process.
Launch time is from spawning `vrm` to the first frame that shows the served split; CPU and
RSS are averaged over 60 s. Key to verified rollback is what the operator sees: from writing
`r` into the terminal to the terminal receiving the action line that says the rollback was
verified (input parsing, the action, nginx, the verification and the frame all included),
with the load still running. The reference beside it is the same rollback called in-process
(the controller alone), measured in the same run.

CPU on this shared machine is noisy, so two references are measured over the same 60 s:
`tail -F` of the same access log (what following it costs at all) and the TUI's traffic
source alone (its access-log poll once a second, no UI); beside them, the access-log lines
the TUI had to read, since a saturated load generator sends less than asked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.perf.test_rollback_latency import _print_table
from tests.support import REPO, Stack, clean_env
from vrm_tui.core.split import Split
from vrm_tui.system.logfiles import LogCursor

RATES = tuple(int(r) for r in os.environ.get("VRM_PERF_RATE", "300,3000").split(",") if r)
"""Requests a second through the proxy, one table each (VRM_PERF_RATE=300,3000: issue 22's
ten times the traffic)."""
SECONDS = 60
TRIALS = 20
SOURCE_ALONE = """
import time
from collections.abc import Iterator
from pathlib import Path
from vrm_tui.console import Console
from vrm_tui.settings import load
source = Console(load(deploy_dir=Path.cwd())).traffic_source(backfill=False)
while True:
    source.poll("1m")
    time.sleep(1)
"""
"""The reference: the TUI's traffic poll (`AccessLogSource.poll`, once a second) alone."""


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@contextlib.contextmanager
def _references(stack: Stack, log: Path) -> Iterator[dict[str, int]]:
    """What the TUI's CPU is read beside, in the same 60 s (see the module's docstring):
    name -> pid, stopped on the way out."""
    running = {
        "`tail -F` of the access log": subprocess.Popen(
            ["tail", "-F", "-n", "0", str(log)], stdout=subprocess.DEVNULL),
        "traffic source alone (1 poll/s, no UI)": subprocess.Popen(
            [sys.executable, "-c", SOURCE_ALONE], cwd=stack.deploy_dir, env=clean_env(),
            stdout=subprocess.DEVNULL),
    }
    try:
        yield {name: process.pid for name, process in running.items()}
    finally:
        for process in running.values():
            process.kill()
            process.wait()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _spawn_tui(stack: Stack) -> tuple[int, int]:
    pid, fd = pty.fork()
    if pid == 0:  # child: the real `vrm` in a real terminal
        os.chdir(stack.deploy_dir)
        env = clean_env(TERM="xterm-256color", COLUMNS="120", LINES="40")
        os.execve(sys.executable, [sys.executable, "-m", "vrm_tui.cli"], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    return pid, fd


def _drain(fd: int, until: float, marker: bytes | None = None) -> bool:
    """Read the terminal until `until`; True once `marker` was seen (if given)."""
    seen = b""
    while time.monotonic() < until:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return False
            if marker is not None:
                seen = (seen + chunk)[-4096:]
                if marker in seen:
                    return True
    return marker is None


@pytest.mark.parametrize("rate", RATES)
def test_tui_cost_under_load(stack: Stack, rate: int) -> None:
    stack.controller.set_split(Split(50))
    load = subprocess.Popen([sys.executable, "-m", "tests.perf.loadgen",
                             f"{stack.proxy}/api/v1/vision/metrics", str(rate),
                             str(SECONDS + 60)], cwd=REPO, env=clean_env(),
                            stdout=subprocess.PIPE, text=True)
    log = stack.runtime.access_log()
    try:
        with _references(stack, log) as references:
            rows = _measure(stack, rate, log, references)
    finally:
        load.terminate()
        sent = load.communicate(timeout=60)[0].strip()
    rows.append({"measure": "load", "value": sent, "goal": f"{rate} req/s"})
    _print_table(f"TUI cost with {rate} req/s through the proxy (120x40 pty)", rows)


def _measure(stack: Stack, rate: int, log: Path,
             references: dict[str, int]) -> list[dict[str, object]]:
    """The table's rows; fails if the TUI exits during the run."""
    time.sleep(1)
    spawned = time.monotonic()
    pid, fd = _spawn_tui(stack)
    try:
        assert _drain(fd, spawned + 10, b"nginx generation"), "no populated frame in 10 s"
        launch_s = time.monotonic() - spawned
        _drain(fd, time.monotonic() + 3)  # settle
        pids = {"TUI": pid} | references
        ticks = {name: _cpu_ticks(p) for name, p in pids.items()}
        cursor, logged = LogCursor(log), 0  # follows the log across the logkeeper's rotation
        rss, started = [], time.monotonic()
        while time.monotonic() - started < SECONDS:
            _drain(fd, time.monotonic() + 1)
            rss.append(_rss_mb(pid))
            logged += len(cursor.read())
        elapsed = time.monotonic() - started
        cpu_pct = {name: 100 * (_cpu_ticks(p) - ticks[name]) / os.sysconf("SC_CLK_TCK") / elapsed
                   for name, p in pids.items()}
        alive = os.waitpid(pid, os.WNOHANG) == (0, 0)
        key_ms = _key_to_verified_ms(stack, fd)
        direct_ms = _in_process_rollback_ms(stack)
    finally:
        os.write(fd, b"q")
        _drain(fd, time.monotonic() + 3)
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    assert alive, "the TUI exited during the run"
    references_cpu: list[dict[str, object]] = [
        {"measure": f"reference: {name}, CPU", "value": f"{pct:.1f} % of a core",
         "goal": "same 60 s"} for name, pct in cpu_pct.items() if name != "TUI"]
    return [
        {"measure": "launch to first populated frame", "value": f"{launch_s:.2f} s",
         "goal": "<= 1.5 s"},
        {"measure": f"CPU over {SECONDS} s", "value": f"{cpu_pct['TUI']:.1f} % of a core",
         "goal": "<= 5 %"},
        *references_cpu,
        {"measure": "reference: access-log lines read", "value": f"{logged / elapsed:.0f} /s",
         "goal": f"{rate} req/s asked"},
        {"measure": f"RSS mean over {SECONDS} s", "value": f"{statistics.mean(rss):.0f} MB",
         "goal": "<= 150 MB"},
        {"measure": f"key to verified rollback on screen p50 ({TRIALS} trials)",
         "value": f"{_q(key_ms, 50):.0f} ms", "goal": ""},
        {"measure": f"key to verified rollback on screen p95 ({TRIALS} trials)",
         "value": f"{_q(key_ms, 95):.0f} ms", "goal": "<= 50 ms"},
        {"measure": "reference: rollback in-process p50 / p95",
         "value": f"{_q(direct_ms, 50):.0f} / {_q(direct_ms, 95):.0f} ms",
         "goal": f"ratio p95 {_q(key_ms, 95) / _q(direct_ms, 95):.1f}x"},
    ]


def _q(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


ROLLED_BACK = "✓ rollback → rust 0%".encode()
SEEN_CHANGE = b"deploy: rust 0% "


def _key_to_verified_ms(stack: Stack, fd: int) -> list[float]:
    """`r` written into the terminal -> the verified result arrives on it. Between trials
    another process moves rust to 50%, and the TUI's action line shows that change first,
    so each trial's marker is new output."""
    times = []
    stack.controller.rollback()
    for _ in range(TRIALS):
        stack.controller.set_split(Split(50))
        assert _drain(fd, time.monotonic() + 5, SEEN_CHANGE), "the TUI never showed the change"
        _drain(fd, time.monotonic() + 0.3)
        started = time.perf_counter()
        os.write(fd, b"r")
        assert _drain(fd, time.monotonic() + 5, ROLLED_BACK), "no verified rollback on screen"
        times.append((time.perf_counter() - started) * 1000)
    return times


def _in_process_rollback_ms(stack: Stack) -> list[float]:
    times = []
    for _ in range(TRIALS):
        stack.controller.set_split(Split(50))
        started = time.perf_counter()
        stack.controller.rollback()
        times.append((time.perf_counter() - started) * 1000)
    return times


pytestmark = pytest.mark.perf
