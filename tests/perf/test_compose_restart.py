"""Benchmark (issue 23): a restart of the Docker engine (the host-reboot case) until the proxy
serves the last verified split again, beside a cold `vrm up` of the same stack in the same run
(down, then up until it serves). Runs only where the suite started the engine (see
tests/compose/test_compose_dockerd.py); hold /tmp/vrm-docker.lock for the whole run."""

from __future__ import annotations

import time

import pytest

from tests.compose.conftest import compose_stack  # noqa: F401  (the real compose stack)
from tests.compose.test_compose_control import until
from tests.compose.test_compose_dockerd import restart_engine, suite_engine
from tests.compose.test_compose_restarts import serving
from tests.support import Stack
from vrm_tui.core.split import Split

pytestmark = [pytest.mark.perf, pytest.mark.timeout(1200)]
RUST_WEIGHT = 10  # tests.support.new_stack's RUST_BACKEND_WEIGHT: a fresh proxy may start there


def test_dockerd_restart_beside_a_cold_up(compose_stack: Stack) -> None:  # noqa: F811
    stack = compose_stack
    suite_engine()
    split = Split(20)
    deployed = stack.vrm("deploy", "--rust-weight", str(split.rust), "--yes", timeout=300)
    assert deployed.returncode == 0, deployed.stderr
    engine_s = restart_engine(stack, split)

    assert stack.vrm("down", timeout=300).returncode == 0
    started = time.monotonic()
    up = stack.vrm("up", timeout=900)
    assert up.returncode == 0, up.stderr
    until("after a cold vrm up: serving", lambda: any(serving(stack, Split(rust))
                                                       for rust in (split.rust, RUST_WEIGHT)), 180)
    cold_s = time.monotonic() - started
    print(f"\ndockerd restart -> serving {split.rust}/{split.typescript} again: {engine_s:.1f} s; "
          f"cold `vrm up` -> serving: {cold_s:.1f} s (same run)")
    assert stack.vrm("rollback").returncode == 0
