"""The rehearsal backend's HTTP API: the DESIGN backend contract, on aiohttp.

GET /health, GET /metrics, GET /api/v1/vision/metrics, POST /api/v1/vision/process;
every response carries `X-VRM-Backend`. With `--faults`, a second listener on loopback
serves /faults (GET, POST a partial update, DELETE to clear).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import signal
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.exposition import generate_latest

from vrm_tui.core.errors import FaultError, ModelTooLarge
from vrm_tui.core.stats import percentile
from vrm_tui.rehearsal.answers import (
    DIVERGED_STATUS,
    diverge,
    divergence_for,
    jitter,
    request_digest,
    result_for,
)
from vrm_tui.rehearsal.faults import Faults
from vrm_tui.rehearsal.profile import Model, Profile
from vrm_tui.rehearsal.vram import VramPool

log = logging.getLogger("vrm.rehearsal")

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_SIDE = 16384


class Metrics:
    """The seed's metric names, each labelled `backend`, in a registry of their own."""

    def __init__(self, backend: str, limit_gb: float, memory_limit_gb: float) -> None:
        self.registry = CollectorRegistry()
        self.duration = Histogram(
            "vision_manager_task_duration_seconds", "Vision task execution time",
            ["backend", "task"], buckets=BUCKETS, registry=self.registry,
        )
        self.tasks = Counter(
            "vision_manager_tasks", "Vision tasks processed", ["backend", "status"],
            registry=self.registry,
        )
        self.vram = Gauge("vision_manager_vram_used_gb", "Simulated VRAM in use",
                          ["backend"], registry=self.registry)
        self.vram_limit = Gauge("vision_manager_vram_limit_gb", "VRAM limit (MAX_VRAM_GB)",
                                ["backend"], registry=self.registry)
        self.models = Gauge("vision_manager_models_loaded", "Models resident in VRAM",
                            ["backend"], registry=self.registry)
        self.memory_limit = Gauge("vision_manager_memory_limit_bytes",
                                  "Memory the backend may use (container limit)",
                                  ["backend"], registry=self.registry)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes and more
        self.backend = backend
        self.vram_limit.labels(backend).set(limit_gb)
        self.memory_limit.labels(backend).set(memory_limit_gb * 1e9)
        for status in ("success", "error"):
            self.tasks.labels(backend, status)


class Backend:
    """The state of one rehearsal backend: profile, VRAM pool, faults, counters."""

    def __init__(self, profile: Profile, max_vram_gb: float, seed: int | None = None) -> None:
        self.profile = profile
        self.name = profile.backend
        self.pool = VramPool(max_vram_gb, profile.vram_overhead_gb)
        self.faults = Faults()
        self.metrics = Metrics(self.name, max_vram_gb, profile.memory_limit_gb)
        self.rng = random.Random(seed)
        self.started = time.time()
        self.durations: list[float] = []
        self.counts = {"success": 0, "error": 0}
        self._update_gauges()

    def _update_gauges(self) -> None:
        self.metrics.vram.labels(self.name).set(self.pool.used_gb)
        self.metrics.models.labels(self.name).set(len(self.pool.loaded))

    def failing(self) -> bool:
        rate = min(1.0, self.profile.error_rate + self.faults.error_rate)
        return rate > 0 and self.rng.random() < rate

    def record(self, task: str, seconds: float, ok: bool, shadow: bool = False) -> None:
        """Count a served task; parity's shadow calls (X-VRM-Shadow) are not user traffic."""
        if shadow:
            return
        status = "success" if ok else "error"
        self.counts[status] += 1
        self.metrics.tasks.labels(self.name, status).inc()
        if ok:
            self.metrics.duration.labels(self.name, task).observe(seconds)
            self.durations.append(seconds)
            del self.durations[:-1000]

    def divergence(self) -> tuple[float, str]:
        """The divergence rate and kind: a fault's while one is set, else the profile's."""
        if self.faults.divergence_rate > 0:
            return (min(1.0, self.profile.divergence_rate + self.faults.divergence_rate),
                    self.faults.divergence_path)
        return self.profile.divergence_rate, self.profile.divergence_path

    def volatile(self, processing_ms: float) -> dict[str, Any]:
        """The fields that differ on every call, as the profile lists them."""
        values: dict[str, Callable[[], Any]] = {
            "request_id": lambda: uuid.uuid4().hex,
            "timestamp": lambda: datetime.now(UTC).isoformat(timespec="microseconds"),
            "processing_time_ms": lambda: round(processing_ms, 3)}
        return {name: values[name]() for name in self.profile.volatile_fields}

    def answer(self, body: dict[str, Any], model: Model, width: int, height: int,
               processing_ms: float) -> tuple[int, dict[str, Any]]:
        """Status and result fields for a valid process request; no I/O, so tests call it.

        The result depends only on the request body; then divergence (by request hash), jitter
        (per call) and the volatile fields make this backend a realistic rewrite.
        """
        digest = request_digest(body)
        result = result_for(model.task, width, height, digest)
        rate, kind = self.divergence()
        diverged = divergence_for(digest, rate, kind)
        if diverged == "status":
            return DIVERGED_STATUS, {"error": "request rejected (injected divergence)",
                                     **self.volatile(processing_ms)}
        if diverged is not None:
            diverge(model.task, result, diverged, digest)
        amplitude = min(0.5, self.profile.jitter + self.faults.jitter)
        return 200, {"model": model.name, "task": model.task, "image_size": [width, height],
                     "result": jitter(result, amplitude, self.rng),
                     **self.volatile(processing_ms)}

    def summary(self) -> dict[str, Any]:
        def pct(q: float) -> float | None:
            found = percentile(self.durations, q)
            return round(found * 1000, 2) if found is not None else None

        return {
            "backend": self.name,
            "status": "healthy" if not self.faults.unhealthy else "unhealthy",
            "uptime_seconds": round(time.time() - self.started, 1),
            "tasks_total": sum(self.counts.values()),
            "tasks_failed": self.counts["error"],
            "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "window": len(self.durations)},
            "vram_used_gb": self.pool.used_gb,
            "max_vram_gb": self.pool.limit_gb,
            "models_loaded": self.pool.loaded,
            "available_models": sorted(self.profile.models),
            "api_version": "v1",
            "models": [{"name": m.name, "task": m.task}
                       for m in sorted(self.profile.models.values(), key=lambda m: m.name)],
        }


