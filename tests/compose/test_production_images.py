"""The production Dockerfiles, built and run: docker/Dockerfile builds a std-only Rust server
with Debian's rustc (RUST_IMAGE, from scripts/compose-builders.sh) and
docker/Dockerfile.typescript a TypeScript server with tsc (NODE_IMAGE), both with no build
network, from tests/compose/production_app (RUST_SOURCE / TS_SOURCE, as a team points them at
its own code). The stack runs under compose through `vrm up` (VRM_COMPOSE_PROFILE=
production-cpu: docker-compose.yml's production services without the GPU overlay), serves
through the proxy, and `vrm validate` finds nothing to FAIL.

The first run builds the builder images (minutes, once per engine) and both images; later runs
reuse docker's build cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.compose.conftest import BASE_IMAGE, _engine_problem
from tests.compose.test_compose_privilege import inspect_all
from tests.support import REPO, Stack, new_stack
from vrm_tui.core import services
from vrm_tui.stack.compose import ComposeRuntime

pytestmark = pytest.mark.timeout(1500)

APP = Path(__file__).parent / "production_app"
# What a team sets to build its own code (README: "The team's own backends").
BUILD_ENV = {
    "RUST_SOURCE": str((APP / "rust").relative_to(REPO)),
    "TS_SOURCE": str((APP / "typescript").relative_to(REPO)),
    "RUST_IMAGE": os.environ.get("VRM_RUST_BUILDER_IMAGE", "vrm-rust-builder:bookworm"),
    "NODE_IMAGE": os.environ.get("VRM_NODE_IMAGE", "vrm-node:bookworm"),
}
APP_USER = "10003:10003"  # the Dockerfiles' USER
SEED_METRICS = {"vision_manager_task_duration_seconds", "vision_manager_tasks",
                "vision_manager_vram_used_gb", "vision_manager_models_loaded"}


def _fetch_typescript() -> None:
    """The compiler the app's package.json names (a file: tarball in vendor/), from the npm
    registry this host's npm uses; in the build context, so the image builds offline."""
    app = APP / "typescript"
    spec = json.loads((app / "package.json").read_text())["devDependencies"]["typescript"]
    tarball = app / spec.removeprefix("file:")
    if tarball.is_file():
        return
    version = tarball.name.removeprefix("typescript-").removesuffix(".tgz")
    tarball.parent.mkdir(exist_ok=True)
    packed = subprocess.run(["npm", "pack", "--silent", f"typescript@{version}"],
                            cwd=tarball.parent, capture_output=True, text=True, timeout=300,
                            check=False)
    assert packed.returncode == 0 and tarball.is_file(), \
        f"npm pack typescript@{version}: {packed.stderr.strip()[-500:]}"


@pytest.fixture(scope="module")
def production_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    problem = _engine_problem()
    if problem:
        pytest.skip(f"COMPOSE END-TO-END SKIPPED: {problem}")
    # The engine runs: builder images it lacks are made now (debootstrap, once per engine).
    builders = subprocess.run(["bash", str(BUILDERS)],
                              capture_output=True, text=True, timeout=1200, check=False)
    assert builders.returncode == 0, f"scripts/compose-builders.sh: {builders.stderr}"
    _fetch_typescript()
    stack = new_stack(tmp_path_factory.mktemp("production"), VRM_RUNTIME="compose",
                      VRM_COMPOSE_PROFILE="production-cpu", VRM_BASE_IMAGE=BASE_IMAGE,
                      VRM_BUILD_NETWORK="none", PROXY_RATE_LIMIT="50",
                      GRAFANA_PASSWORD="a-long-random-secret")
    # Built every run (docker's cache makes it quick): `vrm up` alone would start an image
    # of the same tag built from older code. Same compose files and settings as `vrm up`.
    with pytest.MonkeyPatch.context() as patch:
        for name, value in BUILD_ENV.items():
            patch.setenv(name, value)
        built = ComposeRuntime(stack.settings).run_compose(
            "build", services.RUST, services.TYPESCRIPT, timeout=1200)
    assert built.returncode == 0, (built.stdout + built.stderr)[-3000:]
    up = stack.vrm("up", timeout=600, **BUILD_ENV)
    try:  # a failed `vrm up` leaves nothing running either
        assert up.returncode == 0, up.stdout + up.stderr
        yield stack
    finally:
        stack.vrm("down", timeout=300, **BUILD_ENV)


BUILDERS = REPO / "scripts" / "compose-builders.sh"


