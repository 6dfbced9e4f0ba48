"""Real etcd for the fleet tests: Debian's etcd-server on free loopback ports, always stopped."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from vrm_tui.system.procs import free_ports


@dataclass
class Member:
    name: str
    client: int
    peer: int
    data: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client}"


@dataclass
class Etcd:
    """A 1- or 3-member etcd cluster on loopback; `stop()`/`start()` a member to fault it."""

    members: list[Member]
    cluster: str = field(init=False)

    def __post_init__(self) -> None:
        self.cluster = ",".join(f"{m.name}=http://127.0.0.1:{m.peer}" for m in self.members)

    @property
    def endpoints(self) -> str:
        return ",".join(m.url for m in self.members)

    def start(self, member: Member | None = None) -> None:
        for m in [member] if member else self.members:
            command = [etcd_binary(), "--name", m.name, "--data-dir", str(m.data),
                       "--listen-client-urls", m.url, "--advertise-client-urls", m.url,
                       "--listen-peer-urls", f"http://127.0.0.1:{m.peer}",
                       "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.peer}",
                       "--initial-cluster", self.cluster, "--initial-cluster-state", "new",
                       "--heartbeat-interval", "50", "--election-timeout", "500"]
            with open(m.log, "ab") as out:
                m.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        for m in [member] if member else self.members:
            self.wait_healthy(m)

    def wait_healthy(self, member: Member, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert member.proc is not None
            if member.proc.poll() is not None:
                raise RuntimeError(f"etcd {member.name} exited: {member.log.read_text()[-800:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(member.url + "/health", timeout=0.5).json().get("health") == "true":
                    return
            time.sleep(0.05)
        raise RuntimeError(f"etcd {member.name} not healthy within {timeout}s")

    def stop(self, member: Member | None = None, sig: signal.Signals = signal.SIGTERM) -> None:
        for m in [member] if member else self.members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.send_signal(sig)
                try:
                    m.proc.wait(10)
                except subprocess.TimeoutExpired:
                    m.proc.kill()
                    m.proc.wait(10)
            m.proc = None

    def leader(self) -> Member:
        for m in self.members:
            if m.proc is None:
                continue
            with contextlib.suppress(httpx.HTTPError):
                status = httpx.post(m.url + "/v3/maintenance/status", json={},
                                    timeout=1).json()
                if status.get("leader") == status.get("header", {}).get("member_id"):
                    return m
        raise RuntimeError("no etcd leader")


def stopped(pid: int) -> bool:
    """Every thread of `pid` stopped: a SIGSTOP stops each as it is next scheduled."""
    return all((task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
               for task in Path(f"/proc/{pid}/task").iterdir())


def etcd_binary() -> str:
    found = shutil.which("etcd") or shutil.which("etcd", path="/usr/bin")
    if found is None:
        raise RuntimeError("etcd is not installed: scripts/test.sh installs etcd-server")
    return found


def new_etcd(folder: Path, size: int = 1) -> Etcd:
    ports = free_ports(2 * size)
    members = [Member(f"m{i}", ports[2 * i], ports[2 * i + 1], folder / f"m{i}",
                      folder / f"m{i}.log") for i in range(size)]
    return Etcd(members)
