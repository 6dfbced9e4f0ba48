"""Per-backend traffic statistics from nginx's JSON access log.

Every upstream attempt counts against the backend that made it, so a rust failure that
nginx retried onto typescript is still a rust error (and counted as `retried`): those hidden
failures are exactly what an operator must see during a migration. Beside it, the
client-facing rate (the request's final status, after nginx's retries) says what users saw,
and a 10 s rate says what is happening now. Requests still in flight are invisible here
(nginx logs a request when it ends): `stub_status` supplies their number.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vrm_tui.core.backend import Backend
from vrm_tui.core.stats import nearest_rank
from vrm_tui.system.logfiles import LogCursor
from vrm_tui.telemetry import stub_status

BACKENDS = tuple(Backend)
HORIZON_S = 15 * 60
WINDOWS = {"1m": 60, "5m": 300, "15m": 900}
POINTS = 30  # sparkline points per window
RECENT_S = 10  # "now": the error rate over the last seconds, beside the window's
_ROUTES = ("balanced", *BACKENDS)  # the routes to a backend (others are not counted)


Counts = dict[float, int]
"""Latencies (ms) -> how many attempts took exactly that long. nginx logs upstream times in
whole milliseconds, so a busy second has a few dozen distinct values, not thousands: every
answer counts, in little memory, and a window's percentiles need no sort of all of them."""


@dataclass
class Bucket:
    """One second of attempts for one backend."""

    attempts: int = 0
    errors: int = 0
    retried: int = 0
    counts: Counts = field(default_factory=dict)  # latency of each successful attempt
    answered: int = 0  # successful attempts with a latency
    first: int = 0  # requests nginx sent here first (what a client of this backend saw)
    first_failed: int = 0  # ... whose final status, after any retry, was a failure

    @property
    def latencies(self) -> list[float]:
        """Every answered latency, in ascending order."""
        return [value for value, count in sorted(self.counts.items()) for _ in range(count)]


def _merge(into: Counts, counts: Counts) -> None:
    for value, count in counts.items():
        into[value] = into.get(value, 0) + count


def quantiles(counts: Counts, qs: Iterable[float]) -> list[float | None]:
    """The q-quantiles of counted values by the one definition (`core.stats.nearest_rank`):
    what `percentile` says of the expanded values, with one sort of the distinct ones."""
    total = sum(counts.values())
    if not total:
        return [None for _ in qs]
    ordered = sorted(counts.items())
    found: list[float | None] = []
    for q in qs:
        rank, seen = nearest_rank(total, q), 0
        for value, count in ordered:
            seen += count
            if seen >= rank:
                found.append(value)
                break
    return found


@dataclass
class Second:
    at: int
    backends: dict[str, Bucket] = field(default_factory=lambda: {b: Bucket() for b in BACKENDS})
    served: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BACKENDS, 0))


@dataclass(frozen=True)
class BackendWindow:
    """One backend over a window: what the latency pane shows."""

    backend: str
    requests: int
    rate: float  # attempts per second
    errors: int
    retried: int
    error_rate: float | None  # None when there were no attempts
    p50_ms: float | None
    p95_ms: float | None
    p50_series: list[float]
    p95_series: list[float]
    rate_series: list[float]
    # Successful attempts per slot (sampled): a slot with none has no latency to draw,
    # and its p50/p95 of 0.0 must not read as "fast". Empty when the producer is older.
    ok_series: list[int] = field(default_factory=list)
    slot_s: float = 0.0  # seconds per series slot
    recent_requests: int = 0  # attempts in the last RECENT_S seconds
    recent_errors: int = 0
    client_requests: int = 0  # requests first sent here, over the window
    client_errors: int = 0  # ... that failed for the client after nginx's retries
    last_answer_at: float | None = None  # epoch of the last attempt logged (any status)

    @property
    def recent_error_rate(self) -> float | None:
        return self.recent_errors / self.recent_requests if self.recent_requests else None

    @property
    def client_error_rate(self) -> float | None:
        return self.client_errors / self.client_requests if self.client_requests else None


