"""Through a host reboot, as far as Docker sees one: the engine stops (SIGTERM, as systemd
stops it) and starts again the way scripts/compose-base.sh starts it. The stack comes back by
its restart policy (`unless-stopped`) serving the last verified split, read from nginx's
status listener, with Prometheus' data kept. Prints the seconds from engine start to serving.

It restarts the shared engine, so it runs only when this suite started that engine
(scripts/test.sh passes the engine's pid file as VRM_DOCKERD_PIDFILE, and the new engine's
pid is written there for it to stop); otherwise it is skipped with the reason. Whoever runs
compose tests holds /tmp/vrm-docker.lock, so nobody else's run meets the engine down.
Skipped loudly (by the session fixture) without an engine."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.compose.test_compose_control import until
from tests.compose.test_compose_restarts import samples_before, serving
from tests.support import REPO, Stack
from vrm_tui.core.split import Split
from vrm_tui.stack.compose import PROJECT_LABEL, ComposeRuntime

pytestmark = pytest.mark.timeout(900)

SPLIT = Split(20)


def suite_engine() -> tuple[Path, int]:
    """The pid file and pid of the engine this suite started; skips the test otherwise."""
    named = os.environ.get("VRM_DOCKERD_PIDFILE", "")
    text = Path(named).read_text().strip() if named and Path(named).is_file() else ""
    if not text.isdigit():
        pytest.skip("DOCKERD RESTART SKIPPED: this suite did not start the Docker engine "
                    "(scripts/test.sh names the one it starts in VRM_DOCKERD_PIDFILE); "
                    "restarting one found running would stop containers not ours")
    pid = int(text)
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        pytest.skip(f"DOCKERD RESTART SKIPPED: the engine's pid {pid} (from {named}) is gone")
    if not command.endswith(b"dockerd"):
        pytest.skip(f"DOCKERD RESTART SKIPPED: pid {pid} (from {named}) is not dockerd")
    return Path(named), pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def restart_engine(stack: Stack, split: Split) -> float:
    """Stop the suite's engine, start it as compose-base.sh does, and wait until the proxy
    serves `split` again; seconds from the engine's start to that."""
    pidfile, pid = suite_engine()
    os.kill(pid, 15)
    until("dockerd stops (it stops the containers first)", lambda: not _alive(pid), 120)
    started = time.monotonic()
    engine = subprocess.run(["bash", str(REPO / "scripts" / "compose-base.sh"), "--engine"],
                            capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "VRM_DOCKERD_PIDFILE": str(pidfile)})
    assert engine.returncode == 0, engine.stderr
    assert int(pidfile.read_text()) != pid
    until(f"after the engine's restart: rust {split.rust} served again",
          lambda: serving(stack, split), 180)
    return time.monotonic() - started


def test_a_dockerd_restart_serves_the_verified_split_with_prometheus_data(
        compose_stack: Stack) -> None:
    stack = compose_stack
    suite_engine()  # skip before changing anything
    deployed = stack.vrm("deploy", "--rust-weight", str(SPLIT.rust), "--yes", timeout=300)
    assert deployed.returncode == 0, deployed.stderr
    assert serving(stack, SPLIT)
    until("Prometheus has scraped", lambda: samples_before(stack, time.time()) > 0, 90)
    before = time.time()
    kept = samples_before(stack, before)
    # Signals as vrm sends them (nginx reloaded, Alertmanager's routes reloaded by `vrm up`):
    # sent with `docker kill`, they marked the container stopped by an operator, and the
    # restarted engine left it down.
    runtime = stack.console.runtime
    assert isinstance(runtime, ComposeRuntime)
    runtime.signal_proxy_reload()
    assert stack.vrm("up", timeout=300).returncode == 0
    until(f"rust {SPLIT.rust} served after the reload", lambda: serving(stack, SPLIT), 60)

    seconds = restart_engine(stack, SPLIT)
    print(f"dockerd restart: serving {SPLIT} again {seconds:.1f}s after the engine started")
    until("Prometheus answers with its data from before the engine's restart",
          lambda: samples_before(stack, before) >= kept, 120)
    shown: list[str] = []

    def healthy() -> bool:
        status = stack.vrm("status")
        shown[:] = [status.stdout + status.stderr]
        return status.returncode == 0

    try:
        until("vrm status: every service healthy again", healthy, 120)
    finally:
        print(shown[0] if shown else "")
        for line in subprocess.run(["docker", "ps", "-a", "--filter",
                                    f"label={PROJECT_LABEL}={stack.settings.compose_project}",
                                    "--format", "{{.ID}} {{.Status}}"], capture_output=True,
                                   text=True, check=False).stdout.splitlines():
            if "Exited" in line:
                print(line, subprocess.run(
                    ["docker", "inspect", "-f", "{{json .State}}", line.split()[0]],
                    capture_output=True, text=True, check=False).stdout)
                print(subprocess.run(["docker", "logs", "--tail", "20", line.split()[0]],
                                     capture_output=True, text=True, check=False).stderr)
    assert stack.vrm("rollback").returncode == 0
