"""The Runtime protocol: what the console, CLI and TUI need from a stack.

A runtime is a `ProxyHost` (the port the traffic controller declares) plus the lifecycle
and inspection of every service. Both runtimes (local processes, docker compose) implement
all of it; nothing calls a runtime feature that is not on this protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, cast, get_args

from vrm_tui.settings import RuntimeName, Settings
from vrm_tui.traffic.port import ProxyHost

RunState = Literal["running", "stopped", "exited", "external", "not installed", "orphaned",
                   "created", "restarting", "paused", "removing", "dead"]
"""A service's run state: a local process's, or a container's as Docker words it."""


def run_state(word: str) -> RunState:
    """Docker's word for a container's state as a RunState; a word this vrm does not know
    (a newer engine's) reads as exited, the state that asks the operator to look."""
    return cast(RunState, word) if word in get_args(RunState) else "exited"


@dataclass(frozen=True)
class ServiceState:
    """One service as the runtime sees it (process or container), before any health probe."""

    name: str
    state: RunState
    pid: int | None = None
    url: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Runtime(ProxyHost, Protocol):
    """A place where the whole stack runs. Every method may raise `StackError` with a
    message that says what to do; none blocks longer than its own documented timeout."""

    settings: Settings

    @property
    def name(self) -> RuntimeName:
        """Which runtime this is (`vrm status` says it; VRM_RUNTIME names it)."""
        ...

    def start_dependencies(self) -> list[str]:
        """Start the backends (before the proxy's first config is tested); return the names
        of the services started. Waits until each answers its health check."""
        ...

    def up(self) -> list[str]:
        """Start every service that is not running; return the names started."""
        ...

    def down(self) -> list[str]:
        """Stop what this runtime started (never a stranger's process); return the names
        stopped."""
        ...

    def stop_service(self, service: str) -> bool:
        """Stop one service this runtime started; True if it was running."""
        ...

    def services(self) -> list[ServiceState]:
        """Every service of the stack with its run state; reads only local state (records,
        /proc, the engine), never probes a service over HTTP."""
        ...

    def backend_pid(self, service: str) -> int | None:
        """The host pid of a backend's process (for GPU memory ownership), or None."""
        ...

    def admin_url(self, service: str) -> str | None:
        """The rehearsal backend's loopback fault-injection URL, or None when it has none."""
        ...

    def log_lines(self, service: str, tail: int = 100, follow: bool = False,
                  keep_going: Callable[[], bool] = lambda: True) -> Iterator[str]:
        """The last `tail` lines of a service's logs, then new ones while `follow` and
        `keep_going()`. Raises `StackError` for an unknown or external service."""
        ...