@dataclass(frozen=True)
class TrafficSnapshot:
    """Everything the TUI needs from the access log, computed off the UI thread."""

    window: str
    backends: dict[Backend, BackendWindow]
    observed_rust_pct: float | None  # share of balanced requests rust answered, last minute
    observed_requests: int
    total_requests: int
    skipped_bytes: int
    at: float = 0.0  # epoch the snapshot describes ("now")
    in_flight: int | None = None  # client requests nginx is still answering (stub_status)
    in_flight_error: str = ""  # why in_flight is unknown


@dataclass(frozen=True)
class Attempt:
    """One upstream attempt of a request: which backend, how it ended, how long it took."""

    backend: Backend
    status: str  # nginx's upstream status: "200", "502", "504", or "-" (no response)
    latency_ms: float | None
    retried: bool  # nginx passed the request on to the other backend after this attempt

    @property
    def failed(self) -> bool:
        """5xx, or no response at all (a refused connection, an upstream timeout)."""
        return not self.status.isdigit() or int(self.status) >= 500


@dataclass(frozen=True)
class LoggedRequest:
    """One access-log line of a proxied request, with every upstream attempt."""

    at: float  # epoch seconds when nginx finished it
    method: str
    path: str  # without the query string
    route: str  # balanced | rust | typescript
    status: int | None
    attempts: tuple[Attempt, ...]


def client_failed(status: int | None) -> bool:
    """What a client saw as a failure after nginx's retries: a 5xx (504 when every attempt
    timed out), no status, or 499 (the client gave up waiting, e.g. on a hung canary)."""
    return status is None or status >= 500 or status == 499


_VALUE = r'"(?P<{}>[^"\\]*)"'
_NGINX_LINE = re.compile(
    r'\{"time":"[^"\\]*","msec":(?P<msec>(?P<second>[0-9]+)[0-9.]*),"remote_addr":"[^"\\]*",'
    rf'"method":{_VALUE.format("method")},"uri":{_VALUE.format("uri")},'
    r'"status":(?P<status>[0-9]+),"request_time":[0-9.]+,"bytes":[0-9]+,'
    rf'"upstream_addr":{_VALUE.format("upstream_addr")},'
    rf'"upstream_status":{_VALUE.format("upstream_status")},'
    rf'"upstream_response_time":{_VALUE.format("upstream_response_time")},'
    rf'"backend":{_VALUE.format("backend")},"backend_says":"[^"\\]*",'
    rf'"route":{_VALUE.format("route")},')
"""nginx.conf's `vrm_json` line, field by field, where no value holds an escape: these
values are then exactly what `json.loads` would give (numbers as their text). At 3,000 lines
a second, `json.loads` of every field was most of the TUI's parsing."""
_COUNTED = ("second", "status", "upstream_addr", "upstream_status", "upstream_response_time",
            "backend", "route")
"""All that a request adds to `TrafficStats` besides its time within the second: lines that
agree on these (at 3,000 a second most do) are counted together."""


def _entry(line: str) -> Any:
    """The fields of one access-log line: the proxy's own format matched directly, any other
    line (an escaped value, another layout, a test's own JSON) through `json.loads`."""
    if match := _NGINX_LINE.match(line):
        return match.groupdict()
    return json.loads(line)


def parse_request(line: str, addresses: Mapping[str, Backend]) -> LoggedRequest | None:
    """One JSON access-log line as a request to a backend route; None for anything else."""
    try:
        return _request(_entry(line), addresses)
    except ValueError:  # not JSON
        return None


