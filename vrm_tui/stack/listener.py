"""The proxy's status listener as both runtimes reach it: on the host's loopback (compose
publishes the container's listener on 127.0.0.1), so reading and setting the split never
needs the Docker API."""

from __future__ import annotations

from vrm_tui.core.split import Split
from vrm_tui.settings import Settings
from vrm_tui.traffic import live
from vrm_tui.traffic.served import Served, read_served


class StatusListener:
    """`served` and `set_live_split` of the ProxyHost port, for a runtime with `settings`."""

    settings: Settings

    def served(self, timeout: float = 1.0) -> Served:
        return read_served("127.0.0.1", self.settings.proxy_status_port, timeout=timeout)

    def set_live_split(self, generation: int, split: Split, timeout: float = 1.0,
                       canary_ms: int | None = None) -> Served:
        return live.post_split("127.0.0.1", self.settings.proxy_status_port, generation, split,
                               timeout, live.read_secret(self.settings.paths.nginx_secret),
                               canary_ms)
