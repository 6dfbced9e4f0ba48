"""Compose rollback reaches nginx's status listener directly: `vrm rollback` works with the
Docker engine out of reach (no Docker API call on its path), as fast as the local runtime's
(tests/perf/test_compose_rollback.py measures both in one run).
Skipped loudly (by the session fixture) when no Docker engine answers `docker info`."""

from __future__ import annotations

import pytest

from tests.support import Stack
from vrm_tui.core.split import Split

pytestmark = pytest.mark.timeout(1200)


def test_rollback_makes_no_docker_call(compose_stack: Stack) -> None:
    stack = compose_stack
    deployed = stack.vrm("deploy", "--rust-weight", "20")
    assert deployed.returncode == 0, deployed.stderr
    assert stack.controller.served().split == Split(20)
    # every Docker client (the SDK, the CLI) would talk to this socket, which does not exist
    rolled = stack.vrm("rollback", DOCKER_HOST="unix:///nonexistent/vrm-no-docker.sock")
    assert rolled.returncode == 0, rolled.stderr
    assert stack.controller.served().split == Split(0)
    assert "docker" not in (rolled.stdout + rolled.stderr).lower(), rolled.stdout
