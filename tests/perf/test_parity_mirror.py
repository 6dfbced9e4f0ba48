"""Benchmarks for parity mirroring.

1. Client latency at 200 req/s with parity off, then on at a 100% sample (nginx mirrors every
   balanced request; the comparator answers at once and compares at PARITY_MAX_RPS). Goal: p99
   within 5%. Latency is measured from each request's intended send (open loop); phases
   alternate to spread the shared machine's noise.
2. Comparator throughput on one core: nginx answers instantly with 2 KB JSON (volatile fields
   included) for both backends; samples are posted straight to /mirror. Reported as compared
   requests per second of the comparator's own CPU time (goal >= 1,000), and per wall second.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.perf.test_parity_diff_rate import answer
from tests.support import REPO, Stack, steady_stream
from vrm_tui.core.stats import percentile
from vrm_tui.system.procs import free_ports
from vrm_tui.traffic import nginx

RATE = 200
SECONDS = 10.0
ROUNDS = 2


async def _phase(stack: Stack) -> tuple[list[float], int]:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(SECONDS, stop.set)
    sent = await steady_stream(f"{stack.proxy}/api/v1/vision/metrics", RATE, stop,
                               limit_s=SECONDS + 5)
    return [s.end - s.due for s in sent], sum(1 for s in sent if s.status != 200)


@pytest.mark.perf
def test_client_latency_parity_off_vs_on_at_full_sample(stack: Stack) -> None:
    results: dict[str, tuple[list[float], int]] = {"off": ([], 0), "on 100%": ([], 0)}
    for _ in range(ROUNDS):
        for name in results:
            if name == "off":
                stack.console.parity_off()
            else:
                stack.console.parity_on(100)
            latencies, failed = asyncio.run(_phase(stack))
            results[name] = (results[name][0] + latencies, results[name][1] + failed)
    report = stack.console.parity_report()
    print(f"\nclient latency at {RATE} req/s, GET /api/v1/vision/metrics, {ROUNDS}x{SECONDS:g}s "
          "per phase (from the intended send)")
    print(f"{'parity':10} {'requests':>9} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8}")
    p99 = {}
    for name, (latencies, failed) in results.items():
        p50 = 1000 * (percentile(latencies, 0.5) or 0)
        p99[name] = 1000 * (percentile(latencies, 0.99) or 0)
        print(f"{name:10} {len(latencies):>9} {failed:>7} {p50:>8.2f} {p99[name]:>8.2f}")
        assert failed == 0
    print(f"p99 on/off: {p99['on 100%'] / p99['off']:.3f} (goal <= 1.05); comparator: "
          f"sampled {report.results.sampled}, compared {report.total.compared}, "
          f"dropped {report.results.dropped} (PARITY_MAX_RPS "
          f"{stack.settings.parity_max_rps:g})")


def _instant_backends(tmp: Path, ports: tuple[int, int]) -> subprocess.Popen[bytes]:
    """nginx answering 2 KB of JSON at once on both ports; request_id differs every call."""
    body = json.loads(answer(random.Random(3), 0))
    body["request_id"] = "$request_id"
    text = json.dumps(body)
    assert 1500 <= len(text) <= 2600 and "'" not in text
    servers = "\n".join(
        f"server {{ listen 127.0.0.1:{port}; access_log off; default_type application/json;"
        f" location / {{ return 200 '{text}'; }} }}" for port in ports)
    conf = tmp / "instant.conf"
    conf.write_text(f"worker_processes 1; daemon off; pid {tmp}/instant.pid; "
                    f"error_log {tmp}/instant.log; events {{ worker_connections 4096; }} "
                    f"http {{ client_body_temp_path {tmp}; keepalive_requests 100000; "
                    f"{servers} }}")
    return subprocess.Popen([nginx.nginx_binary(), "-c", str(conf)], stderr=subprocess.DEVNULL)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.perf
def test_comparator_throughput_on_one_core(tmp_path: Path) -> None:
    primary, candidate, port = free_ports(3)
    total = 6000
    backends = _instant_backends(tmp_path, (primary, candidate))
    comparator = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "vrm_tui.parity", "--port", str(port),
         "--primary", f"http://127.0.0.1:{primary}",
         "--candidate", f"http://127.0.0.1:{candidate}", "--state-dir", str(tmp_path / "s"),
         "--max-rps", "1000000", "--queue-size", str(total + 1)],
        cwd=REPO, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "comparator did not start"
            time.sleep(0.05)
        body = json.dumps({"model": "yolov8", "image_size": [640, 480]}).encode()

        async def feed() -> None:
            async with aiohttp.ClientSession() as session:
                numbers = iter(range(total))

                async def worker() -> None:
                    for _ in numbers:
                        async with session.post(f"{base}/mirror/api/v1/vision/process",
                                                data=body, headers={
                                                    "X-VRM-Method": "POST",
                                                    "Content-Type": "application/json"}) as r:
                            assert r.status == 204

                await asyncio.gather(*(worker() for _ in range(8)))

        cpu0, wall0 = _cpu_seconds(comparator.pid), time.perf_counter()
        asyncio.run(feed())
        while (status := httpx.get(f"{base}/status", timeout=5).json())["compared"] \
                + status["failed"] < total:
            time.sleep(0.02)
        cpu, wall = _cpu_seconds(comparator.pid) - cpu0, time.perf_counter() - wall0
    finally:
        comparator.terminate()
        comparator.wait(10)
        backends.terminate()
        backends.wait(10)
    assert status["failed"] == 0 and status["dropped"] == 0
    per_cpu, per_wall = status["compared"] / cpu, status["compared"] / wall
    print(f"\ncomparator, one core (taskset -c 0), instant 2 KB JSON backends, {total} samples:")
    print(f"{'compared':>9} {'cpu s':>7} {'wall s':>7} {'per cpu-s':>10} {'per wall-s':>11}")
    print(f"{status['compared']:>9} {cpu:>7.2f} {wall:>7.2f} {per_cpu:>10,.0f} "
          f"{per_wall:>11,.0f}   (goal >= 1,000 compared/s)")
