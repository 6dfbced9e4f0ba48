"""Production validation (the seed's validate.sh): PASS / WARN / FAIL / SKIP rows with the evidence.

Availability, performance, load balancing, security, monitoring. Each check runs under its own
deadline (`Options.check_timeout`), so the whole command ends within the sum of them: a hung
backend is a FAIL row saying "no answer within N s", never a traceback or an empty `--json`.
A check that cannot run says why; one left out because of another row's failure is a SKIP
naming that row.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import aiohttp
import httpx

from vrm_tui.bench.engine import Target, closed_loop
from vrm_tui.core.backend import Backend
from vrm_tui.core.corpus import Corpus
from vrm_tui.core.errors import ProxyUnreachable
from vrm_tui.core.stats import median_ratio
from vrm_tui.settings import Settings
from vrm_tui.telemetry.health import probe
from vrm_tui.telemetry.http import shared_client
from vrm_tui.telemetry.offers import probe_offers
from vrm_tui.traffic.served import read_served

DEFAULT_PASSWORDS = ("", "admin", "admin123")
SECURITY_HEADERS = ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")


Verdict = Literal["PASS", "WARN", "FAIL", "SKIP"]  # SKIP: not run, because of another row


@dataclass(frozen=True)
class Check:
    area: str
    name: str
    result: Verdict
    detail: str


@dataclass(frozen=True)
class Options:
    host: str  # host:port of the proxy
    speedup_factor: float = 2.0
    split_tolerance: float = 5.0  # percentage points
    # Each check's deadline: a hung backend costs one row this long, not the proxy's 30 s
    # upstream timeout (or forever); the command ends within the sum.
    check_timeout: float = 20.0

    @property
    def quick(self) -> float:
        """One probe's timeout: a few fit in a check's deadline."""
        return min(2.0, self.check_timeout / 3)

    @property
    def request_timeout(self) -> float:
        """One request through the proxy: half the check's deadline, so the check can say which
        request went unanswered before its own deadline ends it."""
        return min(5.0, self.check_timeout / 2)


def no_answer(seconds: float) -> str:
    """The one wording for a timeout in validate's rows."""
    return f"no answer within {seconds:g}s"  # as the health probes word it


async def bounded(area: str, name: str, work: Callable[[], Awaitable[Check | list[Check]]],
                  seconds: float, waiting_on: str) -> list[Check]:
    """Run one check under its deadline. A timeout is a FAIL row naming what gave no answer;
    any other error a FAIL row naming it, so one broken check never costs the others' rows."""
    try:
        found = await asyncio.wait_for(work(), seconds)
    except TimeoutError:
        return [Check(area, name, "FAIL", f"{no_answer(seconds)} from {waiting_on} "
                                          "(a hung backend?)")]
    except Exception as exc:  # the row is the report: see the docstring
        return [Check(area, name, "FAIL", f"could not run: {type(exc).__name__}: {exc}")]
    return found if isinstance(found, list) else [found]


def _health_urls(settings: Settings, proxy: str) -> dict[str, str]:
    """Availability's rows: proxy, rust and typescript /health, by row name."""
    health = settings.health_path
    return {"proxy /health": f"{proxy}/health",
            **{f"{b} /health": f"{settings.backend_url(b)}{health}" for b in Backend}}


def _availability(name: str, url: str, timeout: float) -> Check:
    found = probe(url, timeout=timeout)
    return Check("availability", name, "PASS" if found.healthy else "FAIL",
                 f"{found.latency_ms} ms" if found.healthy else found.error)


def _conventions(settings: Settings, backend: Backend, timeout: float) -> list[Check]:
    """What a backend offers of vrm's conventions: a lack is a WARN saying what vrm does
    instead; only a backend that names itself as the other one FAILs (miswired ports)."""
    offers = probe_offers(backend, settings.backend_url(backend), settings.health_path,
                          settings.max_vram_gb, timeout)
    named, vram_row = f"{backend} names itself", f"{backend} VRAM series"
    if not offers.health.healthy:  # it answered availability's probe, but not this one
        why = f"not checked: {backend} /health failed just now ({offers.health.error})"
        return [Check("backends", named, "SKIP", why), Check("backends", vram_row, "SKIP", why)]
    said = offers.names_itself
    if offers.miswired:
        checks = [Check("backends", named, "FAIL",
                        f"{settings.backend_url(backend)} answers as {said}: backends wired "
                        "to the wrong ports")]
    elif said is None:
        checks = [Check("backends", named, "WARN",
                        f"{backend}: no X-VRM-Backend of its own: the proxy names it")]
    else:
        checks = [Check("backends", named, "PASS", f"X-VRM-Backend: {said}, as the proxy names it")]
    vram = offers.vram
    if not vram.reported:
        checks.append(Check("backends", vram_row, "WARN",
                            f"{backend}: no vision_manager_vram_used_gb: VRAM gate uses NVML"))
    else:
        checks.append(Check("backends", vram_row, "PASS" if vram.used_gb is not None else "WARN",
                            f"{vram.used_gb:.1f} GB in use" if vram.used_gb is not None
                            else vram.error))
    return checks