STATE = web.AppKey("backend", Backend)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


# asyncio's epoll waits round timeouts up to whole milliseconds (+0.5 ms on average);
# sleeping that much less keeps served latencies centred on the profile's.
TIMER_SLACK_MS = 0.5


async def _pause(backend: Backend, extra_ms: float = 0.0) -> None:
    await backend.faults.wait_unhung()
    delay = backend.faults.latency_ms + extra_ms - TIMER_SLACK_MS
    if delay > 0:
        await asyncio.sleep(delay / 1000)


async def health(request: web.Request) -> web.Response:
    backend = request.app[STATE]
    await _pause(backend)
    if backend.faults.unhealthy:
        return web.json_response({"status": "unhealthy", "backend": backend.name,
                                  "reason": "fault injected"}, status=503)
    return web.json_response({"status": "healthy", "backend": backend.name,
                              "uptime_seconds": round(time.time() - backend.started, 1),
                              "vram_used_gb": backend.pool.used_gb})


async def metrics(request: web.Request) -> web.Response:
    backend = request.app[STATE]
    await backend.faults.wait_unhung()
    body = generate_latest(backend.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def vision_metrics(request: web.Request) -> web.Response:
    backend = request.app[STATE]
    await _pause(backend, backend.profile.task_latency_ms("metrics", 0, backend.rng))
    if backend.failing():
        return _error(500, "injected failure")
    return web.json_response({**backend.summary(), **backend.volatile(0.0)})


def _image_size(body: dict[str, Any]) -> tuple[int, int]:
    raw = body.get("image_size", [640, 480])
    if isinstance(raw, str):
        match = re.fullmatch(r"(\d+)x(\d+)", raw.strip())
        raw = [int(match.group(1)), int(match.group(2))] if match else raw
    if isinstance(raw, dict):
        raw = [raw.get("width"), raw.get("height")]
    if (not isinstance(raw, list) or len(raw) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw)
            or not all(1 <= v <= MAX_SIDE for v in raw)):
        raise ValueError(f"image_size={body.get('image_size')!r}: expected [width, height] "
                         f"in pixels, 1 to {MAX_SIDE}, or \"WIDTHxHEIGHT\"")
    return raw[0], raw[1]


