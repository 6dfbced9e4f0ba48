"""A backend pair vrm did not write (tests/foreign_backends/): Node's `http` module as
typescript, Python's stdlib `http.server` as rust, with modes switched at runtime."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from vrm_tui.system.procs import free_ports

HERE = Path(__file__).resolve().parent / "foreign_backends"


@dataclass
class Pair:
    typescript: str
    rust: str

    def mode(self, rust: str, typescript: str = "ok") -> None:
        for base, mode in ((self.rust, rust), (self.typescript, typescript)):
            httpx.post(f"{base}/_mode", json={"mode": mode}, timeout=5).raise_for_status()


def _start(command: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "listening PORT" once bound, or why it could not start
    if not line.startswith("listening"):
        proc.kill()
        proc.wait()
        pytest.fail(f"{command[:2]} did not start: {line}{proc.stdout.read()[-2000:]}")
    return proc


def started_pair() -> Iterator[Pair]:
    """Start the pair (skipped without node); stop it when the generator ends."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    ts_port, rust_port = free_ports(2)
    procs = [_start([node, str(HERE / "typescript_server.js"), str(ts_port)])]
    try:
        procs.append(_start([sys.executable, str(HERE / "rust_server.py"), str(rust_port)]))
        yield Pair(f"http://127.0.0.1:{ts_port}", f"http://127.0.0.1:{rust_port}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
