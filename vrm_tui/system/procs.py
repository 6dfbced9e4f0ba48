"""Process records: a pid plus its kernel start time, so `vrm down` stops exactly what it
started and never a stranger that reused the pid."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


def start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has finished: not running
        _reap(pid)
        return None
    return int(fields[19])


def parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def children(pid: int) -> set[int]:
    """Direct children of `pid`."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.update(int(p) for p in task.read_text().split())
    return found


def worker_retired(pid: int) -> bool:
    """True once an nginx worker stopped accepting: gone, or titled "shutting down" (nginx
    retitles a worker as it closes its listening sockets)."""
    return start_ticks(pid) is None or "shutting down" in cmdline(pid)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@dataclass(frozen=True)
class ProcRecord:
    """A process vrm started, as written to `<state>/run/<service>.json`."""

    service: str
    pid: int
    ticks: int
    command: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, service: str, pid: int, command: list[str], ports: dict[str, int]) -> ProcRecord:
        ticks = start_ticks(pid)
        if ticks is None:
            raise ProcessLookupError(pid)
        return cls(service, pid, ticks, command, ports)

    def alive(self) -> bool:
        return start_ticks(self.pid) == self.ticks

    def save(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / f".{self.service}.json.tmp"
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, run_dir / f"{self.service}.json")

    @classmethod
    def load(cls, run_dir: Path, service: str) -> ProcRecord | None:
        try:
            return cls(**json.loads((run_dir / f"{service}.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def stop(self, first: signal.Signals = signal.SIGTERM, grace: float = 5.0) -> bool:
        """Signal the process, escalate to SIGKILL after `grace`; True if it was running."""
        if not self.alive():
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, first)
        deadline = time.monotonic() + grace
        while self.alive():
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                deadline = time.monotonic() + grace
            time.sleep(0.02)
        return True


def port_in_use(host: str, port: int) -> bool:
    """True if something already listens on host:port (we cannot bind it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports. All are held open until all are chosen: one at a time, the
    kernel may hand back a port it just released, and two services would then share it."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()