@pytest.mark.parametrize("engine", [False, True])
def test_builders_say_why_they_cannot_build_in_one_line(tmp_path: Path, engine: bool) -> None:
    """No engine, or no Debian mirror in this host's apt sources (read by compose-base.sh,
    so the project names none): exit 1 with one line saying so."""
    shims = tmp_path / "bin"
    shims.mkdir()
    # `docker info` answers as the engine would; no image exists
    (shims / "docker").write_text(f"#!/bin/sh\n[ \"$1\" = info ] && exit {0 if engine else 1}\n"
                                  "exit 1\n")
    (shims / "docker").chmod(0o755)
    (tmp_path / "apt").mkdir()
    found = subprocess.run(["bash", str(BUILDERS)], capture_output=True, text=True, timeout=60,
                           check=False, env={**os.environ, "PATH": f"{shims}:/usr/bin:/bin",
                                             "VRM_APT_DIR": str(tmp_path / "apt")})
    assert found.returncode == 1 and found.stderr.count("\n") == 1, found.stderr
    assert ("no apt source for Debian bookworm" if engine else "no Docker engine answers") \
        in found.stderr
    assert not engine or "to build vrm-rust-builder:bookworm" in found.stderr
    assert "debian.org" not in BUILDERS.read_text()


def _canonical(value: Any) -> Any:
    """A compose config as compared: merging files reorders lists and writes an empty
    mapping as {} where one file alone writes null."""
    if isinstance(value, dict):
        return {k: {} if v is None else _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value), key=json.dumps)
    return value


def test_the_cpu_profile_is_production_without_the_gpu_reservation(tmp_path: Path) -> None:
    """What a real team gets (VRM_COMPOSE_PROFILE=production) keeps a GPU reserved for each
    backend; the profile the tests run differs from it in that alone."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (scripts/compose-base.sh installs it)")
    stack = new_stack(tmp_path, VRM_RUNTIME="compose")
    found = {}
    for profile in ("production", "production-cpu"):
        stack.configure(VRM_COMPOSE_PROFILE=profile)
        shown = ComposeRuntime(stack.settings).run_compose("config", timeout=60)
        assert shown.returncode == 0, shown.stderr
        found[profile] = _canonical(yaml.safe_load(shown.stdout)["services"])
    gpu = found["production"]
    for name in (services.RUST, services.TYPESCRIPT):
        assert gpu[name]["build"]["dockerfile"].startswith("docker/Dockerfile")
        resources = gpu[name]["deploy"]["resources"]
        assert resources.pop("reservations") == {"devices": [
            {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]}, name
    assert found["production-cpu"] == gpu


def test_production_images_serve_behind_the_proxy(production_stack: Stack) -> None:
    stack = production_stack
    containers = inspect_all(stack)
    for name in (services.RUST, services.TYPESCRIPT):
        config = containers[name]["Config"]
        assert config["Image"].startswith(f"vrm/{name}:"), config["Image"]
        assert config["User"] == APP_USER, (name, config["User"])
        assert containers[name]["State"]["Health"]["Status"] == "healthy", name  # curl

    health = httpx.get(f"{stack.proxy}/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "healthy", health.text
    for backend in ("rust", "typescript"):  # the seed's pinned routes, each to its backend
        pinned = httpx.get(f"{stack.proxy}/api/v1/vision/{backend}/metrics", timeout=5)
        assert pinned.status_code == 200, pinned.text
        assert pinned.headers["X-VRM-Backend"] == pinned.json()["backend"] == backend

    settings = stack.settings
    for port in (settings.rust_port, settings.ts_port, settings.proxy_status_port):
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert {f.name for f in text_string_to_metric_families(text)} >= SEED_METRICS, text


def test_validate_finds_nothing_to_fail(production_stack: Stack) -> None:
    result = production_stack.vrm("validate", "--json", timeout=180)
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [r for r in rows.values() if r["result"] == "FAIL"], rows
    for name in ("proxy /health", "rust /health", "typescript /health",
                 "observed split matches served", "rate limit rejects a burst",
                 "rust VRAM series", "typescript VRAM series"):
        assert rows[name]["result"] == "PASS", rows[name]


def test_a_stop_ends_the_backends_by_sigterm_not_a_kill(production_stack: Stack) -> None:
    """The test servers, like many a team's, set no SIGTERM handler, which PID 1 ignores: with
    docker's init in front (init: true) `docker stop` ends them by SIGTERM (exit 143) rather
    than killing them after its 10 s grace (137), so `vrm down` takes seconds, not ten each.
    Last in the module: it stops the backends (the fixture's `vrm down` follows)."""
    containers = inspect_all(production_stack)
    for name in (services.RUST, services.TYPESCRIPT):
        assert containers[name]["HostConfig"]["Init"] is True, name
        stopped = subprocess.run(["docker", "stop", "-t", "10", containers[name]["Id"]],
                                 capture_output=True, text=True, timeout=60, check=False)
        assert stopped.returncode == 0, stopped.stderr
        state = json.loads(subprocess.run(["docker", "inspect", containers[name]["Id"]],
                                          capture_output=True, text=True, check=True
                                          ).stdout)[0]["State"]
        assert state["ExitCode"] == 143, (name, state)