async def _performance(settings: Settings, factor: float, corpus: Corpus,
                       timeout: float) -> Check:
    samples = {}
    for backend in Backend:
        target = Target.of(backend, settings.backend_url(backend), corpus, backend)
        result = await closed_loop(target, 4, duration=2.0, timeout=timeout)
        if result.failed or not result.ok:
            kinds = ", ".join(f"{k} {n}" for k, n in
                              (result.errors + Counter({f"HTTP {c}": n for c, n in
                                                        result.statuses.items()
                                                        if not c.startswith("2")})).items())
            return Check("performance", "rust faster than typescript", "FAIL",
                         f"{backend}: {result.failed} of {result.requests} requests failed"
                         + (f" ({kinds}; timeout {timeout:g} s)" if kinds else ""))
        samples[backend] = [v for s in result.samples_ms.values() for v in s]
    found = median_ratio(samples[Backend.TYPESCRIPT], samples[Backend.RUST])
    if found is None:
        return Check("performance", "rust faster than typescript", "WARN", "too few samples")
    detail = (f"{found.ratio:.2f}x at p50 (95% CI {found.low:.2f}-{found.high:.2f}), "
              f"want >= {factor:g}x; requests: {corpus.name}")
    verdict: Verdict = "PASS" if found.low >= factor else ("WARN" if found.ratio > 1 else "FAIL")
    return Check("performance", "rust faster than typescript", verdict, detail)


async def _balancing(settings: Settings, proxy: str, tolerance: float,
                     timeout: float) -> Check:
    name = "observed split matches served"
    try:  # the served split is readable on this host's status listener only
        expected = read_served("127.0.0.1", settings.proxy_status_port,
                               timeout=min(2.0, timeout)).split
        source = "serving"
    except ProxyUnreachable:
        expected, source = settings.split, "configured (the status listener did not answer)"
    # Stay inside the rate limiter's burst, so this check never trips it.
    count = 400 if settings.proxy_rate_limit == 0 else min(400, 2 * settings.proxy_rate_limit)
    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        for sent in range(1, count + 1):
            try:
                async with session.get(f"{proxy}/api/v1/vision/metrics") as response:
                    await response.read()
            except TimeoutError:
                # One hung request would hold every later one as long: stop and say so.
                return Check("load balancing", name, "FAIL",
                             f"request {sent} of {count} through the proxy: "
                             f"{no_answer(timeout)} (a hung backend?); answered before it: "
                             f"{dict(seen) or 'none'}")
            except aiohttp.ClientError as exc:
                seen[f"error {type(exc).__name__}"] += 1
                continue
            # The proxy names the backend that answered (nginx's $vrm_backend_name).
            backend = response.headers.get("X-VRM-Backend")
            ok = response.status < 400
            seen[backend if ok and backend else ("unnamed" if ok else
                                                 f"http {response.status}")] += 1
    answered = seen["rust"] + seen["typescript"]
    if seen["unnamed"] and answered + seen["unnamed"] == count:
        return Check("load balancing", name, "WARN",
                     f"{seen['unnamed']} of {count} answers not named by the proxy (backend "
                     "host names on the same port?): cannot count the split")
    if answered < count:
        return Check("load balancing", name, "FAIL",
                     f"{count - answered} of {count} requests failed: {dict(seen)}")
    observed = 100 * seen["rust"] / answered
    off = abs(observed - expected.rust)
    return Check("load balancing", name, "PASS" if off <= tolerance else "FAIL",
                 f"rust {observed:.1f}% of {answered} requests; {source} {expected.rust}% "
                 f"(tolerance {tolerance:g} points)")


