"""Zero-reload weight changes against a real nginx with Debian's Lua module: the split lives
in shared memory, the disk stays the truth, keep-alive clients lose nothing."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time

import pytest

from tests.support import Sent, Stack, clean_env, sample_backends, steady_stream
from vrm_tui.core.backend import Backend
from vrm_tui.core.split import Split
from vrm_tui.system.procs import worker_retired
from vrm_tui.traffic import live

pytestmark = pytest.mark.skipif(not live.modules_installed(),
                                reason="LUA MODULE MISSING: scripts/test.sh installs "
                                       "libnginx-mod-http-lua")

RATE = 320  # requests per second, half keep-alive GETs, half keep-alive POSTs


def test_a_weight_change_does_not_reload(stack: Stack) -> None:
    assert stack.runtime.proxy_params().live is not None, "the local runtime uses the module"
    workers = stack.runtime.proxy_worker_pids()
    for weight in (20, 70, 0, 100, 35):
        result = stack.controller.set_split(Split(weight))
        assert result.verified and stack.controller.served().split == Split(weight)
    assert stack.runtime.proxy_worker_pids() == workers, "no reload: the same workers serve"
    written = live.read_split(stack.settings.paths.nginx_split)
    assert written == (stack.controller.served().generation, Split(35))


async def test_rust_zero_gets_no_request_and_no_retry(stack: Stack) -> None:
    stack.controller.set_split(Split(30))
    stack.controller.rollback()
    source = stack.console.traffic_source(backfill=False)
    seen = await sample_backends(f"{stack.proxy}/api/v1/vision/metrics", 300)
    assert seen == {"typescript": 300}
    await asyncio.sleep(0.2)
    assert source.poll().backends[Backend.RUST].requests == 0


async def test_keep_alive_stream_over_a_hundred_changes_loses_nothing(stack: Stack) -> None:
    assert stack.settings.proxy_keepalive_timeout > 0, "keep-alive is on by default"
    stop = asyncio.Event()
    body = {"model": "resnet50", "image_size": [64, 64]}
    weights = random.Random(11).choices(range(0, 101), k=100)

    window: list[float] = []

    def change() -> None:
        window.append(time.perf_counter())  # the clock `Sent.start` uses
        for index, weight in enumerate(weights):
            stack.controller.set_split(Split(weight))
            if index % 10 == 9:
                stack.controller.rollback()
        window.append(time.perf_counter())

    streams = [asyncio.create_task(steady_stream(f"{stack.proxy}/api/v1/vision/metrics",
                                                 RATE / 2, stop)),
               asyncio.create_task(steady_stream(f"{stack.proxy}/api/v1/vision/process",
                                                 RATE / 2, stop, "POST", body))]
    await asyncio.sleep(0.5)
    await asyncio.to_thread(change)
    await asyncio.sleep(0.3)
    stop.set()
    sent: list[Sent] = [s for stream in streams for s in await stream]
    failures = [s for s in sent if s.error or s.status != 200]
    # The changes take 0.2-0.6 s here (faster elsewhere): the stream must have run through
    # them, whatever their speed, and around them.
    during = [s for s in sent if window[0] <= s.start <= window[1]]
    assert during and len(sent) >= RATE // 2, f"{len(during)} of {len(sent)} during the changes"
    assert not failures, f"{len(failures)} of {len(sent)} failed, first: {failures[:3]}"


KILL_BEFORE_SET = """
import os, signal, sys
from vrm_tui.stack.local import LocalRuntime
LocalRuntime.set_live_split = lambda *args, **kw: os.kill(os.getpid(), signal.SIGKILL)
from vrm_tui.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_between_the_disk_write_and_the_memory_set(stack: Stack) -> None:
    stack.controller.set_split(Split(20))
    killed = subprocess.run([sys.executable, "-c", KILL_BEFORE_SET, "deploy", "--rust-weight",
                             "60"], cwd=stack.deploy_dir, env=clean_env(), capture_output=True,
                            text=True, timeout=60, check=False)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert stack.controller.served().split == Split(20), "written, never set"
    status = stack.vrm("status")
    assert "PENDING" in status.stdout and "rust 60%" in status.stdout, status.stdout
    assert stack.vrm("rollback").returncode == 0
    after = stack.vrm("status")
    assert "PENDING" not in after.stdout and stack.controller.served().split == Split(0)


def test_a_restarted_nginx_serves_the_last_written_split(stack: Stack) -> None:
    stack.controller.set_split(Split(45))
    generation = stack.controller.served().generation
    from vrm_tui.core import services

    stack.runtime.stop_service(services.PROXY)
    stack.up()
    served = stack.controller.served()
    assert (served.generation, served.split) == (generation, Split(45))


def test_a_real_config_change_still_reloads_and_keeps_the_split(stack: Stack) -> None:
    stack.controller.set_split(Split(25))
    workers = stack.runtime.proxy_worker_pids()
    result = stack.controller.reload()
    assert result.after == Split(25) and stack.controller.served().split == Split(25)
    # New workers serve, the old ones are retired (maybe still "shutting down" for a moment).
    assert stack.runtime.proxy_worker_pids() - workers, "a reload starts new workers"
    assert all(worker_retired(pid) for pid in workers)
    assert stack.controller.set_split(Split(55)).verified


def test_the_reload_path_remains_when_turned_off(tmp_path: object, stack: Stack) -> None:
    stack.reload_settings(VRM_LIVE_SPLIT="0")
    assert stack.runtime.proxy_params().live is None
    workers = stack.runtime.proxy_worker_pids()
    assert stack.controller.set_split(Split(15)).verified
    # A reload: new workers, and every old one has stopped accepting (it may still be
    # "shutting down" for a moment: the controller promises retired, not gone).
    assert stack.runtime.proxy_worker_pids() - workers
    assert all(worker_retired(pid) for pid in workers)
    assert stack.controller.served().split == Split(15)


async def test_parity_mirroring_does_not_skew_the_split(stack: Stack) -> None:
    """A mirror is a subrequest: it must not move the counter that spreads rust's share."""
    stack.console.parity_on(100)
    try:
        stack.controller.set_split(Split(50))
        seen = await sample_backends(f"{stack.proxy}/api/v1/vision/metrics", 1000)
        assert abs(seen["rust"] / 10 - 50) <= 2, seen
    finally:
        stack.console.parity_off()
