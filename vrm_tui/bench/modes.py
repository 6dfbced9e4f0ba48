"""The seed's benchmark modes: benchmark, stress, compare, monitor, all.

Each mode returns a report dict (JSON-ready) and the Results behind it; `report.py` writes
them to `results/<timestamp>/`. Nothing here prints: the CLI and the TUI show progress
through the `progress` callback.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vrm_tui.bench.engine import Result, Target, closed_loop, open_loop
from vrm_tui.core.backend import Backend
from vrm_tui.core.corpus import Corpus, configured
from vrm_tui.core.errors import BadInput
from vrm_tui.core.stats import median_ratio
from vrm_tui.settings import Settings
from vrm_tui.system.procs import children, start_ticks
from vrm_tui.telemetry.backend_metrics import scrape_vram

Progress = Callable[[str, Result, float], None]  # (phase, result so far, fraction of the run)

# Through the proxy, requests are paced at this share of PROXY_RATE_LIMIT: the limit counts
# every request from this client address (a TUI's or a smoke test's too), and nginx's
# bucket tolerates a burst, not a steady excess.
PACE_SHARE = 0.8
PACED_MAX_S = 30.0  # a paced count-based proxy run sends at most this long (a low limit)
STRESS_CAP = 256  # stress doubles concurrency up to this (or --concurrency)


@dataclass(frozen=True)
class Options:
    requests: int = 500
    concurrency: int = 10
    duration: float | None = None  # seconds per target (per step for stress), not a count
    rate: float | None = None  # open loop at this rate (for --requests, or --duration)
    stress_p99_ms: float = 1000.0
    stress_step_s: float = 3.0
    stress_cap: int = STRESS_CAP  # the most requests in flight stress tries
    corpus: Corpus | None = None  # what to send; None: the deployment's (VRM_REQUESTS)


def refuse(mode: str, options: Options) -> None:
    """Refuse, before anything runs, an option that has no meaning for `mode`."""
    if mode in ("stress", "all") and options.rate is not None:
        raise BadInput(f"--rate={options.rate:g}: stress finds the highest rate itself (it "
                       "doubles the requests in flight), so it takes no --rate"
                       + ("; `all` runs stress: run the other modes one by one"
                          if mode == "all" else ""))


def proxy_pace(settings: Settings, options: Options) -> tuple[float | None, str]:
    """The rate to load the proxy at, and why: --rate when given, else under the proxy's own
    rate limit, so a benchmark measures the backends rather than vrm's limiter (its 429s
    would read as errors). None: closed loop (the limit is off)."""
    limit = settings.proxy_rate_limit
    if options.rate is not None:
        over = limit > 0 and options.rate > limit
        return options.rate, f"{options.rate:g} req/s as asked (--rate)" + (
            f", above PROXY_RATE_LIMIT={limit}/s: expect 429s from the proxy" if over else "")
    if limit == 0:
        return None, ""
    rate = round(PACE_SHARE * limit, 1)
    return rate, (f"paced at {rate:g} req/s, under the proxy's rate limit "
                  f"(PROXY_RATE_LIMIT={limit}/s per client address); --rate sets another")


def share(progress: Progress | None, done: int, total: int) -> Progress | None:
    """Report phase `done` of `total` as its share of the whole run, so the bar never jumps
    back between phases."""
    if progress is None:
        return None
    last = 0.0

    def report(phase: str, result: Result, fraction: float) -> None:
        nonlocal last
        # a phase's own fraction may pass 1 (a duration run's last report): clamped, so the
        # next phase starts where this one ended (issue 22: 55% then 30%)
        last = max(last, (done + min(1.0, max(0.0, fraction))) / total)
        progress(phase, result, last)

    return report


def targets(settings: Settings, corpus: Corpus | None = None) -> dict[str, Target]:
    """Each backend directly, and the proxy, each sent the deployment's request corpus."""
    chosen = corpus or configured(settings.requests, settings.deploy_dir, settings.rehearsal)
    return {
        "rust": Target.of("rust", settings.backend_url("rust"), chosen, Backend.RUST),
        "typescript": Target.of("typescript", settings.backend_url("typescript"), chosen,
                                Backend.TYPESCRIPT),
        "proxy": Target.of("proxy", settings.proxy_url, chosen),
    }


