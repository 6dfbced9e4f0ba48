"""Requests in flight per backend (issue 22 item 3): rust hung at 50%, the latency pane said
`typescript ⧖ hanging … while 1 requests are in flight at nginx`, because stub_status counts
every upstream at once. nginx's Lua module now counts each attempt on the backend it waits
on (a retry moves it), per worker, and /vrm/served reports the sums.

Real nginx with the Lua module, real rehearsal backends (and the Node/stdlib pair) hung
through their fault endpoints.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.conftest import _require_nginx
from tests.foreign_pair import Pair, started_pair
from tests.support import Stack, new_stack, wait_until
from vrm_tui.core import services
from vrm_tui.core.errors import ProxyUnreachable
from vrm_tui.core.split import Split
from vrm_tui.system.procs import free_ports
from vrm_tui.traffic import live
from vrm_tui.traffic.served import InFlight

pytestmark = pytest.mark.skipif(not live.modules_installed(),
                                reason="LUA MODULE MISSING: scripts/test.sh installs "
                                       "libnginx-mod-http-lua")

METRICS = "/api/v1/vision/metrics"


def _in_flight(stack: Stack) -> InFlight | None:
    """What nginx counts now (None while it does not answer: its workers restarting)."""
    try:
        return stack.controller.served(timeout=1.0).in_flight
    except ProxyUnreachable:
        return None


def _once(stack: Stack, holds: Callable[[InFlight], bool]) -> InFlight | None:
    """The counts when they satisfy `holds` (for wait_until), else None."""
    found = _in_flight(stack)
    return found if found is not None and holds(found) else None


def _hang(stack: Stack, service: str, on: bool) -> None:
    admin = stack.runtime.admin_url(service)
    assert admin is not None
    httpx.post(f"{admin}/faults", json={"hang": on}, timeout=5).raise_for_status()


class Clients:
    """`count` GETs through the proxy, each on its own thread; what each got back."""

    def __init__(self, url: str, count: int) -> None:
        self.answers: list[tuple[int, str] | str] = []
        self.threads = [threading.Thread(target=self._get, args=(url,)) for _ in range(count)]
        for thread in self.threads:
            thread.start()

    def _get(self, url: str) -> None:
        try:
            response = httpx.get(url, timeout=40)
            self.answers.append((response.status_code, response.headers.get("X-VRM-Backend", "")))
        except httpx.HTTPError as exc:
            self.answers.append(type(exc).__name__)

    def join(self) -> list[tuple[int, str] | str]:
        for thread in self.threads:
            thread.join(45)
        return self.answers


def test_a_rust_hang_is_rusts_alone_and_drains_after_the_rollback(stack: Stack) -> None:
    stack.configure(PROXY_CANARY_TIMEOUT=CANARY_S)
    assert _in_flight(stack) == InFlight(0, 0), "counted, and nothing waits when idle"
    _hang(stack, services.RUST, True)
    try:
        _rusts_hang_alone_then_drained(stack, 16)
    finally:
        _hang(stack, services.RUST, False)


# The canary waits this long on rust: long enough that typescript has answered its own half
# before any of rust's retries reach it (with 2 s, a loaded machine saw a retry counted on
# typescript, rightly).
CANARY_S = "6"


def _rusts_hang_alone_then_drained(stack: Stack, count: int) -> None:
    """With rust hung at 50%, `count` clients: the waiting is rust's alone, `vrm status` says
    so, and after a rollback every count drains and typescript answers every client."""
    stack.console.set_split(Split(50))
    clients = Clients(f"{stack.proxy}{METRICS}", count)
    wait_until(lambda: _once(stack, lambda f: f.rust >= count // 4 and f.typescript == 0),
               timeout=5, what="requests waiting on rust, none on typescript")
    status = stack.vrm("status")  # the operator's words for the same counts
    assert "waiting  rust " in status.stdout and "request(s) in flight at nginx" \
        in status.stdout, status.stdout
    stack.controller.rollback()
    # The canary gives up on rust; typescript answers every one of them.
    wait_until(lambda: _in_flight(stack) == InFlight(0, 0), timeout=15,
               what="every count back at 0 after the rollback")
    answers = clients.join()
    assert answers == [(200, "typescript")] * count, answers


def test_a_retry_counts_on_rust_then_on_typescript_and_a_killed_worker_leaves_none(
        stack: Stack) -> None:
    stack.configure(PROXY_CANARY_TIMEOUT="1")
    stack.console.set_split(Split(100))
    _hang(stack, services.RUST, True)
    _hang(stack, services.TYPESCRIPT, True)
    try:
        one = Clients(f"{stack.proxy}{METRICS}", 1)
        wait_until(lambda: _in_flight(stack) == InFlight(1, 0), timeout=5,
                   what="the request waiting on rust")
        # After the canary's 1 s nginx retries it on typescript: the same request, counted
        # there and no longer on rust.
        wait_until(lambda: _in_flight(stack) == InFlight(0, 1), timeout=5,
                   what="the retry waiting on typescript")
        _hang(stack, services.TYPESCRIPT, False)
        assert one.join() == [(200, "typescript")]
        wait_until(lambda: _in_flight(stack) == InFlight(0, 0), timeout=5, what="none left")

        # A worker that dies holding requests cannot take them off: its counts go with it.
        _hang(stack, services.TYPESCRIPT, True)
        three = Clients(f"{stack.proxy}{METRICS}", 3)
        wait_until(lambda: _once(stack, lambda f: f.rust + f.typescript == 3), timeout=5,
                   what="three requests counted")
        for pid in stack.runtime.proxy_worker_pids():
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: _in_flight(stack) == InFlight(0, 0), timeout=10,
                   what="the dead workers' counts dropped")
        assert len(three.join()) == 3
    finally:
        _hang(stack, services.RUST, False)
        _hang(stack, services.TYPESCRIPT, False)


@pytest.fixture
def named_backends() -> Iterator[tuple[str, str, str, str]]:
    """Two rehearsal backends nginx reaches by a host name (as compose does): base URLs, by
    name, and their fault endpoints."""
    if {a[4][0] for a in socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)} \
            != {"127.0.0.1"}:
        pytest.skip("localhost is not 127.0.0.1 alone here: nginx would balance over both")
    rust, typescript, rust_admin, ts_admin = free_ports(4)
    procs = [subprocess.Popen([sys.executable, "-m", "vrm_tui.rehearsal", "--flavour", flavour,
                               "--port", str(port), "--faults", "--admin-port", str(admin)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for flavour, port, admin in (("rust", rust, rust_admin),
                                          ("typescript", typescript, ts_admin))]
    try:
        for port in (rust, typescript):
            wait_until(partial(_answers, f"http://127.0.0.1:{port}/health"), timeout=20,
                       what=f"a rehearsal backend on {port}")
        yield (f"http://localhost:{rust}", f"http://localhost:{typescript}",
               f"http://127.0.0.1:{rust_admin}", f"http://127.0.0.1:{ts_admin}")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_pools_nginx_balances_by_name_count_each_attempt(
        named_backends: tuple[str, str, str, str], tmp_path: Path) -> None:
    """By name there is no canary balancer: nginx's own round robin picks rust, then its
    backup typescript, and the counts follow the attempts the same way."""
    _require_nginx()
    rust, typescript, rust_admin, ts_admin = named_backends
    stack = new_stack(tmp_path, RUST_BACKEND_URL=rust, TS_BACKEND_URL=typescript,
                      PROXY_UPSTREAM_TIMEOUT="3")
    stack.up()
    try:
        stack.console.set_split(Split(100))
        for admin in (rust_admin, ts_admin):
            httpx.post(f"{admin}/faults", json={"hang": True}, timeout=5).raise_for_status()
        one = Clients(f"{stack.proxy}{METRICS}", 1)
        wait_until(lambda: _in_flight(stack) == InFlight(1, 0), timeout=5,
                   what="the request waiting on rust")
        wait_until(lambda: _in_flight(stack) == InFlight(0, 1), timeout=6,
                   what="its retry waiting on typescript")
        wait_until(lambda: _in_flight(stack) == InFlight(0, 0), timeout=6,
                   what="none left once both attempts timed out")
        assert one.join() == [(504, "typescript")]
    finally:
        for admin in (rust_admin, ts_admin):
            httpx.post(f"{admin}/faults", json={"hang": False}, timeout=5)
        stack.down()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    yield from started_pair()


def test_the_foreign_pair_hang_is_counted_on_rust(pair: Pair,
                                                  tmp_path_factory: pytest.TempPathFactory
                                                  ) -> None:
    """The same attribution in front of a pair vrm did not write (Node as typescript, the
    Python stdlib as rust, rust hung: no answer at all)."""
    _require_nginx()
    stack = new_stack(tmp_path_factory.mktemp("foreign-in-flight"), RUST_BACKEND_URL=pair.rust,
                      TS_BACKEND_URL=pair.typescript, PROXY_CANARY_TIMEOUT=CANARY_S)
    stack.up()
    try:
        pair.mode("hang")
        _rusts_hang_alone_then_drained(stack, 12)
    finally:
        pair.mode("ok")
        stack.down()


def test_a_backend_cannot_redirect_nginx_internally(pair: Pair,
                                                     tmp_path_factory: pytest.TempPathFactory
                                                     ) -> None:
    """A backend's `X-Accel-Redirect` is ignored (review of issue 22): followed, it would
    answer the client with another location and, its Lua context reset, leave the request
    counted in flight on rust until the worker exits (rust "hanging" after a rollback)."""
    _require_nginx()
    stack = new_stack(tmp_path_factory.mktemp("foreign-accel"), RUST_BACKEND_URL=pair.rust,
                      TS_BACKEND_URL=pair.typescript)
    stack.up()
    try:
        stack.console.set_split(Split(100))
        pair.mode("accel")
        answers = [httpx.get(f"{stack.proxy}{METRICS}", timeout=10) for _ in range(5)]
        assert all(a.status_code == 200 and "models" in a.json() for a in answers), \
            [a.text[:80] for a in answers]  # the backend's own answer, not /vrm/ping's
        assert _in_flight(stack) == InFlight(0, 0)
    finally:
        pair.mode("ok")
        stack.down()
