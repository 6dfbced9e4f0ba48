"""The failure path against a backend pair vrm did not write (issue 20): Node's `http` as
typescript, Python's stdlib `http.server` as rust, faults switched at runtime. A hung rust at
50% is rolled back and holds no client past the rollback; validate with rust hung is rows,
not a traceback; errors at 10% roll back within the bake."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import _require_nginx
from tests.foreign_pair import Pair, started_pair
from tests.support import Stack, new_stack, sample_backends, steady_stream
from vrm_tui.core.split import Split
from vrm_tui.migrate.gates import Verdict
from vrm_tui.migrate.plan import load
from vrm_tui.migrate.runner import Runner
from vrm_tui.migrate.state import MigrationState

METRICS = "/api/v1/vision/metrics"


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    yield from started_pair()


@pytest.fixture(scope="module")
def foreign(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """vrm's proxy in front of the pair, the default rate limit on."""
    _require_nginx()
    stack = new_stack(tmp_path_factory.mktemp("foreign-faults"), RUST_BACKEND_URL=pair.rust,
                      TS_BACKEND_URL=pair.typescript, PROXY_RATE_LIMIT="100")
    stack.up()
    try:
        yield stack
    finally:
        pair.mode("ok")
        stack.down()


@pytest.fixture(autouse=True)
def healthy(pair: Pair, foreign: Stack) -> Iterator[None]:
    pair.mode("ok")
    foreign.controller.rollback()
    yield
    pair.mode("ok")


async def test_a_hung_rust_at_50_holds_no_client_after_the_rollback(pair: Pair,
                                                                   foreign: Stack) -> None:
    await sample_backends(f"{foreign.proxy}{METRICS}", 60)  # typescript's p99 for the canary
    hung = threading.Event()

    def hang_when_baking(state: MigrationState, verdict: Verdict | None) -> None:
        if state.phase == "baking" and not hung.is_set():
            hung.set()
            pair.mode("hang")

    runner = Runner(foreign.controller, on_update=hang_when_baking)
    stop = asyncio.Event()
    stream = asyncio.create_task(steady_stream(f"{foreign.proxy}{METRICS}", 50, stop))
    try:
        state = runner.start(load(steps="50", bake=60, gate_interval=1.0))
        state = await asyncio.to_thread(runner.run, state)
        ended = time.perf_counter()
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        sent = await stream
    assert state.phase == "rolled-back", state.reason
    assert foreign.controller.served().split == Split(0)
    assert "waited on rust until its timeout" in state.reason, state.reason
    late = [s for s in sent if s.end - ended > 5]
    assert not late, f"{len(late)} clients still waiting 5 s after the rollback"
    failed = [s for s in sent if s.status != 200]
    assert not failed, f"GETs are safe to repeat: retried on typescript; {failed[:3]}"


def test_validate_with_rust_hung_is_rows_not_a_traceback(pair: Pair, foreign: Stack) -> None:
    foreign.controller.set_split(Split(50))
    pair.mode("hang")
    done = foreign.vrm("validate", "--json", "--check-timeout", "4", timeout=180)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    rows = json.loads(done.stdout)
    rows = rows["rows"] if isinstance(rows, dict) else rows
    text = json.dumps(rows)
    assert "FAIL" in text and "no answer within" in text, text[:2000]


async def test_errors_at_10_percent_roll_back_within_the_bake(pair: Pair,
                                                              foreign: Stack) -> None:
    runner = Runner(foreign.controller)
    stop = asyncio.Event()
    stream = asyncio.create_task(steady_stream(f"{foreign.proxy}{METRICS}", 80, stop))
    try:
        await asyncio.sleep(0.5)
        pair.mode("err30")
        state = runner.start(load(steps="10", bake=30, gate_interval=1.0))
        started = time.monotonic()
        state = await asyncio.to_thread(runner.run, state)
        took = time.monotonic() - started
    finally:
        stop.set()
        await stream
    assert state.phase == "rolled-back", state.reason
    assert "rust error rate" in state.reason and took < 30, (took, state.reason)
    assert foreign.controller.served().split == Split(0)
