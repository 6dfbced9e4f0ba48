"""The port traffic declares: what the controller needs from whatever runs nginx.

traffic sits below stack: it names the operations it relies on here, and the local and
compose runtimes implement them. Tests of the controller can use `FakeProxyHost` from
`vrm_tui.traffic.fake` instead of a real nginx.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from vrm_tui.core.split import Split
from vrm_tui.traffic.nginx import ProxyParams
from vrm_tui.traffic.served import Served

__all__ = ["ProxyHost"]


class ProxyHost(Protocol):
    """Where nginx runs (local processes, a compose container)."""

    @property
    def name(self) -> str:
        """The runtime's name, for messages ("local", "compose")."""
        ...

    def proxy_params(self) -> ProxyParams:
        """Paths, addresses and limits the nginx main config is rendered with, as nginx sees
        them where it runs."""
        ...

    def proxy_running(self) -> bool:
        """True while the nginx master this host started is alive (never raises)."""
        ...

    def test_proxy_config(self, config: Path) -> None:
        """`nginx -t` on a complete config where nginx runs (where the backends' names
        resolve). Raises `NginxTestFailed` with nginx's message, `NginxMissing` without a
        binary, `StackError` when the place to run it is gone."""
        ...

    def served(self, timeout: float = 1.0) -> Served:
        """What nginx serves now, asked of nginx itself on a fresh connection (so a worker
        that accepts new connections answers). Raises `ProxyUnreachable` with how it
        failed."""
        ...

    def set_live_split(self, generation: int, split: Split, timeout: float = 1.0,
                       canary_ms: int | None = None) -> Served:
        """Set the split (and, if given, the canary's read timeout) in nginx's shared memory
        (the Lua module; no reload) and return what the answering worker serves now. Only
        when `proxy_params().live` is set. Raises `ProxyUnreachable` with nginx's reason."""
        ...

    def signal_proxy_reload(self) -> None:
        """Ask the running nginx master to reload its config; returns at once, before nginx
        has done anything. Raises `StackError` when no master runs."""
        ...

    def proxy_worker_pids(self) -> set[int]:
        """PIDs, as this host's /proc sees them, of the master's current workers (empty when
        no master runs). Verification waits for these to retire after a reload."""
        ...

    def proxy_reload_settled(self) -> bool | None:
        """True once the master has handled every reload signal sent to it (idle, nothing
        pending); False while it works on one; None when this host cannot tell."""
        ...

    def proxy_orphans(self) -> set[int]:
        """PIDs of this state dir's nginx processes that no running master owns (a killed
        master's workers, still serving the old split and holding the ports)."""
        ...

    def restart_proxy(self) -> str:
        """Retire orphaned workers (SIGQUIT, SIGKILL after a grace) and start a fresh master
        on the generation `current` points at; returns once it answers, with a sentence
        saying what was done. Raises `StackError`."""
        ...

    def reopen_proxy_logs(self) -> None:
        """Ask the master to reopen its logs (after a rotation). Raises `StackError` when no
        master runs."""
        ...

    def proxy_error_log(self) -> Path:
        """nginx's error log, as this host reads it."""
        ...

    def access_log(self) -> Path:
        """nginx's JSON access log, as this host reads it: the source of every traffic
        statistic (panes, gates, verification of an observed split)."""
        ...