async def _run(phase: str, target: Target, concurrency: int, requests: int | None,
               duration: float | None, progress: Progress | None,
               stop: asyncio.Event | None = None, rate: float | None = None) -> Result:
    """Closed loop, or open loop at `rate` for `duration` (else `requests` of them)."""
    def report(result: Result, fraction: float) -> None:
        if progress:
            progress(phase, result, fraction)

    if rate:
        return await open_loop(target, rate, duration, progress=report, stop=stop,
                               requests=None if duration else requests)
    return await closed_loop(target, concurrency, requests=None if duration else requests,
                             duration=duration, progress=report, stop=stop)


def _speedup(rust: Result, typescript: Result) -> dict[str, Any] | None:
    fast = rust.samples_ms.get("rust") or [v for s in rust.samples_ms.values() for v in s]
    slow = typescript.samples_ms.get("typescript") or [
        v for s in typescript.samples_ms.values() for v in s]
    found = median_ratio(slow, fast)
    if found is None:
        return None
    return {"ratio": round(found.ratio, 2), "ci_low": round(found.low, 2),
            "ci_high": round(found.high, 2), "confidence": found.confidence,
            "rust_p50_ms": rust.latency.percentile_ms(50),
            "typescript_p50_ms": typescript.latency.percentile_ms(50)}


async def benchmark(settings: Settings, options: Options,
                    progress: Progress | None = None,
                    stop: asyncio.Event | None = None) -> dict[str, Any]:
    """Each backend directly (closed loop, or --rate), then the proxy paced by `proxy_pace`."""
    results = {}
    chosen = targets(settings, options.corpus)
    pace, why = proxy_pace(settings, options)
    proxy_requests = options.requests
    if pace and options.rate is None and options.duration is None \
            and options.requests > pace * PACED_MAX_S:
        proxy_requests = max(1, int(pace * PACED_MAX_S))
        why += (f"; {proxy_requests} of {options.requests} requests, {PACED_MAX_S:g} s at that "
                "rate (--duration or --rate to choose)")
    for done, (name, target) in enumerate(chosen.items()):
        proxied = name == "proxy"
        results[name] = await _run(f"benchmark {name}", target, options.concurrency,
                                   proxy_requests if proxied else options.requests,
                                   options.duration, share(progress, done, len(chosen)), stop,
                                   pace if proxied else options.rate)
    return {"mode": "benchmark", "results": {k: r.to_dict() for k, r in results.items()},
            "speedup": _speedup(results["rust"], results["typescript"]),
            "notes": {"proxy": why} if why else {}, "_results": results}


async def compare(settings: Settings, options: Options, progress: Progress | None = None,
                  stop: asyncio.Event | None = None) -> dict[str, Any]:
    """The quick one (~10 s): each backend directly for 5 s (closed loop, or --rate)."""
    found = {}
    for done, name in enumerate(Backend):
        found[name] = await _run(f"compare {name}", targets(settings, options.corpus)[name],
                                 max(1, min(options.concurrency, 8)), None,
                                 options.duration or 5.0, share(progress, done, len(Backend)),
                                 stop, options.rate)
    notes = {str(b): f"{options.rate:g} req/s as asked (--rate)" for b in Backend} \
        if options.rate else {}
    return {"mode": "compare", "results": {k: r.to_dict() for k, r in found.items()},
            "speedup": _speedup(found[Backend.RUST], found[Backend.TYPESCRIPT]),
            "notes": notes, "_results": found}