async def _rate_limit(settings: Settings, proxy: str, timeout: float) -> Check:
    if settings.proxy_rate_limit == 0:
        return Check("security", "rate limit rejects a burst", "FAIL",
                     "rate limiting is off (PROXY_RATE_LIMIT=0)")
    # The balancing check may have used the whole burst allowance (2 x rate); the bucket
    # drains at `rate` per second, so two seconds and a margin empty it.
    await asyncio.sleep(2.5)
    burst = 3 * settings.proxy_rate_limit + 50
    statuses: Counter[int] = Counter()
    # The 429s come from nginx at once; a request it passes to a hung backend only needs to
    # end before the check's deadline.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def one() -> None:
            try:
                async with session.get(f"{proxy}/api/v1/vision/metrics") as response:
                    await response.read()
                    statuses[response.status] += 1
            except (aiohttp.ClientError, TimeoutError):  # a slow backend under the burst
                statuses[0] += 1

        await asyncio.gather(*(one() for _ in range(burst)))
    rejected = statuses[429]
    unanswered = f"; {statuses[0]} got {no_answer(timeout)}" if statuses[0] else ""
    return Check("security", "rate limit rejects a burst", "PASS" if rejected else "FAIL",
                 f"{rejected} of {burst} burst requests got 429 "
                 f"(PROXY_RATE_LIMIT={settings.proxy_rate_limit}/s){unanswered}")


def _headers(proxy: str, timeout: float) -> list[Check]:
    try:
        response = shared_client().get(f"{proxy}/health", timeout=timeout)
    except httpx.HTTPError as exc:
        return [Check("security", "security headers", "FAIL", str(exc))]
    missing = [h for h in SECURITY_HEADERS if h not in response.headers]
    server = response.headers.get("Server", "")
    return [
        Check("security", "security headers", "FAIL" if missing else "PASS",
              f"missing {', '.join(missing)}" if missing else ", ".join(SECURITY_HEADERS)),
        Check("security", "server version hidden",
              "FAIL" if re.search(r"\d", server) else "PASS", f"Server: {server or '(none)'}"),
    ]


def _server_blocks(text: str) -> list[str]:
    """The text of each `server { ... }` block (braces matched; nginx comments dropped)."""
    text = re.sub(r"#[^\n]*", "", text)
    blocks = []
    for match in re.finditer(r"\bserver\s*\{", text):
        depth, i = 0, match.end() - 1
        while i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                blocks.append(text[match.end():i])
                break
            i += 1
    return blocks


def _private(address: str) -> bool:
    try:
        return ipaddress.ip_network(address, strict=False).is_private
    except ValueError:
        return False


def _status_loopback_only(config: Path) -> Check:
    """Read the served config: status endpoints live on their own listener, which lets in
    loopback (or the stack's private network) only, and the public /metrics loopback only."""
    name = "status endpoints loopback only"
    try:
        blocks = _server_blocks(config.read_text())
    except OSError as exc:
        return Check("security", name, "WARN", f"cannot read the served config: {exc}")
    public = [b for b in blocks if "location /api/v1/vision/" in b]
    status = [b for b in blocks if "location = /vrm/served" in b]
    problems = []
    for block in public:
        problems += [f"{loc} on the public listener" for loc in ("/vrm/served", "/nginx_status")
                     if f"location = {loc}" in block]
        metrics = re.search(r"location = /metrics \{(.*?)\}", block, re.DOTALL)
        if metrics and ("deny all;" not in metrics.group(1) or any(
                a not in ("127.0.0.1", "::1") for a in re.findall(r"allow\s+([^;]+);",
                                                                  metrics.group(1)))):
            problems.append("/metrics open on the public listener")
    for block in status:
        allowed = re.findall(r"allow\s+([^;]+);", block)
        if "deny all;" not in block or not all(_private(a) for a in allowed):
            problems.append("the status listener lets in more than loopback / the stack network")
    if not status:
        problems.append("no status listener")
    listen = re.findall(r"listen\s+([^;]+);", status[0]) if status else []
    return Check("security", name, "FAIL" if problems else "PASS",
                 "; ".join(problems) if problems
                 else f"status listener {', '.join(listen)} lets in {', '.join(allowed)} only; "
                      "public /metrics loopback only")


def _password(settings: Settings) -> Check:
    weak = settings.grafana_password in DEFAULT_PASSWORDS
    return Check("security", "no default Grafana password", "FAIL" if weak else "PASS",
                 "GRAFANA_PASSWORD is empty or a default; set a strong one in .env" if weak
                 else "GRAFANA_PASSWORD is set and not a default")


