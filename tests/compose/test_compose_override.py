"""The seed's `docker-compose.override.yml` next to `.env` is applied after vrm's files:
here it changes rust's VRAM limit, and vrm shows both the override and its effect.
Skipped loudly (by the session fixture) when no Docker engine answers `docker info`."""

from __future__ import annotations

import pytest

from tests.support import Stack
from vrm_tui.core import services
from vrm_tui.stack.compose import OVERRIDE, ComposeRuntime

pytestmark = pytest.mark.timeout(1200)

OVERRIDE_TEXT = """services:
  vision-manager-rust:
    environment:
      VRM_OVERRIDE_MARK: "from the deployment"
    command: ["--flavour", "rust", "--port", "3001", "--max-vram-gb", "7.5"]
"""


def test_an_override_changes_a_backend_and_status_says_so(compose_stack: Stack) -> None:
    stack = compose_stack
    override = stack.deploy_dir / OVERRIDE
    runtime = stack.console.runtime
    assert isinstance(runtime, ComposeRuntime)
    override.write_text(OVERRIDE_TEXT)
    try:
        assert runtime.files()[-1] == override
        runtime.compose("up", "-d", services.RUST)  # recreated with the override applied
        status = stack.vrm("status")
        assert f"compose override: {override}" in status.stdout, status.stdout
        container = runtime._container(services.RUST)  # found by its compose labels
        assert container is not None
        assert "VRM_OVERRIDE_MARK=from the deployment" in container.attrs["Config"]["Env"]
        rust = next(r for r in stack.console.vram(timeout=5.0) if r.backend == "rust")
        assert rust.limit_gb == 7.5, rust
    finally:
        override.unlink()
        runtime.compose("up", "-d", services.RUST)
    assert "compose override" not in stack.vrm("status").stdout
