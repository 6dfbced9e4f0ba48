"""A compose stack on the real Docker engine (scripts/compose-base.sh prepares the host)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Stack, new_stack
from vrm_tui.stack.compose import ComposeRuntime

BASE_IMAGE = os.environ.get("VRM_BASE_IMAGE", "vrm-base:bookworm-lua")


def _engine_problem() -> str | None:
    if shutil.which("docker") is None or shutil.which("docker-compose") is None:
        return "docker / docker-compose are not installed (scripts/compose-base.sh installs them)"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        return f"no Docker engine answers: {info.stderr.strip().splitlines()[-1:]}"
    image = subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True,
                           check=False)
    if image.returncode != 0:
        return f"base image {BASE_IMAGE} is missing (scripts/compose-base.sh builds it)"
    # The test stack's project is derived from its own state dir (vrm-<hash>), so a real stack
    # on this engine, whatever its project, runs beside it untouched.
    return None


@pytest.fixture(scope="session")
def compose_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    problem = _engine_problem()
    if problem:
        pytest.skip(f"COMPOSE END-TO-END SKIPPED: {problem}")
    deploy_dir: Path = tmp_path_factory.mktemp("compose")
    stack = new_stack(deploy_dir, VRM_RUNTIME="compose", VRM_BASE_IMAGE=BASE_IMAGE,
                      VRM_BUILD_NETWORK="none", VRM_MONITORING="1", PROXY_BIND="127.0.0.1")
    up = stack.vrm("up", timeout=900)
    try:  # a failed `vrm up` leaves nothing running either
        assert up.returncode == 0, up.stdout + up.stderr
        yield stack
    finally:
        stack.vrm("down", timeout=300)
        _forget_stale_images(ComposeRuntime(stack.settings))


def _forget_stale_images(runtime: ComposeRuntime) -> None:
    """Remove vrm's images of earlier builds (another tag than this run's) that no container
    uses. Every change to vrm's code tags new images; on the vfs storage driver each is a
    full copy (~0.7 GB), so without this the suite fills the disk over a day's runs."""
    keep = {runtime.image_tag, runtime.control_tag, "latest"}
    listed = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
                             "--filter", "reference=vrm/*"],
                            capture_output=True, text=True, check=False).stdout.split()
    stale = [ref for ref in listed if ref.rpartition(":")[2] not in keep]
    if stale:  # `docker rmi` without --force refuses an image a container still uses
        subprocess.run(["docker", "rmi", *stale], capture_output=True, check=False)
