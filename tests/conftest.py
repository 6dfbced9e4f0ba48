from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fullfs import small_tmpfs
from tests.support import Stack, new_stack
from vrm_tui.system.procs import port_range


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (scripts/test.sh runs two workers) each worker picks ports from its
    own slice of the range, for itself and the vrm processes it starts: a port one worker has
    chosen for a stack it is about to start looks free to the other."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2 or "VRM_PORT_RANGE" in os.environ:
        return
    first, end = port_range()
    size = (end - first) // count
    start = first + int(worker[2:]) * size
    os.environ["VRM_PORT_RANGE"] = f"{start}-{start + size - 1}"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """For `--dist loadgroup` (scripts/test.sh): a module's tests stay on one worker (its
    module-scoped stacks start once), and every compose test on the same one, since they
    share one Docker engine that test_compose_dockerd restarts."""
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        group = "compose" if module.startswith("tests/compose/") else module
        item.add_marker(pytest.mark.xdist_group(group))


def _require_nginx() -> None:
    if not (shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")):
        pytest.fail("nginx is not installed: scripts/test.sh installs it with apt-get")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A running local stack (nginx + two rehearsal backends) on free ports."""
    _require_nginx()
    running = new_stack(tmp_path)
    running.up()
    try:
        yield running
    finally:
        running.down()


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One running stack for a module's read-mostly tests."""
    _require_nginx()
    running = new_stack(tmp_path_factory.mktemp("stack"))
    running.up()
    try:
        yield running
    finally:
        running.down()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs to fill (tests.fullfs.fill), mode 1777 like any shared disk."""
    with small_tmpfs(tmp_path / "small", mode=None) as mount:
        yield mount
