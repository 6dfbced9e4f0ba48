"""Free ports for services: distinct, and never where the kernel picks client ports."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from tests.support import new_stack
from vrm_tui.system import procs


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = procs.free_ports(7)
    assert len(set(ports)) == 7
    assert all(port < procs._ephemeral_low() for port in ports), ports
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_never_handed_out() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", procs.free_ports(1)[0]))
        taken = held.getsockname()[1]
        assert all(taken not in procs.free_ports(20) for _ in range(50))


def test_ports_a_stack_has_configured_but_not_bound_are_avoided(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend's admin port chosen at bring-up must not be the typescript port the same
    bring-up is about to bind (they look free until then)."""
    configured = procs.free_ports(1)[0]
    monkeypatch.setattr(random, "randrange", lambda low, high: configured)
    chosen = procs.free_ports(3, avoid={configured})
    assert configured not in chosen and len(set(chosen)) == 3


def test_free_ports_come_from_vrm_port_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes picking ports at once (the suite's xdist workers) are given ranges of
    their own; a bad range is one line naming the variable."""
    monkeypatch.setenv("VRM_PORT_RANGE", "21000-22999")
    assert procs.port_range() == (21000, 23000)
    assert all(21000 <= p <= 22999 for p in procs.free_ports(20))
    for bad in ("21000", "a-b", "22999-21000", "80-90", "21000-70000"):
        monkeypatch.setenv("VRM_PORT_RANGE", bad)
        with pytest.raises(ValueError, match=f"VRM_PORT_RANGE={bad}: expected FIRST-LAST"):
            procs.port_range()
    monkeypatch.delenv("VRM_PORT_RANGE")
    assert procs.port_range()[0] == 10_000


def test_a_bad_vrm_port_range_is_one_line_at_vrm_up(tmp_path: Path) -> None:
    stack = new_stack(tmp_path)
    started = stack.vrm("up", VRM_PORT_RANGE="9000")
    assert started.returncode == 2, started.stderr
    assert started.stderr == ("vrm: VRM_PORT_RANGE=9000: expected FIRST-LAST ports, e.g. "
                              "10000-20000\n"), started.stderr
