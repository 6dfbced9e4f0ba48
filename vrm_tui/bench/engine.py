"""The load engine: closed- or open-loop, on vrm's minimal HTTP client (uvloop when installed).

Closed loop keeps `concurrency` requests in flight. Open loop sends at a fixed rate and
measures each latency from the request's intended send time, so a stalled server cannot hide
its queueing delay (coordinated omission). Every response is counted by status and by the
backend named in `X-VRM-Backend`; a 429 the proxy gave itself (no backend named) is counted
apart from backend errors, because it measures the proxy's rate limit, not a backend.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from vrm_tui.bench.client import Endpoint, Pool
from vrm_tui.bench.histogram import Histogram
from vrm_tui.core.corpus import Corpus
from vrm_tui.core.errors import RequestFailed


@dataclass(frozen=True)
class Target:
    """What to load: one URL, one method, an optional JSON body; or, with a corpus, the
    corpus's requests against `url` as the base URL (in proportion to their weights)."""

    name: str
    url: str
    method: str = "GET"
    json: dict[str, Any] | None = None
    corpus: Corpus | None = None
    backend: str | None = None  # who answers when the response does not say (a direct target)

    @classmethod
    def of(cls, name: str, base_url: str, corpus: Corpus,
           backend: str | None = None) -> Target:
        return cls(name, base_url.rstrip("/"), corpus=corpus, backend=backend)

    def endpoints(self) -> tuple[Endpoint, list[bytes]]:
        """The endpoint to connect to and the payloads to send in turn."""
        if self.corpus is None:
            return Endpoint.build(self.url, self.method, self.json), []
        schedule = self.corpus.schedule()
        built = {id(r): Endpoint.raw(self.url + r.path, r.method, r.headers, r.body)
                 for r in self.corpus.requests}
        first = built[id(schedule[0])]
        return first, [built[id(r)].payload for r in schedule]


@dataclass
class Result:
    """What a run measured; `by_backend` splits latencies by `X-VRM-Backend`."""

    target: str
    url: str
    mode: str
    concurrency: int
    latency: Histogram = field(default_factory=Histogram)
    by_backend: dict[str, Histogram] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    elapsed_s: float = 0.0
    engine: str = "vrm"
    samples_ms: dict[str, list[float]] = field(default_factory=dict)
    rate_limited: int = 0  # 429s from the proxy's own rate limit (no backend answered)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def ok(self) -> int:
        return sum(n for code, n in self.statuses.items() if code.startswith("2"))

    @property
    def failed(self) -> int:
        return self.requests - self.ok

    @property
    def errors_besides_429(self) -> int:
        """Failures that are not the proxy's rate limit: backend errors, timeouts, refusals."""
        return self.failed - self.rate_limited

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    def record(self, seconds: float, status: int | None, backend: str | None,
               error: str | None = None, keep_sample: bool = True) -> None:
        if error is not None:
            self.errors[error] += 1
            return
        self.statuses[str(status)] += 1
        if status is not None and 200 <= status < 300:
            self.latency.record(seconds)
            key = backend or "unknown"
            self.by_backend.setdefault(key, Histogram()).record(seconds)
            if keep_sample:
                samples = self.samples_ms.setdefault(key, [])
                if len(samples) < 20000:
                    samples.append(seconds * 1000)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "url": self.url, "mode": self.mode, "engine": self.engine,
            "concurrency": self.concurrency, "requests": self.requests, "ok": self.ok,
            "failed": self.failed, "rate_limited": self.rate_limited,
            "backend_errors": self.errors_besides_429,
            "error_rate": round(self.error_rate, 5),
            "elapsed_s": round(self.elapsed_s, 3), "rps": round(self.rps, 1),
            "latency": self.latency.to_dict(),
            "by_backend": {k: {"requests": h.total, **h.to_dict()}
                           for k, h in sorted(self.by_backend.items())},
            "statuses": dict(sorted(self.statuses.items())), "errors": dict(self.errors),
        }


