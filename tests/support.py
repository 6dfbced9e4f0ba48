"""Test support: a real local stack on free ports, and real HTTP traffic against it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from vrm_tui import settings as settings_mod
from vrm_tui.console import Console
from vrm_tui.settings import Settings
from vrm_tui.stack.local import LocalRuntime
from vrm_tui.system.procs import free_ports
from vrm_tui.traffic.controller import TrafficController

REPO = Path(__file__).resolve().parents[1]
VRM_VARS = {name for name in os.environ if name.startswith("VRM_")} | set(settings_mod._KNOWN)


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any vrm settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in VRM_VARS}
    env.update(extra)
    return env


@dataclass
class Stack:
    """A deployment directory with its `.env`, and the objects that drive it in-process."""

    deploy_dir: Path
    env_values: dict[str, str]
    settings: Settings = field(init=False)
    console: Console = field(init=False)
    controller: TrafficController = field(init=False)

    def __post_init__(self) -> None:
        lines = [f"{k}={v}" for k, v in self.env_values.items()]
        (self.deploy_dir / ".env").write_text("\n".join(lines) + "\n")
        self.reload_settings()

    def configure(self, **values: str) -> None:
        """Change `.env` (what the CLI reads too) and reload the settings."""
        self.env_values.update(values)
        lines = [f"{k}={v}" for k, v in self.env_values.items()]
        (self.deploy_dir / ".env").write_text("\n".join(lines) + "\n")
        self.reload_settings()

    def reload_settings(self, **flags: str) -> None:
        self.settings = settings_mod.load(flags, environ={}, deploy_dir=self.deploy_dir)
        self.console = Console(self.settings)
        self.controller = self.console.controller

    @property
    def runtime(self) -> LocalRuntime:
        """The local runtime (tests of the compose runtime use the console's directly)."""
        runtime = self.console.runtime
        assert isinstance(runtime, LocalRuntime)
        return runtime

    @property
    def proxy(self) -> str:
        return self.settings.proxy_url

    def up(self) -> None:
        self.console.up()

    def down(self) -> None:
        self.console.down()

    def vrm(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        """Run the real `vrm` CLI in the deployment directory."""
        return subprocess.run(
            [sys.executable, "-m", "vrm_tui.cli", *args],
            cwd=self.deploy_dir, env=clean_env(**env), capture_output=True, text=True,
            timeout=timeout, check=False,
        )


def new_stack(tmp: Path, **overrides: str) -> Stack:
    proxy, status, rust, typescript, prometheus, exporter, parity, alerts = free_ports(8)
    values = {
        "PROXY_PORT": str(proxy),
        "PROXY_STATUS_PORT": str(status),
        "VISION_MANAGER_PORT": str(rust),
        "TS_VISION_MANAGER_PORT": str(typescript),
        "PROXY_BIND": "127.0.0.1",
        "PROXY_RATE_LIMIT": "0",
        "RUST_BACKEND_WEIGHT": "10",
        "TS_BACKEND_WEIGHT": "90",
        "GRAFANA_PASSWORD": "test-only-password",
        "PROMETHEUS_PORT": str(prometheus),
        "NGINX_EXPORTER_PORT": str(exporter),
        "PARITY_PORT": str(parity),
        "ALERTMANAGER_PORT": str(alerts),
        "VRM_MONITORING": "0",  # tests/integration/test_monitoring.py turns it on
    }
    values.update(overrides)
    return Stack(tmp, values)


async def sample_backends(url: str, count: int, concurrency: int = 16) -> Counter[str]:
    """Send `count` GETs; count the `X-VRM-Backend` of each 200, and every failure by kind."""
    seen: Counter[str] = Counter()
    queue = iter(range(count))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def worker() -> None:
            for _ in queue:
                try:
                    async with session.get(url) as response:
                        await response.read()
                        if response.status == 200:
                            seen[response.headers.get("X-VRM-Backend", "none")] += 1
                        else:
                            seen[f"http {response.status}"] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    seen[f"error {type(exc).__name__}"] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return seen


@dataclass
class Sent:
    """One request of a steady stream: when it was due, sent and answered, and by whom."""

    due: float
    start: float
    end: float
    backend: str | None
    status: int | None
    error: str = ""
    generation: int | None = None


async def steady_stream(url: str, rate: float, stop: asyncio.Event, method: str = "GET",
                        body: dict[str, Any] | None = None, limit_s: float = 120) -> list[Sent]:
    """Open-loop traffic: one request every 1/rate seconds until `stop` (or `limit_s`)."""
    results: list[Sent] = []
    tasks: set[asyncio.Task[None]] = set()
    interval = 1.0 / rate
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def one(due: float) -> None:
            start = time.perf_counter()
            try:
                async with session.request(method, url, json=body) as response:
                    await response.read()
                    generation = response.headers.get("X-VRM-Generation")
                    results.append(Sent(due, start, time.perf_counter(),
                                        response.headers.get("X-VRM-Backend"), response.status,
                                        generation=int(generation) if generation else None))
            except (aiohttp.ClientError, TimeoutError) as exc:
                results.append(Sent(due, start, time.perf_counter(), None, None,
                                    f"{type(exc).__name__}: {exc}"))

        began = time.perf_counter()
        n = 0
        while not stop.is_set() and time.perf_counter() - began < limit_s:
            due = began + n * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)
    return results


def rendered(widget: object) -> str:
    """What a Static pane shows, as plain text (its content rendered without colour)."""
    from rich.console import Console

    console = Console(width=200, record=True, no_color=True)
    console.print(widget.content)  # type: ignore[attr-defined]
    return console.export_text()


_T = TypeVar("_T")


def wait_until(check: Callable[[], _T | None], timeout: float = 30.0,
               what: str = "condition") -> _T:
    """Poll `check` (a state other processes own) until it is truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what} not reached in {timeout:g}s"
        time.sleep(0.2)