def _request(entry: Any, addresses: Mapping[str, Backend]) -> LoggedRequest | None:
    """An access-log entry's fields as a request to a backend route; None for anything else.

    `$upstream_addr`, `$upstream_status` and `$upstream_response_time` list every attempt
    ("a, b"): a rust failure nginx retried onto typescript stays a rust failure here."""
    try:
        at = float(entry["msec"])
    except (ValueError, KeyError, TypeError):
        return None
    route = entry.get("route")
    if route not in _ROUTES:
        return None
    addrs = str(entry.get("upstream_addr", "")).split(", ")
    statuses = str(entry.get("upstream_status", "")).split(", ")
    times = str(entry.get("upstream_response_time", "")).split(", ")
    attempts = []
    named = entry.get("backend")  # the proxy's name for the answering (last) upstream
    for i, addr in enumerate(addrs):
        backend = addresses.get(addr.strip())
        if backend is None and i == len(addrs) - 1 and named in BACKENDS:
            backend = Backend(named)  # a host name nginx resolved to an address vrm lacks
        elif backend is None and len(addrs) == 2 and named in BACKENDS:
            # the same, for the attempt nginx retried from: the other backend (each pool
            # has one server, and a retry goes to the other), e.g. rust's 500 under compose
            backend = next(b for b in Backend if b.value != named)
        if backend is None:
            continue
        status = statuses[i].strip() if i < len(statuses) else "-"
        latency: float | None = None
        with contextlib.suppress(IndexError, ValueError):
            latency = float(times[i]) * 1000
        attempts.append(Attempt(backend, status, latency, retried=i < len(addrs) - 1))
    try:
        status_code: int | None = int(entry.get("status"))
    except (TypeError, ValueError):
        status_code = None
    return LoggedRequest(at, str(entry.get("method", "")),
                         str(entry.get("uri", "")).split("?", 1)[0], str(route), status_code,
                         tuple(attempts))