Progress = Callable[[Result, float], None]  # (result so far, fraction done 0..1)


def install_uvloop() -> bool:
    """Use uvloop's event loop policy when it is installed (about 1.5x the request rate)."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


async def _one(pool: Pool, result: Result, started: float, backend: str | None = None) -> None:
    try:
        response = await pool.send()
    except RequestFailed as exc:
        result.record(time.perf_counter() - started, None, None, exc.kind)
        return
    if response.status == 429 and response.backend is None and backend is None:
        result.rate_limited += 1  # nginx's limit_req answered: no upstream, so no name
    result.record(time.perf_counter() - started, response.status, response.backend or backend)


def _pool(target: Target, timeout: float) -> Pool:
    endpoint, payloads = target.endpoints()
    return Pool(endpoint, timeout, payloads)


async def closed_loop(target: Target, concurrency: int, requests: int | None = None,
                      duration: float | None = None, timeout: float = 30.0,
                      progress: Progress | None = None,
                      stop: asyncio.Event | None = None) -> Result:
    """Keep `concurrency` requests in flight until `requests` are done or `duration` passes."""
    if requests is None and duration is None:
        raise ValueError("give requests or duration")
    result = Result(target.name, target.url, "closed", concurrency)
    issued = 0
    began = time.perf_counter()
    deadline = began + duration if duration else None
    result.started = time.time()

    def more() -> bool:
        nonlocal issued
        if stop is not None and stop.is_set():
            return False
        if requests is not None and issued >= requests:
            return False
        if deadline is not None and time.perf_counter() >= deadline:
            return False
        issued += 1
        return True

    pool = _pool(target, timeout)

    async def worker() -> None:
        while more():
            await _one(pool, result, time.perf_counter(), target.backend)

    async with _running(pool, result, began, requests, duration, progress):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


async def open_loop(target: Target, rate: float, duration: float | None = None,
                    timeout: float = 30.0, progress: Progress | None = None,
                    stop: asyncio.Event | None = None, max_in_flight: int = 1000,
                    requests: int | None = None) -> Result:
    """Send `rate` requests a second for `duration`, or until `requests` are sent; latency
    counts from the intended send."""
    if requests is None and duration is None:
        raise ValueError("give requests or duration")
    result = Result(target.name, target.url, "open", max_in_flight)
    interval = 1.0 / rate
    began = time.perf_counter()
    result.started = time.time()
    in_flight: set[asyncio.Task[None]] = set()
    pool = _pool(target, timeout)
    async with _running(pool, result, began, requests, duration, progress):
        n = 0
        while stop is None or not stop.is_set():
            due = began + n * interval
            if (duration is not None and due - began >= duration) or \
                    (requests is not None and n >= requests):
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= max_in_flight:
                result.record(0, None, None, "client-saturated")
            else:
                task = asyncio.create_task(_one(pool, result, due, target.backend))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            n += 1
        await asyncio.gather(*in_flight)
    return result


@asynccontextmanager
async def _running(pool: Pool, result: Result, began: float, requests: int | None,
                   duration: float | None, progress: Progress | None) -> AsyncIterator[None]:
    """Report progress while a run lasts; on the way out close its connections, record its
    elapsed time and make the last report."""
    reporter = asyncio.create_task(_report(result, began, requests, duration, progress))
    try:
        yield
    finally:
        reporter.cancel()
        pool.close()
        result.elapsed_s = time.perf_counter() - began
    if progress:
        progress(result, 1.0)


async def _report(result: Result, began: float, requests: int | None, duration: float | None,
                  progress: Progress | None) -> None:
    if progress is None:
        return
    while True:
        await asyncio.sleep(0.25)
        result.elapsed_s = time.perf_counter() - began
        if requests:
            fraction = result.requests / requests
        else:
            fraction = result.elapsed_s / duration if duration else 0.0
        progress(result, min(1.0, fraction))
