"""Failure paths of the traffic core: bad input, a rejected config, a crash mid-change,
concurrent writers, missing nginx, a busy port. Real nginx and backends throughout."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import Stack, clean_env, new_stack, sample_backends
from vrm_tui.core.errors import StackError
from vrm_tui.core.split import Split
from vrm_tui.journal import Journal, Record
from vrm_tui.stack.local import LocalRuntime
from vrm_tui.system.procs import port_in_use, start_ticks
from vrm_tui.traffic import nginx


def _journal(stack: Stack) -> list[Record]:
    return Journal(stack.settings.state_dir / "journal.jsonl").read()


@pytest.mark.parametrize("weight", ["-1", "101", "abc", "50.5"])
def test_bad_weight_flag_exits_2_naming_the_value(tmp_path: Path, weight: str) -> None:
    stack = new_stack(tmp_path)
    result = stack.vrm("deploy", f"--rust-weight={weight}")
    assert result.returncode == 2
    assert repr(weight) in result.stderr and "--rust-weight" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (stack.settings.state_dir / "run").exists(), "nothing may start on bad input"


@pytest.mark.parametrize(
    ("variable", "value"), [("RUST_BACKEND_WEIGHT", "abc"), ("TS_BACKEND_WEIGHT", "101")]
)
def test_bad_weight_in_environment_exits_2(tmp_path: Path, variable: str, value: str) -> None:
    result = new_stack(tmp_path).vrm("status", **{variable: value})  # type: ignore[arg-type]  # mypy cannot know the key is never "timeout"
    assert result.returncode == 2
    assert variable in result.stderr and repr(value) in result.stderr


def test_env_weights_that_do_not_sum_to_100_exit_2(tmp_path: Path) -> None:
    stack = new_stack(tmp_path)
    from_environment = stack.vrm("deploy", RUST_BACKEND_WEIGHT="30", TS_BACKEND_WEIGHT="60")
    env_file = stack.deploy_dir / ".env"
    env_file.write_text(env_file.read_text().replace("TS_BACKEND_WEIGHT=90", "TS_BACKEND_WEIGHT=60")
                        .replace("RUST_BACKEND_WEIGHT=10", "RUST_BACKEND_WEIGHT=30"))
    from_env_file = stack.vrm("deploy")
    for result in (from_environment, from_env_file):
        assert result.returncode == 2
        assert "'30'" in result.stderr and "'60'" in result.stderr and "100" in result.stderr


def test_other_bad_settings_name_the_variable(tmp_path: Path) -> None:
    stack = new_stack(tmp_path)
    for variable, value in [("PROXY_PORT", "http"), ("MAX_VRAM_GB", "-3"),
                            ("VRM_RUNTIME", "k8s"), ("PROXY_RATE_LIMIT", "-1")]:
        result = stack.vrm("status", **{variable: value})  # type: ignore[arg-type]  # mypy cannot know the key is never "timeout"
        assert result.returncode == 2, variable
        assert variable in result.stderr and value in result.stderr


async def test_rejected_config_keeps_the_old_one_serving(stack: Stack) -> None:
    stack.controller.set_split(Split(30))
    own = stack.deploy_dir / "nginx" / "nginx.conf"
    own.parent.mkdir()
    own.write_text(nginx.TEMPLATE.read_text().replace("server_tokens off;", "server_tokens of;"))
    result = stack.vrm("deploy", "--rust-weight", "80")
    assert result.returncode == 1
    assert "nginx -t rejected" in result.stderr and 'invalid value "of"' in result.stderr
    shown = result.stderr.split(" in ")[-1].rsplit(":", 1)[0]
    assert "server_tokens of;" in Path(shown).read_text(), "the error must point at the file"
    assert stack.controller.served().split == Split(30)
    seen = await sample_backends(f"{stack.proxy}/api/v1/vision/metrics", 200)
    assert abs(seen["rust"] - 60) <= 4 and sum(seen.values()) == 200
    last = _journal(stack)[-1]
    assert (last.action, last.result, last.to) == ("deploy", "failed", {"rust": 80,
                                                                         "typescript": 20})
    assert 'invalid value "of"' in last.detail
    own.unlink()
    assert stack.vrm("deploy", "--rust-weight", "80").returncode == 0
    assert stack.controller.served().split == Split(80)


KILL_BEFORE_RELOAD = """
import os, signal, sys
from vrm_tui.stack.local import LocalRuntime
LocalRuntime.signal_proxy_reload = lambda self: os.kill(os.getpid(), signal.SIGKILL)
from vrm_tui.cli import main
sys.exit(main(sys.argv[1:]))
"""


async def test_killed_between_swap_and_reload_keeps_serving_and_status_tells(stack: Stack) -> None:
    stack.configure(VRM_LIVE_SPLIT="0")  # the reload path (test_live_split covers the other)
    stack.controller.set_split(Split(20))
    killed = subprocess.run([sys.executable, "-c", KILL_BEFORE_RELOAD, "deploy",
                             "--rust-weight", "70"], cwd=stack.deploy_dir, env=clean_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert killed.returncode == -9, killed.stderr
    # nginx still serves the old, valid generation...
    seen = await sample_backends(f"{stack.proxy}/api/v1/vision/metrics", 200)
    assert sum(seen.values()) == 200 and abs(seen["rust"] - 40) <= 4
    # ...the config on disk is the complete, tested candidate...
    nginx.test_config(stack.controller.store.main_config)
    # ...and status reports what is really served, and that a change is pending.
    status = stack.vrm("status", "--json")
    data = json.loads(status.stdout)
    assert data["split"] == {"rust": 20, "typescript": 80}
    assert data["configured"] == {"rust": 70, "typescript": 30} and data["pending"] is True
    assert "PENDING" in stack.vrm("status").stdout
    # The lock died with the process: a rollback goes straight through.
    rolled = stack.vrm("rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert stack.controller.served().split == Split(0)
    assert json.loads(stack.vrm("status", "--json").stdout)["pending"] is False


def test_concurrent_deploys_are_serialized_and_the_last_wins(stack: Stack) -> None:
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda w: stack.vrm("deploy", "--rust-weight", w), ["25", "75"]))
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    deploys = [r for r in _journal(stack) if r.action == "deploy" and r.result == "ok"]
    assert sorted(r.to["rust"] for r in deploys[-2:]) == [25, 75]
    first, second = deploys[-2:]
    assert second.from_ == first.to, "the second apply did not start from the first's result"
    assert stack.controller.served().split == Split(second.to["rust"])


def test_each_journal_record_names_operator_and_host(stack: Stack) -> None:
    result = stack.vrm("deploy", "--rust-weight", "15", USER="alice",
                       SSH_CLIENT="192.0.2.7 52100 22")
    assert result.returncode == 0, result.stderr
    stack.vrm("rollback", USER="bob")
    records = _journal(stack)
    assert records, "nothing journaled"
    for record in records:
        assert record.operator and record.host == socket.gethostname()
        assert record.time and record.action and record.result in ("ok", "failed")
    deploy, rollback = records[-2:]
    assert deploy.operator == "alice@192.0.2.7" and deploy.to == {"rust": 15, "typescript": 85}
    assert rollback.operator == "bob" and rollback.from_ == {"rust": 15, "typescript": 85}
    assert rollback.duration_ms is not None and rollback.duration_ms > 0


def test_missing_nginx_says_how_to_install(tmp_path: Path) -> None:
    stack = new_stack(tmp_path)
    result = stack.vrm("deploy", VRM_NGINX_BIN=str(tmp_path / "no-nginx-here"))
    assert result.returncode == 1
    assert "apt-get install -y nginx" in result.stderr
    stack.down()


@pytest.mark.parametrize("setting", ["PROXY_PORT", "PROXY_STATUS_PORT", "VISION_MANAGER_PORT"])
def test_a_busy_port_is_reported_clearly(tmp_path: Path, setting: str) -> None:
    stack = new_stack(tmp_path)
    port = int(stack.env_values[setting])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = stack.vrm("up")
    try:
        assert result.returncode == 1
        assert f"{setting} {port} is already in use" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    finally:
        stack.down()


def test_down_stops_exactly_what_up_started(tmp_path: Path) -> None:
    stack = new_stack(tmp_path)
    assert stack.vrm("up").returncode == 0
    pids = [s.pid for s in stack.runtime.services()]
    assert all(pids)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # A stale record that names a live process we did not start must not kill it.
        record = stack.settings.state_dir / "run" / "vision-manager-rust.json"
        data = json.loads(record.read_text())
        assert stack.vrm("down").returncode == 0
        data["pid"] = stranger.pid
        record.write_text(json.dumps(data))
        assert stack.vrm("down").returncode == 0
        assert stranger.poll() is None, "vrm down killed a process it did not start"
    finally:
        stranger.kill()
        stranger.wait()
    deadline = time.monotonic() + 5
    while any(start_ticks(p) is not None for p in pids if p is not None):
        assert time.monotonic() < deadline, "a service outlived vrm down"
        time.sleep(0.05)



# --- hostile input (issue 12, reproductions 3 and 7) ----------------------------------------


def _serving(stack: Stack) -> tuple[int, Split]:
    served = stack.controller.served()
    return served.generation, served.split


def _one_line_exit_2(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("url", ["http://127.0.0.1:25001;#", "http://x}{:1", "a'b", "h$host:1",
                                 "http://127.0.0.1:1 weight=99"])
def test_backend_url_injection_is_refused_before_nginx(stack: Stack, url: str) -> None:
    stack.controller.set_split(Split(20))
    before = _serving(stack)
    for command in (("deploy", "--rust-weight", "60"), ("rollback",), ("reload",)):
        result = stack.vrm(*command, RUST_BACKEND_URL=url)
        _one_line_exit_2(result)
        assert "RUST_BACKEND_URL=" in result.stderr
    assert _serving(stack) == before
    assert url not in stack.controller.store.main_config.read_text()


async def test_read_only_refuses_a_deploy_and_traffic_stays(stack: Stack) -> None:
    stack.controller.set_split(Split(30))
    before = _serving(stack)
    for argv in (("--read-only", "deploy", "--rust-weight", "90"),
                 ("deploy", "--rust-weight", "90", "--read-only"), ("rollback", "--read-only")):
        result = stack.vrm(*argv)
        _one_line_exit_2(result)
        assert "--read-only" in result.stderr
    assert _serving(stack) == before
    seen = await sample_backends(f"{stack.proxy}/api/v1/vision/metrics", 200)
    assert sum(seen.values()) == 200 and abs(seen["rust"] - 60) <= 4
    assert stack.vrm("status", "--read-only").returncode == 0


def test_status_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """`vrm status | head`: the reader is gone before vrm writes (closed here first, so the
    write fails every time): no BrokenPipe traceback, the exit status of a SIGPIPE."""
    stack = new_stack(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "vrm_tui.cli", "status"],
                              cwd=stack.deploy_dir, env=clean_env(), stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    finally:
        os.close(write_end)
    assert proc.stderr == "" and proc.returncode == 141


def _live(stack: Stack) -> list[str]:
    run = stack.settings.state_dir / "run"
    return [s.name for s in stack.runtime.services() if s.state == "running"] if run.is_dir() \
        else []


def test_a_bad_rehearsal_profile_exits_2_with_one_line_and_starts_nothing(tmp_path: Path) -> None:
    stack = new_stack(tmp_path)
    own = stack.deploy_dir / "configs" / "rehearsal" / "typescript.yaml"
    own.parent.mkdir(parents=True)
    own.write_text("backend: typescript\nlatency_ms: {metrics: {median: -1}}\n")
    logs = stack.settings.state_dir / "logs"
    logs.mkdir(parents=True)
    (logs / "vision-manager-typescript.log").write_text("stale error of an earlier run\n" * 9)
    for _ in range(2):
        result = stack.vrm("up")
        _one_line_exit_2(result)
        assert str(own) in result.stderr and "latency_ms.metrics.median" in result.stderr
        assert "stale" not in result.stderr
        assert _live(stack) == []
    for setting in ("VISION_MANAGER_PORT", "TS_VISION_MANAGER_PORT", "PROXY_PORT"):
        assert not port_in_use("127.0.0.1", int(stack.env_values[setting])), setting


def test_a_backend_that_dies_at_start_shows_its_own_lines_and_stops_the_other(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend that exits at start (here: a profile the pre-check is told to skip) is
    reported with the lines of this start only, and the backend started beside it stops."""
    stack = new_stack(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend: typescript\n")
    real = LocalRuntime._profile
    monkeypatch.setattr(LocalRuntime, "_profile", lambda self, backend: bad
                        if backend == "typescript" else real(self, backend))
    logs = stack.settings.state_dir / "logs"
    logs.mkdir(parents=True)
    (logs / "vision-manager-typescript.log").write_text("stale error of an earlier run\n" * 9)
    with pytest.raises(StackError) as caught:
        stack.runtime.start_dependencies()
    message = str(caught.value)
    assert "\n" not in message and "stale" not in message, message
    assert "vision-manager-typescript exited at start" in message
    assert "latency_ms.metrics is required" in message
    assert _live(stack) == [], "the rust backend of the failed bring-up is still running"
    assert not port_in_use("127.0.0.1", int(stack.env_values["VISION_MANAGER_PORT"]))