class TrafficStats:
    """Feeds on access-log lines; answers rolling per-backend statistics."""

    def __init__(self, addresses: Mapping[str, Backend]) -> None:
        self.addresses = addresses  # "127.0.0.1:3001" -> "rust"
        self.seconds: deque[Second] = deque()
        self.total = 0
        self.last_answer: dict[str, float] = {}

    def _second(self, at: int) -> Second:
        if self.seconds and self.seconds[-1].at == at:
            return self.seconds[-1]
        if self.seconds and at < self.seconds[-1].at:
            for sec in reversed(self.seconds):  # a late line: find its second
                if sec.at == at:
                    return sec
                if sec.at < at:
                    break
            return self.seconds[-1]
        sec = Second(at)
        self.seconds.append(sec)
        while self.seconds and self.seconds[0].at < at - HORIZON_S:
            self.seconds.popleft()
        return sec

    def feed(self, lines: list[str]) -> None:
        """Count each line's request. Lines in the proxy's own format that agree on what
        they count (`_COUNTED`) are parsed once, and counted as many times, at the latest
        time among them: 3,000 lines a second are a few dozen such groups."""
        alike: dict[tuple[str | Any, ...], list[Any]] = {}  # -> [a match, latest msec, lines]
        for line in lines:
            match = _NGINX_LINE.match(line)
            if match is None:
                self._count_alike(alike)  # what came before it first: seconds in log order
                alike = {}
                if (request := parse_request(line, self.addresses)) is not None:
                    self._count(request, 1)
                continue
            key, msec = match.group(*_COUNTED), match["msec"]
            seen = alike.get(key)
            if seen is None:
                alike[key] = [match, msec, 1]
            else:
                seen[2] += 1
                if msec > seen[1]:  # the same second: the fractions compare as text
                    seen[1] = msec
        self._count_alike(alike)

    def _count_alike(self, alike: dict[tuple[str | Any, ...], list[Any]]) -> None:
        for match, msec, lines_alike in alike.values():
            if (request := _request({**match.groupdict(), "msec": msec},
                                    self.addresses)) is not None:
                self._count(request, lines_alike)

    def _count(self, request: LoggedRequest, times: int) -> None:
        """Add `times` requests like `request` to its second."""
        self.total += times
        sec = self._second(int(request.at))
        if request.attempts:
            first = sec.backends[request.attempts[0].backend]
            first.first += times
            first.first_failed += times * client_failed(request.status)
        for attempt in request.attempts:
            self.last_answer[attempt.backend] = max(
                request.at, self.last_answer.get(attempt.backend, 0.0))
            bucket = sec.backends[attempt.backend]
            bucket.attempts += times
            if attempt.failed:
                bucket.errors += times
                bucket.retried += times * attempt.retried
            elif attempt.latency_ms is not None:
                bucket.answered += times
                bucket.counts[attempt.latency_ms] = \
                    bucket.counts.get(attempt.latency_ms, 0) + times
        if request.route == "balanced" and request.attempts:
            sec.served[request.attempts[-1].backend] += times

    def since(self, backend: str, start: float, end: float | None = None) -> Bucket:
        """Every attempt of `backend` in [start, end], merged (the migration gates' input)."""
        merged = Bucket()
        last = end if end is not None else float("inf")
        for sec in self.seconds:
            if start <= sec.at + 1 and sec.at <= last:
                bucket = sec.backends[backend]
                merged.attempts += bucket.attempts
                merged.errors += bucket.errors
                merged.retried += bucket.retried
                _merge(merged.counts, bucket.counts)
                merged.answered += bucket.answered
        return merged

    def snapshot(self, window: str = "1m", now: float | None = None) -> TrafficSnapshot:
        span = WINDOWS[window]
        end = int(now if now is not None else time.time())
        start = end - span
        recent = [s for s in self.seconds if start < s.at <= end]
        # A window that began before the first line counts only the seconds seen.
        covered = min(span, end - self.seconds[0].at + 1) if self.seconds else span
        step = span / POINTS
        backends = {}
        for backend in BACKENDS:
            attempts = errors = retried = now_attempts = now_errors = first = first_failed = 0
            slots: list[Counts] = [{} for _ in range(POINTS)]
            slot_counts = [0] * POINTS
            for sec in recent:
                bucket = sec.backends[backend]
                attempts += bucket.attempts
                errors += bucket.errors
                retried += bucket.retried
                first += bucket.first
                first_failed += bucket.first_failed
                if sec.at > end - RECENT_S:
                    now_attempts += bucket.attempts
                    now_errors += bucket.errors
                index = min(POINTS - 1, int((sec.at - start - 1) / step))
                _merge(slots[index], bucket.counts)
                slot_counts[index] += bucket.attempts
            whole: Counts = {}
            for slot in slots:
                _merge(whole, slot)
            p50, p95 = quantiles(whole, (0.5, 0.95))
            series = [quantiles(slot, (0.5, 0.95)) for slot in slots]
            backends[backend] = BackendWindow(
                backend=backend,
                requests=attempts,
                rate=round(attempts / max(1, covered), 2),
                errors=errors,
                retried=retried,
                error_rate=(errors / attempts) if attempts else None,
                p50_ms=p50,
                p95_ms=p95,
                p50_series=[slot_p50 or 0.0 for slot_p50, _ in series],
                p95_series=[slot_p95 or 0.0 for _, slot_p95 in series],
                rate_series=[count / step for count in slot_counts],
                ok_series=[sum(slot.values()) for slot in slots],
                slot_s=step,
                recent_requests=now_attempts,
                recent_errors=now_errors,
                client_requests=first,
                client_errors=first_failed,
                last_answer_at=self.last_answer.get(backend),
            )
        minute = [s for s in self.seconds if end - 60 < s.at <= end]
        rust = sum(s.served[Backend.RUST] for s in minute)
        observed = rust + sum(s.served[Backend.TYPESCRIPT] for s in minute)
        return TrafficSnapshot(
            window=window,
            backends=backends,
            observed_rust_pct=(100 * rust / observed) if observed else None,
            observed_requests=observed,
            total_requests=self.total,
            skipped_bytes=0,
            at=now if now is not None else time.time(),
        )


class AccessLogSource:
    """Tails the access log into TrafficStats; one `poll()` per refresh, off the UI thread."""

    def __init__(self, path: Path, addresses: Mapping[str, Backend],
                 backfill: bool = True, status_url: str | None = None) -> None:
        self.cursor = LogCursor(path, from_end=not backfill)
        self.stats = TrafficStats(addresses)
        self.status_url = status_url  # nginx's stub_status: requests in flight now

    def poll(self, window: str = "1m") -> TrafficSnapshot:
        if not self.cursor.path.exists():
            raise FileNotFoundError(f"access log {self.cursor.path} does not exist (is the "
                                    "proxy running?)")
        self.stats.feed(self.cursor.read())
        snap = self.stats.snapshot(window)
        in_flight, error = None, "" if self.status_url else "no status listener"
        if self.status_url:
            try:
                in_flight = stub_status.read(self.status_url).in_flight
            except Exception as exc:  # shown beside the figures, never raised
                error = f"{type(exc).__name__}: {exc}"
        return TrafficSnapshot(**{**snap.__dict__, "skipped_bytes": self.cursor.skipped,
                                  "in_flight": in_flight, "in_flight_error": error})
