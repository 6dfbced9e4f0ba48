"""The Runtime protocol: what the traffic controller, CLI and TUI need from a stack."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from vrm_tui.settings import Settings
from vrm_tui.traffic.nginx import ProxyParams


class StackError(RuntimeError):
    """A runtime could not do what was asked; the message says what to do about it."""


@dataclass(frozen=True)
class ServiceState:
    """One service as the runtime sees it (process or container), before any health probe."""

    name: str
    state: str  # running | stopped | exited | external
    pid: int | None = None
    url: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Runtime(Protocol):
    """A place where the stack runs. Local processes today; docker compose later."""

    name: str
    settings: Settings

    def proxy_params(self) -> ProxyParams:
        """Paths, addresses and limits the nginx main config is rendered with."""

    def start_dependencies(self) -> list[str]:
        """Start the backends (before the proxy's first config is tested); return those
        started."""

    def up(self) -> list[str]:
        """Start what is not running; return the names of services started."""

    def down(self) -> list[str]:
        """Stop what this runtime started; return the names of services stopped."""

    def stop_service(self, service: str) -> bool:
        """Stop one service this runtime started; True if it was running."""

    def services(self) -> list[ServiceState]:
        """Every service of the stack with its run state."""

    def proxy_running(self) -> bool: ...

    def signal_proxy_reload(self) -> None:
        """Ask the running nginx master to reload its config (returns at once)."""

    def proxy_worker_pids(self) -> set[int]:
        """PIDs (as this host sees them, in its /proc) of the proxy's current workers."""

    def proxy_error_log(self) -> Path: ...

    def test_proxy_config(self, config: Path) -> None:
        """`nginx -t` on a complete config where the proxy runs; raises NginxTestFailed."""

    def log_lines(self, service: str, tail: int, follow: bool,
                  keep_going: Callable[[], bool] = ...) -> Iterator[str]:
        """The last `tail` lines of a service's logs, then new ones while `follow` and
        `keep_going()`."""
