"""The parity comparator: nginx mirrors sampled requests here; they are compared in the background.

The mirror is answered at once (204) and the request queued, because nginx holds a client's next
keep-alive request until its mirror finishes: nothing the comparator does may cost a client
time. A full queue drops the sample (counted). Workers replay each sample, at most `max_rps` a
second (every sample costs three inferences), to typescript twice (primary, secondary: their
difference is the noise) and to rust (candidate), marked `X-VRM-Shadow: 1` so no backend metric,
gate or access-log statistic counts them as user traffic. Counters and examples are written to
the state dir every second; `/metrics` (Prometheus) and `/status` (JSON) serve them live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from vrm_tui.core.paths import StateDir
from vrm_tui.parity.config import ParityConfig
from vrm_tui.parity.diff import Response, compare
from vrm_tui.parity.results import ExampleStore, ParityResults, write_json_atomic

__all__ = ["QUEUE_SIZE", "Comparator", "Sample", "Targets", "serve"]

log = logging.getLogger("vrm.parity")

QUEUE_SIZE = 1000
WORKERS = 32
PERSIST_S = 1.0
MIRROR_PREFIX = "/mirror"
SHADOW_HEADER = "X-VRM-Shadow"
# Not replayed: hop-by-hop, framing, nginx's own additions and the mirror's marker.
DROP_HEADERS = frozenset({
    "host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
    "proxy-authorization", "proxy-authenticate", "content-length", "x-vrm-method",
    "x-forwarded-for", "x-real-ip", "x-request-id", "x-vrm-shadow", "expect",
    "accept-encoding",  # answers are compared as JSON, never as compressed bytes
})


@dataclass(frozen=True, slots=True)
class Sample:
    """One mirrored request, as the client sent it."""

    method: str
    uri: str  # path and query, replayed as is
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def path(self) -> str:
        return self.uri.split("?", 1)[0]

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Targets:
    """Where shadow calls go: typescript answers twice (primary, secondary), rust once."""

    primary: str
    candidate: str


class Pacer:
    """At most `rate` starts a second across all workers, without bursts."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class Comparator:
    """The queue, the workers and the counters. Everything runs on one event loop."""

    def __init__(self, config: ParityConfig, targets: Targets, state: StateDir,
                 max_rps: float = 20.0, queue_size: int = QUEUE_SIZE, workers: int = WORKERS,
                 timeout: float = 30.0) -> None:
        self.config = config
        self.targets = targets
        self.state = state
        self.max_rps = max_rps
        self.timeout = timeout
        self.workers = workers
        self.results = ParityResults.load(state.parity_results)
        if not self.results.since:
            self.results.since = time.time()
        self.examples = ExampleStore.load(state.parity_examples, config.examples,
                                          config.redact)
        self.queue: asyncio.Queue[Sample] = asyncio.Queue(maxsize=queue_size)
        self.pacer = Pacer(max_rps)
        self.started = time.time()
        self.in_flight = 0
        self._dirty = True
        self._examples_dirty = False

    # --- intake: never waits ---------------------------------------------------------------

    def offer(self, sample: Sample) -> bool:
        """Queue a sample; False when parity.yaml refuses it or the queue is full (counted)."""
        self.results.sampled += 1
        self._dirty = True
        if not self.config.mirrored(sample.method, sample.path):
            self.results.refused += 1
            return False
        try:
            self.queue.put_nowait(sample)
        except asyncio.QueueFull:
            self.results.dropped += 1
            return False
        return True

    async def handle_mirror(self, request: web.Request) -> web.Response:
        body = await request.read()
        uri = request.raw_path[len(MIRROR_PREFIX):] or "/"
        method = request.headers.get("X-VRM-Method", request.method).upper()
        headers = tuple((k, v) for k, v in request.headers.items()
                        if k.lower() not in DROP_HEADERS)
        self.offer(Sample(method, uri, headers, body))
        return web.Response(status=204)

    # --- work ------------------------------------------------------------------------------

    async def run_workers(self, session: aiohttp.ClientSession) -> None:
        await asyncio.gather(*(self._worker(session) for _ in range(self.workers)))

    async def _worker(self, session: aiohttp.ClientSession) -> None:
        while True:
            sample = await self.queue.get()
            try:
                await self.pacer.wait()
                self.in_flight += 1
                try:
                    await self.compare_one(session, sample)
                finally:
                    self.in_flight -= 1
            except Exception:  # one bad sample never stops a worker
                log.exception("comparing %s failed", sample.endpoint)
            finally:
                self.queue.task_done()

    async def compare_one(self, session: aiohttp.ClientSession, sample: Sample) -> None:
        headers = dict(sample.headers)
        headers[SHADOW_HEADER] = "1"
        started = time.time()
        answers = await asyncio.gather(
            self._call(session, self.targets.primary, sample, headers),
            self._call(session, self.targets.primary, sample, headers),
            self._call(session, self.targets.candidate, sample, headers),
            return_exceptions=True)
        self._dirty = True
        if not all(isinstance(a, Response) for a in answers):
            self.results.failed += 1
            return
        primary, secondary, candidate = (a for a in answers if isinstance(a, Response))
        rules = self.config.rules_for(sample.method, sample.path)
        comparison = self.results.record(sample.endpoint,
                                         compare(primary, secondary, candidate, rules),
                                         rules, (started, time.time()))
        if comparison.mismatched:
            self.examples.add(sample.endpoint, sample.method, sample.uri, headers, sample.body,
                              primary, secondary, candidate, comparison)
            self._examples_dirty = True

    async def _call(self, session: aiohttp.ClientSession, base: str, sample: Sample,
                    headers: dict[str, str]) -> Response:
        async with session.request(sample.method, base + sample.uri, headers=headers,
                                   data=sample.body or None, allow_redirects=False) as answer:
            body = await answer.read()
            return Response(answer.status, dict(answer.headers), body)

    # --- output ----------------------------------------------------------------------------

    def _snapshot(self) -> list[tuple[Path, Any]]:
        """What to write now, copied on the loop (workers change the counters between awaits)."""
        out: list[tuple[Path, Any]] = []
        if self._dirty:
            self._dirty = False
            out.append((self.state.parity_results, self.results.to_dict()))
        if self._examples_dirty:
            self._examples_dirty = False
            out.append((self.state.parity_examples,
                        {"capacity": self.examples.capacity, "examples": self.examples.to_list()}))
        return out

    def persist(self) -> None:
        """Write counters (and examples, when new ones came) atomically."""
        for path, data in self._snapshot():
            write_json_atomic(path, data)

    async def persist_loop(self) -> None:
        while True:
            await asyncio.sleep(PERSIST_S)
            for path, data in self._snapshot():
                try:
                    await asyncio.to_thread(write_json_atomic, path, data)
                except OSError as exc:
                    log.warning("cannot write %s: %s", path, exc)

    def status(self) -> dict[str, Any]:
        total = self.results.total()
        low, high = total.interval
        return {
            "pid": os.getpid(), "started": self.started, "since": self.results.since,
            "max_rps": self.max_rps, "queue_depth": self.queue.qsize(),
            "queue_capacity": self.queue.maxsize, "in_flight": self.in_flight,
            "sampled": self.results.sampled, "compared": total.compared,
            "mismatched": total.mismatched, "dropped": self.results.dropped,
            "failed": self.results.failed, "refused": self.results.refused,
            "mismatch_rate": total.mismatch_rate, "interval": [low, high],
            "primary": self.targets.primary, "candidate": self.targets.candidate,
        }

    def metrics(self) -> str:
        """Prometheus text exposition."""
        r = self.results
        total = r.total()
        lines: list[str] = []

        def metric(name: str, kind: str, text: str, rows: list[tuple[str, float]]) -> None:
            lines.extend((f"# HELP {name} {text}", f"# TYPE {name} {kind}"))
            lines.extend(f"{name}{labels} {value:g}" for labels, value in rows)

        metric("vrm_parity_sampled_total", "counter", "Requests nginx mirrored to vrm.",
               [("", r.sampled)])
        metric("vrm_parity_compared_total", "counter",
               "Mirrored requests compared (typescript twice, rust once).", [("", total.compared)])
        metric("vrm_parity_mismatched_total", "counter",
               "Compared requests where rust's answer differs beyond noise and tolerance.",
               [("", total.mismatched)])
        metric("vrm_parity_mismatch_total", "counter", "Mismatches by endpoint and JSON path.",
               [(_labels(endpoint=e, path=p), c.mismatched)
                for e, paths in sorted(r.paths.items()) for p, c in sorted(paths.items())
                if c.mismatched])
        metric("vrm_parity_dropped_total", "counter",
               "Mirrored requests dropped because the queue was full.", [("", r.dropped)])
        metric("vrm_parity_failed_total", "counter",
               "Samples where a shadow call got no answer.", [("", r.failed)])
        metric("vrm_parity_queue_depth", "gauge", "Samples waiting to be compared.",
               [("", self.queue.qsize())])
        return "\n".join(lines) + "\n"