async def stress(settings: Settings, options: Options, progress: Progress | None = None,
                 stop: asyncio.Event | None = None) -> dict[str, Any]:
    """Double concurrency per backend until errors > 1% or p99 over the threshold, or up to
    `stress_cap`; a run that ends at the cap found a floor, not the maximum, and says so."""
    summary: dict[str, Any] = {}
    per_backend = options.stress_cap.bit_length()  # steps 1, 2, 4 ... up to the cap
    for index, name in enumerate(Backend):
        steps: list[dict[str, Any]] = []
        best = 0.0
        concurrency = 1
        stopped = "stopped"  # by the operator, unless the loop says otherwise
        while not (stop and stop.is_set()):
            if concurrency > options.stress_cap:
                stopped = "cap"
                break
            result = await _run(f"stress {name} c={concurrency}",
                                targets(settings, options.corpus)[name], concurrency, None,
                                options.duration or options.stress_step_s,
                                share(progress, index * per_backend + len(steps),
                                       len(Backend) * per_backend), stop)
            p99 = result.latency.percentile_ms(99)
            passed = result.error_rate <= 0.01 and p99 is not None \
                and p99 <= options.stress_p99_ms
            steps.append({"concurrency": concurrency, "rps": round(result.rps, 1),
                          "p99_ms": p99, "error_rate": round(result.error_rate, 4),
                          "passed": passed})
            if not passed:
                stopped = "limit"
                break
            best = max(best, result.rps)
            concurrency *= 2
        summary[name] = {"max_sustainable_rps": round(best, 1), "steps": steps,
                         "stopped": stopped, "cap": options.stress_cap,
                         "limit": f"error rate <= 1%, p99 <= {options.stress_p99_ms:g} ms"}
    return {"mode": "stress", "stress": summary}


def _proc_sample(pid: int) -> tuple[float, float] | None:
    """(cpu seconds so far, RSS MB) of a process and its children (nginx's workers), or None
    when it is gone."""
    cpu = rss = 0.0
    for member in (pid, *children(pid)):
        try:
            stat = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            rss_kb = next(int(line.split()[1]) for line in
                          Path(f"/proc/{member}/status").read_text().splitlines()
                          if line.startswith("VmRSS:"))
        except (OSError, StopIteration, IndexError, ValueError):
            if member == pid:
                return None
            continue
        cpu += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        rss += rss_kb / 1024
    return cpu, rss


async def monitor(settings: Settings, options: Options, pids: dict[str, int],
                  progress: Progress | None = None,
                  stop: asyncio.Event | None = None) -> dict[str, Any]:
    """Load the proxy (paced by `proxy_pace`) while sampling each service's CPU and memory,
    and VRAM, every second."""
    duration = options.duration or 20.0
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in pids}
    vram: dict[str, list[float]] = {"rust": [], "typescript": []}
    done = asyncio.Event()

    async def sample() -> None:
        last = {name: _proc_sample(pid) for name, pid in pids.items()}
        last_t = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for name, pid in pids.items():
                current = _proc_sample(pid) if start_ticks(pid) is not None else None
                previous = last.get(name)
                if current and previous:
                    cpu = (current[0] - previous[0]) / (now - last_t) * 100
                    samples[name].append({"cpu_pct": round(cpu, 1), "rss_mb": round(current[1],
                                                                                     1)})
                last[name] = current
            last_t = now
            for backend in vram:
                reading = await asyncio.to_thread(scrape_vram, backend,
                                                  settings.backend_url(backend),
                                                  settings.max_vram_gb)
                if reading.used_gb is not None:
                    vram[backend].append(reading.used_gb)

    pace, why = proxy_pace(settings, options)
    sampler = asyncio.create_task(sample())
    result = await _run("monitor proxy", targets(settings, options.corpus)["proxy"],
                        options.concurrency, None, duration, progress, stop, pace)
    done.set()
    await sampler

    def summary(values: list[float]) -> dict[str, float | None]:
        return {"mean": round(sum(values) / len(values), 2) if values else None,
                "max": max(values) if values else None}

    return {"mode": "monitor", "results": {"proxy": result.to_dict()},
            "notes": {"proxy": why} if why else {},
            "resources": {name: {"cpu_pct": summary([s["cpu_pct"] for s in rows]),
                                 "rss_mb": summary([s["rss_mb"] for s in rows])}
                          for name, rows in samples.items()},
            "vram_gb": {b: summary(v) for b, v in vram.items()}, "_results": {"proxy": result}}
