"""Benchmark: the built-in engine's capacity on one core, and its accuracy against ab.

Capacity: the engine pinned to CPU 0, nginx (keep-alive on, as load tools expect) pinned to
CPU 1, loading nginx's static /vrm/ping. Accuracy: p50 of the engine and of ab at the same
concurrency on the same rehearsal backend.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.perf.test_rollback_latency import _print_table
from tests.support import REPO, clean_env, new_stack
from vrm_tui.bench.engine import Target, closed_loop
from vrm_tui.bench.external import run_ab
from vrm_tui.system.procs import children

CAPACITY = """
import asyncio, os, sys
from vrm_tui.bench.engine import Target, closed_loop, install_uvloop
os.sched_setaffinity(0, {0})
install_uvloop()
for concurrency in (16, 32, 64):
    r = asyncio.run(closed_loop(Target("ping", sys.argv[1]), concurrency, duration=5))
    print(concurrency, round(r.rps), r.failed, r.latency.percentile_ms(50), flush=True)
"""


def test_engine_capacity_and_accuracy(tmp_path: Path) -> None:
    cores = os.cpu_count()
    if cores is None or cores < 2:
        pytest.skip("needs two cores: one for the engine, one for nginx")
    stack = new_stack(tmp_path, PROXY_KEEPALIVE_TIMEOUT="65")
    stack.up()
    try:
        master = stack.runtime.proxy_worker_pids()
        record = stack.runtime._record("vision-proxy")
        assert record is not None
        for pid in {record.pid, *master, *children(record.pid)}:
            os.sched_setaffinity(pid, {1})
        out = subprocess.run([sys.executable, "-c", CAPACITY, f"{stack.proxy}/vrm/ping"],
                             cwd=REPO, env=clean_env(), capture_output=True, text=True,
                             timeout=120, check=True).stdout
        rows: list[dict[str, object]] = []
        for line in out.splitlines():
            concurrency, rps, failed, p50 = line.split()
            rows.append({"measure": f"engine on one core, c={concurrency}",
                         "value": f"{rps} req/s", "detail": f"p50 {float(p50):.2f} ms, "
                         f"{failed} failed", "goal": ">= 15000 req/s"})
        target = Target("typescript", f"{stack.settings.backend_url('typescript')}"
                        "/api/v1/vision/process", "POST",
                        {"model": "resnet50", "image_size": [224, 224]})
        asyncio.run(closed_loop(target, 1, requests=3))
        theirs = run_ab(target, 400, 8)
        ours = asyncio.run(closed_loop(target, 8, requests=400))
        a, b = theirs.latency.percentile_ms(50), ours.latency.percentile_ms(50)
        assert a is not None and b is not None
        rows.append({"measure": "p50 vrm vs ab (c=8, typescript)",
                     "value": f"{b:.2f} vs {a:.2f} ms", "detail": f"{100 * (b - a) / a:+.1f}%",
                     "goal": "within 10%"})
        _print_table("Load engine (pinned: engine CPU 0, nginx CPU 1)", rows)
    finally:
        stack.down()


pytestmark = pytest.mark.perf