def _labels(**values: str) -> str:
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in values.items()) + "}"


def build_app(comparator: Comparator) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "queue_depth": comparator.queue.qsize()})

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=comparator.metrics(),
                            content_type="text/plain", charset="utf-8")

    async def status(request: web.Request) -> web.Response:
        return web.json_response(comparator.status())

    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    app.router.add_route("*", MIRROR_PREFIX + "/{tail:.*}", comparator.handle_mirror)
    return app


async def serve(comparator: Comparator, port: int, host: str = "127.0.0.1",
                ready: Callable[[], Awaitable[None]] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or `stop`), then write the counters one last time."""
    runner = web.AppRunner(build_app(comparator), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    connector = aiohttp.TCPConnector(limit=4 * comparator.workers, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=comparator.timeout, connect=2.0)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    log.warning("parity comparator on %s:%s: primary %s, candidate %s, at most %g samples/s",
                host, port, comparator.targets.primary, comparator.targets.candidate,
                comparator.max_rps)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(comparator.run_workers(session)),
                 asyncio.create_task(comparator.persist_loop())]
        if ready is not None:
            await ready()
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await runner.cleanup()
    comparator.persist()
    log.warning("stopped: %s", json.dumps({k: comparator.status()[k] for k in
                                           ("sampled", "compared", "mismatched", "dropped")}))
