"""Process records: a pid plus its kernel start time, so `vrm down` stops exactly what it
started and never a stranger that reused the pid."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vrm_tui.system.files import write_atomic


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
        # whole or not at all, and no temporary file left behind on a full disk
        write_atomic(run_dir / f"{self.service}.json", json.dumps(asdict(self)), sync=False)

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

    @classmethod
    def stop_recorded(cls, run_dir: Path, service: str) -> bool:
        """Stop the recorded process of `service` (SIGTERM, then SIGKILL) and forget its
        record; True if one ran."""
        record = cls.load(run_dir, service)
        if record is None:
            return False
        stopped = record.stop(signal.SIGTERM)
        (run_dir / f"{service}.json").unlink(missing_ok=True)
        return stopped


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


def free_ports(count: int, host: str = "127.0.0.1",
               avoid: Collection[int] = ()) -> list[int]:
    """`count` distinct free ports, none in `avoid` (ports configured for services that
    have not bound them yet), below the kernel's ephemeral range: a port from inside it
    can be taken as the local end of any outgoing connection (a probe, a client) between
    being chosen and being bound, and the service then fails with "address in use". All
    are held open until all are chosen, so none is handed out twice."""
    first, low = port_range()
    candidates = (random.randrange(first, low) for _ in range(50 * count)) \
        if low - first > 2 * count else iter(())
    sockets: list[socket.socket] = []
    held: list[socket.socket] = []  # avoided ports the kernel chose, kept until the end
    try:
        for port in candidates:
            if len(sockets) == count:
                break
            if port in avoid:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
        while len(sockets) < count:  # no room below the range: the kernel's choice
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            (held if sock.getsockname()[1] in avoid else sockets).append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets + held:
            sock.close()


def port_range() -> tuple[int, int]:
    """Where free ports are picked (first, end): VRM_PORT_RANGE=FIRST-LAST, else from 10000
    up to the kernel's ephemeral range. Processes that pick ports at once on one host (the
    test suite's workers) each get a range of their own: a port one has chosen but not yet
    bound looks free to the other."""
    given = os.environ.get("VRM_PORT_RANGE", "").strip()
    if not given:
        return 10_000, _ephemeral_low()
    first, _, last = given.partition("-")
    if not (first.isdigit() and last.isdigit() and 1024 <= int(first) < int(last) <= 65535):
        raise ValueError(f"VRM_PORT_RANGE={given}: expected FIRST-LAST ports, e.g. "
                         "10000-20000")
    return int(first), int(last) + 1


def _ephemeral_low() -> int:
    """The first port the kernel uses for outgoing connections (32768 when it won't say)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def reload_settled(master: int) -> bool | None:
    """True once an nginx master has handled every reload signal sent to it: SIGHUP is not
    pending and the master sleeps in `sigsuspend` (its idle loop). While it re-reads a
    config (or retries a bind for 2.5 s) it sleeps elsewhere. None when the kernel does not
    say (no wchan): the caller then has only its timeout to go by."""
    try:
        wchan = Path(f"/proc/{master}/wchan").read_text().strip()
        status = Path(f"/proc/{master}/status").read_text()
    except OSError:
        return None
    if not wchan or wchan == "0":
        return None
    pending = 0
    for line in status.splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            pending |= int(line.split()[1], 16)
    hup = 1 << (signal.SIGHUP - 1)
    return "sigsuspend" in wchan and not pending & hup


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def fd_targets(pid: int) -> set[str]:
    """Where a process's open descriptors point (paths, `socket:[inode]`)."""
    found = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                found.add(os.readlink(fd))
    return found


def nginx_holding(paths: list[Path]) -> set[int]:
    """nginx processes (masters and workers, titled `nginx: ...`) with one of `paths` open:
    a state dir's nginx is the one writing that state dir's logs, whoever started it."""
    wanted = {str(p.resolve()) for p in paths}
    found = set()
    for pid in _pids():
        if cmdline(pid).startswith("nginx: ") and fd_targets(pid) & wanted:
            found.add(pid)
    return found


def writing_to(path: Path) -> set[int]:
    """Processes whose stdout is `path`: what vrm spawned with that log, even when vrm was
    killed before it could write the process record."""
    wanted = str(path.resolve())
    found = set()
    for pid in _pids():
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/1") == wanted:
                found.add(pid)
    return found


def retire(pids: set[int], grace: float = 2.0) -> None:
    """SIGQUIT (nginx: stop accepting, finish what is in flight), SIGKILL whatever still
    accepts after `grace`; returns once none of `pids` accepts new connections."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + grace
    while not all(worker_retired(pid) for pid in pids):
        if time.monotonic() > deadline:
            for pid in pids:
                if not worker_retired(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + grace
        time.sleep(0.01)


def wait_gone(pids: set[int], grace: float = 5.0) -> None:
    """Wait for `pids` to exit; SIGKILL the ones left after `grace`."""
    deadline = time.monotonic() + grace
    while any(start_ticks(pid) is not None for pid in pids):
        if time.monotonic() > deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + grace
        time.sleep(0.01)
