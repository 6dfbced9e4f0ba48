from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fullfs import small_tmpfs
from tests.support import Stack, new_stack


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
