"""Read back what nginx actually serves: the truth for status, verification and the TUI."""

from __future__ import annotations

import json
from dataclasses import dataclass

from vrm_tui.core.backend import Backend
from vrm_tui.core.errors import ProxyUnreachable
from vrm_tui.core.split import Split
from vrm_tui.system import loophttp


@dataclass(frozen=True)
class InFlight:
    """Requests nginx has waiting on each backend now, counted by the Lua module per upstream
    attempt (a retry moves a request to the other backend): a hang is the hung backend's,
    where nginx's stub_status only counts all upstreams together."""

    rust: int
    typescript: int

    def of(self, backend: Backend) -> int:
        return self.rust if backend is Backend.RUST else self.typescript


@dataclass(frozen=True)
class Served:
    """The split and generation one nginx worker answered with."""

    generation: int
    split: Split
    worker_pid: int
    token: str = ""
    config: int | None = None  # the answering worker's config generation (None: `generation`)
    refused: int = 0  # split changes nginx refused since it started (unsigned, too far ahead)
    refused_last: str = ""  # "UNIX-TIME reason" of the last refusal
    canary_ms: int = 0  # a rust attempt's read timeout in the rust-first pool (0: none of its own)
    in_flight: InFlight | None = None  # None: this nginx does not count them (no Lua module)

    @property
    def live(self) -> bool:
        """Answered by the Lua module: the split lives in shared memory (set, not reloaded)."""
        return self.config is not None

    @property
    def config_generation(self) -> int:
        """The config generation the answering worker runs: what a reload is verified by
        (with the zero-reload split, `generation` numbers splits and moves without one)."""
        return self.generation if self.config is None else self.config


def read_served(host: str, port: int, timeout: float = 1.0) -> Served:
    """GET /vrm/served on a fresh connection, so the answer comes from a worker that is
    accepting new connections now (not one kept alive from an older generation)."""
    try:
        status, body = loophttp.request(host, port, "GET", "/vrm/served", timeout=timeout)
    except OSError as exc:
        raise ProxyUnreachable(f"proxy at {host}:{port} did not answer: {exc}") from None
    if status != 200:
        raise ProxyUnreachable(
            f"proxy at {host}:{port} answered /vrm/served with HTTP {status}"
        )
    return parse_served(body, f"{host}:{port}")


def parse_served(body: bytes, where: str) -> Served:
    """What a vrm nginx answers about its split (`/vrm/served`, `/vrm/split`)."""
    try:
        data = json.loads(body)
        config = data.get("config")
        flight = data.get("in_flight")
        return Served(int(data["generation"]), Split(int(data["rust"])), int(data["worker_pid"]),
                      str(data.get("token", "")), int(config) if config is not None else None,
                      int(data.get("refused", 0)), str(data.get("refused_last", "")),
                      int(data.get("canary_ms", 0)),
                      None if flight is None else InFlight(int(flight["rust"]),
                                                           int(flight["typescript"])))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ProxyUnreachable(
            f"proxy at {where} answered with {body[:80]!r}: not vrm's config"
        ) from None