async def process(request: web.Request) -> web.Response:
    backend = request.app[STATE]
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "expected a JSON body such as {\"model\": \"yolov8\", "
                           "\"image_size\": [640, 480]}")
    if not isinstance(body, dict):
        return _error(400, "expected a JSON object")
    name = body.get("model", "resnet50")
    model = backend.profile.models.get(name) if isinstance(name, str) else None
    if model is None:
        return _error(400, f"unknown model {name!r}; available: "
                           f"{', '.join(sorted(backend.profile.models))}")
    try:
        width, height = _image_size(body)
    except ValueError as exc:
        return _error(400, str(exc))
    started = time.perf_counter()
    try:
        placement = backend.pool.place(model)
    except ModelTooLarge as exc:
        return _error(507, str(exc))
    backend._update_gauges()
    load_ms = 0.0 if placement.hit else model.size_gb * backend.profile.model_load_ms_per_gb
    task_ms = backend.profile.task_latency_ms(model.task, width * height / 1e6, backend.rng)
    # Building the answer is part of the task: its own time comes off the pause, so a client
    # sees the profile's latency, not the profile's plus this simulator's Python.
    status, answer = backend.answer(body, model, width, height, task_ms)
    spent_ms = (time.perf_counter() - started) * 1000
    await _pause(backend, max(0.0, load_ms + task_ms - spent_ms))
    seconds = time.perf_counter() - started
    shadow = request.headers.get("X-VRM-Shadow") == "1"
    if backend.failing():
        backend.record(model.task, seconds, ok=False, shadow=shadow)
        return _error(500, "injected failure")
    backend.record(model.task, seconds, ok=status == 200, shadow=shadow)
    if status != 200:
        return web.json_response(answer, status=status)
    return web.json_response({
        "task_id": str(uuid.uuid4()),
        "backend": backend.name,
        "duration_ms": round(seconds * 1000, 3),  # a timer's microseconds
        "model_cache": "hit" if placement.hit else "loaded",
        "evicted": list(placement.evicted),
        **answer,
    })


async def _tag_backend(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-VRM-Backend"] = request.app[STATE].name


def build_app(backend: Backend) -> web.Application:
    app = web.Application()
    app[STATE] = backend
    app.on_response_prepare.append(_tag_backend)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/vision/metrics", vision_metrics)
    app.router.add_post("/api/v1/vision/process", process)
    return app


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].faults.as_dict())


async def set_faults(request: web.Request) -> web.Response:
    backend = request.app[STATE]
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise FaultError("expected a JSON object such as {\"error_rate\": 0.2}")
        backend.faults.update(changes)
    except (ValueError, FaultError) as exc:
        return _error(400, str(exc))
    log.warning("faults now %s", backend.faults.as_dict())
    if changes.get("crash") is True:
        log.warning("crash fault: exiting now")
        asyncio.get_running_loop().call_later(0.05, os._exit, 70)
    return web.json_response(backend.faults.as_dict())


async def clear_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults.clear()
    log.warning("faults cleared")
    return web.json_response(request.app[STATE].faults.as_dict())


def build_admin_app(backend: Backend) -> web.Application:
    app = web.Application()
    app[STATE] = backend
    app.on_response_prepare.append(_tag_backend)
    app.router.add_get("/faults", get_faults)
    app.router.add_post("/faults", set_faults)
    app.router.add_delete("/faults", clear_faults)
    return app


async def serve(backend: Backend, hosts: Sequence[str], port: int,
                admin_port: int | None) -> None:
    """Run until SIGTERM/SIGINT on each of `hosts` (loopback, and in a fleet the advertised
    address other hosts scrape); the admin listener binds 127.0.0.1 only, and first: once
    /health answers, faults can be injected (bring-up and tests wait on /health alone)."""
    runners = []
    if admin_port is not None:
        admin = web.AppRunner(build_admin_app(backend), access_log=None)
        await admin.setup()
        await web.TCPSite(admin, "127.0.0.1", admin_port).start()
        runners.append(admin)
    main = web.AppRunner(build_app(backend), access_log=None, handle_signals=False)
    await main.setup()
    for host in hosts:
        await web.TCPSite(main, host, port, backlog=1024).start()
    runners.append(main)
    log.warning("%s rehearsal backend on %s:%s (profile %s, MAX_VRAM_GB %s, faults %s)",
                backend.name, ", ".join(hosts), port, backend.profile.source, backend.pool.limit_gb,
                f"on 127.0.0.1:{admin_port}" if admin_port is not None else "off")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.warning("stopping")
    for runner in reversed(runners):  # the API first, the admin listener last
        await runner.cleanup()
