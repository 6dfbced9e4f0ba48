"""Production validation (the seed's validate.sh): PASS / WARN / FAIL rows with the evidence.

Availability, performance, load balancing, security, monitoring. Each check is a function
that returns a Check and never raises: a check that cannot run says why.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import httpx

from vrm_tui.bench.engine import Target, closed_loop
from vrm_tui.core.backend import Backend
from vrm_tui.core.corpus import Corpus
from vrm_tui.core.stats import median_ratio
from vrm_tui.settings import Settings
from vrm_tui.telemetry.health import probe
from vrm_tui.telemetry.http import shared_client
from vrm_tui.telemetry.offers import probe_offers
from vrm_tui.traffic.served import ProxyUnreachable, read_served

DEFAULT_PASSWORDS = ("", "admin", "admin123")
SECURITY_HEADERS = ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")


@dataclass(frozen=True)
class Check:
    area: str
    name: str
    result: str  # PASS | WARN | FAIL
    detail: str


@dataclass(frozen=True)
class Options:
    host: str  # host:port of the proxy
    speedup_factor: float = 2.0
    split_tolerance: float = 5.0  # percentage points


def _availability(settings: Settings, proxy: str) -> list[Check]:
    checks = []
    health = settings.health_path
    for name, url in (("proxy /health", f"{proxy}/health"),
                      ("rust /health", f"{settings.backend_url('rust')}{health}"),
                      ("typescript /health", f"{settings.backend_url('typescript')}{health}")):
        found = probe(url, timeout=2.0)
        checks.append(Check("availability", name, "PASS" if found.healthy else "FAIL",
                            f"{found.latency_ms} ms" if found.healthy else found.error))
    return checks


def _conventions(settings: Settings) -> list[Check]:
    """What each backend offers of vrm's conventions: a lack is a WARN saying what vrm does
    instead; only a backend that names itself as the other one FAILs (miswired ports)."""
    checks = []
    for backend in Backend:
        offers = probe_offers(backend, settings.backend_url(backend), settings.health_path,
                              settings.max_vram_gb)
        said = offers.names_itself
        if offers.miswired:
            checks.append(Check("backends", f"{backend} names itself", "FAIL",
                                f"{settings.backend_url(backend)} answers as {said}: backends "
                                "wired to the wrong ports"))
        elif said is None:
            checks.append(Check("backends", f"{backend} names itself", "WARN",
                                f"{backend}: no X-VRM-Backend of its own: the proxy names it"))
        else:
            checks.append(Check("backends", f"{backend} names itself", "PASS",
                                f"X-VRM-Backend: {said}, as the proxy names it"))
        vram = offers.vram
        if not vram.reported:
            checks.append(Check("backends", f"{backend} VRAM series", "WARN",
                                f"{backend}: no vision_manager_vram_used_gb: VRAM gate uses "
                                "NVML"))
        else:
            checks.append(Check("backends", f"{backend} VRAM series",
                                "PASS" if vram.used_gb is not None else "WARN",
                                f"{vram.used_gb:.1f} GB in use" if vram.used_gb is not None
                                else vram.error))
    return checks


async def _performance(settings: Settings, factor: float, corpus: Corpus) -> Check:
    samples = {}
    for backend in Backend:
        target = Target.of(backend, settings.backend_url(backend), corpus, backend)
        result = await closed_loop(target, 4, duration=2.0)
        if result.failed or not result.ok:
            return Check("performance", "rust faster than typescript", "FAIL",
                         f"{backend}: {result.failed} of {result.requests} requests failed")
        samples[backend] = [v for s in result.samples_ms.values() for v in s]
    found = median_ratio(samples[Backend.TYPESCRIPT], samples[Backend.RUST])
    if found is None:
        return Check("performance", "rust faster than typescript", "WARN", "too few samples")
    detail = (f"{found.ratio:.2f}x at p50 (95% CI {found.low:.2f}-{found.high:.2f}), "
              f"want >= {factor:g}x; requests: {corpus.name}")
    verdict = "PASS" if found.low >= factor else ("WARN" if found.ratio > 1 else "FAIL")
    return Check("performance", "rust faster than typescript", verdict, detail)


async def _balancing(settings: Settings, proxy: str, tolerance: float) -> Check:
    try:  # the served split is readable on this host's status listener only
        expected = read_served("127.0.0.1", settings.proxy_status_port, timeout=2.0).split
        source = "serving"
    except ProxyUnreachable:
        expected, source = settings.split, "configured (the status listener did not answer)"
    # Stay inside the rate limiter's burst, so this check never trips it.
    count = 400 if settings.proxy_rate_limit == 0 else min(400, 2 * settings.proxy_rate_limit)
    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for _ in range(count):
            async with session.get(f"{proxy}/api/v1/vision/metrics") as response:
                await response.read()
                # The proxy names the backend that answered (nginx's $vrm_backend_name).
                name = response.headers.get("X-VRM-Backend")
                ok = response.status < 400
                seen[name if ok and name else ("unnamed" if ok else
                                               f"http {response.status}")] += 1
    answered = seen["rust"] + seen["typescript"]
    if seen["unnamed"] and answered + seen["unnamed"] == count:
        return Check("load balancing", "observed split matches served", "WARN",
                     f"{seen['unnamed']} of {count} answers not named by the proxy (backend "
                     "host names on the same port?): cannot count the split")
    if answered < count:
        return Check("load balancing", "observed split matches served", "FAIL",
                     f"{count - answered} of {count} requests failed: {dict(seen)}")
    observed = 100 * seen["rust"] / answered
    off = abs(observed - expected.rust)
    return Check("load balancing", "observed split matches served",
                 "PASS" if off <= tolerance else "FAIL",
                 f"rust {observed:.1f}% of {answered} requests; {source} {expected.rust}% "
                 f"(tolerance {tolerance:g} points)")


async def _rate_limit(settings: Settings, proxy: str) -> Check:
    if settings.proxy_rate_limit == 0:
        return Check("security", "rate limit rejects a burst", "FAIL",
                     "rate limiting is off (PROXY_RATE_LIMIT=0)")
    # The balancing check may have used the whole burst allowance (2 x rate); the bucket
    # drains at `rate` per second, so two seconds and a margin empty it.
    await asyncio.sleep(2.5)
    burst = 3 * settings.proxy_rate_limit + 50
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def one() -> None:
            try:
                async with session.get(f"{proxy}/api/v1/vision/metrics") as response:
                    await response.read()
                    statuses[response.status] += 1
            except (aiohttp.ClientError, TimeoutError):  # a slow backend under the burst
                statuses[0] += 1

        await asyncio.gather(*(one() for _ in range(burst)))
    rejected = statuses[429]
    return Check("security", "rate limit rejects a burst", "PASS" if rejected else "FAIL",
                 f"{rejected} of {burst} burst requests got 429 "
                 f"(PROXY_RATE_LIMIT={settings.proxy_rate_limit}/s)")


def _headers(proxy: str) -> list[Check]:
    try:
        response = shared_client().get(f"{proxy}/health", timeout=2.0)
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
    """Every check, in the seed's order; the speed check sends `corpus` (VRM_REQUESTS)."""
    proxy = f"http://{options.host}"
    checks = _availability(settings, proxy)
    down = any(c.result == "FAIL" for c in checks)
    checks += _conventions(settings)
    if down:
        checks.append(Check("performance", "rust faster than typescript", "FAIL",
                            "skipped: a service is down"))
    else:
        checks.append(await _performance(settings, options.speedup_factor, corpus))
    checks.append(await _balancing(settings, proxy, options.split_tolerance))
    checks += _headers(proxy)
    checks.append(await _rate_limit(settings, proxy))
    checks.append(_status_loopback_only(config))
    checks.append(_password(settings))
    checks.append(_monitoring(settings))
    return checks


def as_dicts(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]


def table(checks: list[Check]) -> str:
    marks = {"PASS": "✓ PASS", "WARN": "! WARN", "FAIL": "✗ FAIL"}
    lines = [f"{'AREA':16}{'CHECK':36}{'RESULT':8}  DETAIL"]
    lines += [f"{c.area:16}{c.name:36}{marks[c.result]:8}  {c.detail}" for c in checks]
    return "\n".join(lines)