def _monitoring(settings: Settings) -> Check:
    """Every scrape target up and the alert rules loaded, when Prometheus runs."""
    base = f"http://127.0.0.1:{settings.prometheus_port}"
    name = "Prometheus targets and rules"
    found = probe(f"{base}/-/ready", timeout=1.0)
    if not found.healthy:
        return Check("monitoring", name, "WARN", f"Prometheus is not running on "
                     f":{settings.prometheus_port} ({found.error or found.status_code})")
    try:
        targets = shared_client().get(f"{base}/api/v1/targets", timeout=2).json()
        rules = shared_client().get(f"{base}/api/v1/rules", timeout=2).json()
    except (httpx.HTTPError, ValueError) as exc:
        return Check("monitoring", name, "FAIL", f"Prometheus API: {exc}")
    active = targets["data"]["activeTargets"]
    if settings.fleet:  # a fleet's Prometheus scrapes every host: this host's are checked
        active = [t for t in active if t["labels"].get("host") == settings.fleet_host]
    down = [t["labels"].get("service", t["scrapeUrl"]) for t in active if t["health"] != "up"]
    loaded = sum(len(g["rules"]) for g in rules["data"]["groups"])
    if down or not loaded:
        detail = (f"targets down: {', '.join(down)}" if down else "") + \
            ("; " if down and not loaded else "") + ("no alert rules loaded" if not loaded else "")
        return Check("monitoring", name, "FAIL", detail)
    return Check("monitoring", name, "PASS",
                 f"{len(active)} targets up, {loaded} alert rules loaded")


async def run(settings: Settings, options: Options, config: Path,
              corpus: Corpus) -> list[Check]:
    """Every check, in the seed's order, each under `options.check_timeout`; the speed check
    sends `corpus` (VRM_REQUESTS)."""
    proxy = f"http://{options.host}"
    t = options.check_timeout

    async def check(area: str, name: str, work: Callable[[], Awaitable[Check | list[Check]]],
                    waiting_on: str) -> list[Check]:
        return await bounded(area, name, work, t, waiting_on)

    def blocking(fn: Callable[..., Check | list[Check]], *args: object) -> Callable[
            [], Awaitable[Check | list[Check]]]:
        return lambda: asyncio.to_thread(fn, *args)

    checks = []
    for name, url in _health_urls(settings, proxy).items():
        checks += await check("availability", name, blocking(_availability, name, url,
                                                             options.quick), url)
    failed = {c.name: c.detail for c in checks if c.result != "PASS"}
    for backend in Backend:
        row = f"{backend} /health"
        if row in failed:
            why = f"not checked: {row} failed ({failed[row]})"
            checks += [Check("backends", f"{backend} names itself", "SKIP", why),
                       Check("backends", f"{backend} VRAM series", "SKIP", why)]
        else:
            checks += await check("backends", f"{backend} conventions",
                                  blocking(_conventions, settings, backend, options.quick),
                                  settings.backend_url(backend))
    down = [f"{row} failed ({detail})" for row, detail in failed.items()
            if row != "proxy /health"]
    if down:
        checks.append(Check("performance", "rust faster than typescript", "SKIP",
                            f"not measured: {'; '.join(down)}"))
    else:
        checks += await check("performance", "rust faster than typescript",
                              lambda: _performance(settings, options.speedup_factor, corpus,
                                                   options.request_timeout),
                              "the backends")
    checks += await check("load balancing", "observed split matches served",
                          lambda: _balancing(settings, proxy, options.split_tolerance,
                                             options.request_timeout), f"{proxy} (the proxy)")
    checks += await check("security", "security headers", blocking(_headers, proxy,
                                                                   options.quick),
                          f"{proxy}/health")
    checks += await check("security", "rate limit rejects a burst",
                          lambda: _rate_limit(settings, proxy, options.request_timeout),
                          f"{proxy} (the proxy)")
    checks += await check("security", "status endpoints loopback only",
                          blocking(_status_loopback_only, config), str(config))
    checks += await check("security", "no default Grafana password",
                          blocking(_password, settings), "the settings")
    checks += await check("monitoring", "Prometheus targets and rules",
                          blocking(_monitoring, settings),
                          f"Prometheus on :{settings.prometheus_port}")
    return checks


def as_dicts(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]


def table(checks: list[Check]) -> str:
    marks = {"PASS": "✓ PASS", "WARN": "! WARN", "FAIL": "✗ FAIL", "SKIP": "- SKIP"}
    lines = [f"{'AREA':16}{'CHECK':36}{'RESULT':8}  DETAIL"]
    lines += [f"{c.area:16}{c.name:36}{marks[c.result]:8}  {c.detail}" for c in checks]
    return "\n".join(lines)

