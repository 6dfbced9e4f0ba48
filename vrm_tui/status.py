"""The stack's status as data: what nginx serves, what is on disk, each service's health.

Used by `vrm status` and the TUI alike. The served split is read back from nginx, never
remembered; when nginx does not answer, the split is unknown and the reason is kept.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from vrm_tui.core import services
from vrm_tui.core.errors import ProxyUnreachable
from vrm_tui.core.split import Split
from vrm_tui.settings import RuntimeName
from vrm_tui.stack import compose
from vrm_tui.stack.runtime import Runtime, ServiceState
from vrm_tui.telemetry.health import FALLBACK_DEGRADED_MS, Baselines, Probe, probe
from vrm_tui.traffic.controller import TrafficController
from vrm_tui.traffic.served import Served

HealthWord = Literal["up", "degraded", "hanging", "down", "unknown", "absent"]
HEALTH_SYMBOL: dict[HealthWord, str] = {"up": "●", "degraded": "▲", "hanging": "⧖", "down": "✗",
                                        "unknown": "?", "absent": "–"}
"""Every face shows a health word with its symbol, never by colour alone."""


@dataclass(frozen=True)
class Health:
    """A service's health as one word (what `vrm status` and the TUI both show) and why."""

    word: HealthWord
    reason: str = ""


def classify(state: ServiceState, found: Probe | None,
             degraded_above_ms: float = FALLBACK_DEGRADED_MS) -> Health:
    """The one health classification. A probe that timed out is `hanging` (it accepted the
    connection and never answered), a refused or failed one `down`; a healthy probe slower
    than the service's own baseline allows is `degraded`."""
    if state.state == "not installed":
        return Health("absent")
    if found is None:
        if state.state in ("stopped", "exited"):
            return Health("down", f"process {state.state}")
        return Health("unknown", state.detail or "not probed")
    if found.timed_out:
        return Health("hanging", found.error)
    if not found.healthy:
        return Health("down", found.error or "unhealthy")
    latency = found.latency_ms
    if latency is not None and latency > degraded_above_ms:
        return Health("degraded", f"probe {latency:.0f} ms > {degraded_above_ms:.0f} ms "
                                  "(its recent baseline)")
    return Health("up")


@dataclass(frozen=True)
class ServiceStatus:
    state: ServiceState
    probe: Probe | None
    degraded_above_ms: float = FALLBACK_DEGRADED_MS

    @property
    def healthy(self) -> bool:
        return self.probe is not None and self.probe.healthy

    @property
    def health(self) -> Health:
        return classify(self.state, self.probe, self.degraded_above_ms)

    def as_dict(self) -> dict[str, Any]:
        data = self.state.as_dict()
        data["healthy"] = self.healthy
        data["health"] = self.health.word
        data["latency_ms"] = self.probe.latency_ms if self.probe else None
        data["error"] = self.probe.error if self.probe else ""
        return data


@dataclass(frozen=True)
class StackStatus:
    runtime: RuntimeName
    state_dir: str
    served: Served | None
    served_error: str
    configured: Split | None
    services: list[ServiceStatus] = field(default_factory=list)
    compose_override: str | None = None  # the deployment's override file, when compose uses it

    @property
    def pending(self) -> bool:
        """On-disk config differs from what nginx serves (an interrupted change)."""
        return (self.served is not None and self.configured is not None
                and self.served.split != self.configured)

    @property
    def refused_last(self) -> str:
        """The last split change nginx refused (someone without the state dir's secret, or a
        generation jump), with its local time."""
        if self.served is None or not self.served.refused_last:
            return ""
        when, _, why = self.served.refused_last.partition(" ")
        try:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(when)))
        except ValueError:
            return self.served.refused_last
        return f"{stamp}: {why}"

    @property
    def healthy(self) -> bool:
        """Every service that should run answers (an optional one not installed is fine)."""
        return all(s.healthy for s in self.services if s.state.state != "not installed")

    def as_dict(self) -> dict[str, Any]:
        return {
            "split": self.served.split.as_dict() if self.served else None,
            "generation": self.served.generation if self.served else None,
            "split_error": self.served_error,
            "configured": self.configured.as_dict() if self.configured else None,
            "pending": self.pending,
            "refused": self.served.refused if self.served else None,
            "canary_ms": self.served.canary_ms if self.served else None,
            # requests nginx has waiting on each backend now (None: it does not count them)
            "in_flight": (asdict(self.served.in_flight)
                          if self.served and self.served.in_flight else None),
            "refused_last": self.refused_last,
            "services": [s.as_dict() for s in self.services],
            "runtime": self.runtime,
            "state_dir": self.state_dir,
            "compose_override": self.compose_override,
        }


def collect(runtime: Runtime, controller: TrafficController, timeout: float = 1.0,
            baselines: Baselines | None = None) -> StackStatus:
    """Gather status; every probe is bounded by `timeout` and runs in parallel. With
    `baselines` (a long-lived caller: the TUI), "degraded" is judged against each service's
    own recent probes."""
    settings = controller.settings
    states = runtime.services()

    def check(state: ServiceState) -> Probe | None:
        if state.name == services.PROXY or state.state not in ("running", "external"):
            return None
        backend = services.BACKENDS.get(state.name)
        base = settings.backend_url(backend) if backend else state.url
        if base is None:  # a service this host cannot reach directly
            return None
        path = settings.health_path if backend else services.HEALTH_PATH[state.name]
        return probe(f"{base}{path}", timeout=timeout)

    with ThreadPoolExecutor(max_workers=len(states) + 1) as pool:
        served_future = pool.submit(_served, controller, timeout)
        probes = list(pool.map(check, states))
        served, served_error, served_ms = served_future.result()
    result = []
    for state, found in zip(states, probes, strict=True):
        if state.name == services.PROXY:
            state, error = _proxy_state(state, served, served_error)
            # Healthy only when our own master runs: orphaned workers answer, but nothing
            # can reload them, and a stopped stack must not borrow another nginx's answer.
            found = Probe(f"http://127.0.0.1:{settings.proxy_status_port}/vrm/served",
                          served is not None and state.state == "running",
                          200 if served else None, served_ms, error=error)
        limit = baselines.limit_ms(state.name, found) if baselines else FALLBACK_DEGRADED_MS
        result.append(ServiceStatus(state, found, limit))
    override = compose.override_file(settings) if runtime.name == "compose" else None
    return StackStatus(runtime.name, str(settings.state_dir), served, served_error,
                       controller.configured(), result,
                       str(override) if override else None)


def _proxy_state(state: ServiceState, served: Served | None,
                 served_error: str) -> tuple[ServiceState, str]:
    """The proxy's state with what answered: orphans name their generation; a stopped or
    exited proxy whose port answers is somebody else's or a leftover, never healthy."""
    if state.state == "orphaned" and served is not None:
        detail = f"{state.detail} generation {served.generation} ({served.split}); " \
                 "`vrm rollback` or `vrm deploy` retires them and starts a new master"
        return replace(state, detail=detail), detail
    if state.state != "running" and served is not None:
        return state, f"{state.state}, yet generation {served.generation} answers"
    return state, served_error or state.detail


def _served(controller: TrafficController,
            timeout: float) -> tuple[Served | None, str, float | None]:
    """What nginx serves, why not, and how long it took to say (the proxy's probe time: the
    Health pane's probe column showed `-` for the proxy)."""
    started = time.perf_counter()
    try:
        served = controller.served(timeout=timeout)
    except ProxyUnreachable as exc:
        return None, str(exc), None
    return served, "", (time.perf_counter() - started) * 1000
