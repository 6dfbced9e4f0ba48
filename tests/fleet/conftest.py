from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fleet.etcd import Etcd, new_etcd


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One etcd member on free loopback ports for a module; stopped at its end."""
    cluster = new_etcd(tmp_path_factory.mktemp("etcd"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def etcd3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """A 3-member etcd cluster for a module (leader loss); stopped at its end."""
    cluster = new_etcd(tmp_path_factory.mktemp("etcd3"), size=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
