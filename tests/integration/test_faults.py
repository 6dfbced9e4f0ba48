"""Rollback under the faults around a change (issue 12): a reload nginx refuses, a killed
master, parallel bring-ups, a full or unwritable state dir, root workers, a foreign nginx on
the status port, a restart over an interrupted change. Real nginx and backends throughout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fullfs import fill
from tests.support import Stack, clean_env, new_stack, sample_backends
from vrm_tui.core import services
from vrm_tui.core.split import Split
from vrm_tui.journal import Journal
from vrm_tui.system import procs
from vrm_tui.traffic import nginx

METRICS = "/api/v1/vision/metrics"


def _master(stack: Stack) -> int:
    record = stack.runtime._record(services.PROXY)
    assert record is not None, "no nginx master"
    return record.pid


def _wait(condition: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _own_template(stack: Stack, extra_listen: str) -> Path:
    own = stack.deploy_dir / "nginx" / "nginx.conf"
    own.parent.mkdir(exist_ok=True)
    own.write_text(nginx.TEMPLATE.read_text().replace(
        "listen {{ LISTEN }};", f"listen {{{{ LISTEN }}}};\n        listen {extra_listen};"))
    return own


def _current(stack: Stack) -> int:
    current = stack.controller.store.current()
    assert current is not None
    return current.number


# --- 1. a reload nginx refuses ------------------------------------------------------------

async def test_failed_bind_exits_1_and_the_next_rollback_works(stack: Stack) -> None:
    stack.controller.set_split(Split(30))
    before = stack.controller.served().config_generation
    # A port something else holds: `nginx -t` passes, the reload retries the bind for 2.5 s
    # and gives up. (The 224.0.0.1 binds on some kernels; an address the host lacks
    # is caught by `nginx -t`.)
    (port,) = procs.free_ports(1)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        failed = stack.vrm("deploy", "--rust-weight", "40", PROXY_PORT=str(port))
    assert failed.returncode == 1, failed.stderr
    assert f"bind() to 127.0.0.1:{port} failed" in failed.stderr and "refused" in failed.stderr
    assert f"generation {before} still serves" in failed.stderr
    assert "Traceback" not in failed.stderr
    # The previous generation serves, `current` names it, and nginx is done with the reload
    # (nothing is left to load later).
    assert procs.reload_settled(_master(stack)) is True
    assert stack.controller.served().config_generation == before == _current(stack)
    rolled = stack.vrm("rollback")
    assert rolled.returncode == 0, rolled.stderr
    seen = await sample_backends(f"{stack.proxy}{METRICS}", 200)
    assert seen["rust"] == 0 and seen["typescript"] == 200, seen
    assert stack.controller.served().config_generation == _current(stack)


async def test_good_deploys_after_a_refused_one_all_succeed_and_are_live(stack: Stack) -> None:
    own = _own_template(stack, f"127.0.0.1:{stack.settings.rust_port}")  # rust holds it
    refused = stack.vrm("deploy", "--rust-weight", "55")
    assert refused.returncode == 1 and "Address already in use" in refused.stderr, \
        refused.stderr
    own.unlink()
    for weight in (55, 20, 70, 0, 35, 90, 15):
        done = stack.vrm("deploy", "--rust-weight", str(weight))
        assert done.returncode == 0, (weight, done.stderr)
        served = stack.controller.served()
        assert served.split == Split(weight) and served.config_generation == _current(stack)
    deploys = [r for r in Journal(stack.settings.paths.journal).read() if r.action == "deploy"]
    assert [r.result for r in deploys[-8:]] == ["failed"] + ["ok"] * 7


# --- 2. a killed master -------------------------------------------------------------------

def _kill_master(stack: Stack) -> set[int]:
    master = _master(stack)
    workers = procs.children(master)
    os.kill(master, signal.SIGKILL)
    _wait(lambda: procs.start_ticks(master) is None, "the master to die")
    return workers


async def test_rollback_after_the_master_was_killed(stack: Stack) -> None:
    stack.controller.set_split(Split(40))
    generation = stack.controller.served().generation
    old_master = _master(stack)
    orphans = _kill_master(stack)
    # The orphans still serve the old split, and status says so.
    seen = await sample_backends(f"{stack.proxy}{METRICS}", 100)
    assert seen["rust"] > 0 and sum(seen.values()) == 100
    status = stack.vrm("status")
    assert status.returncode == 1
    assert f"master gone, {len(orphans)} orphan workers" in status.stdout
    assert f"generation {generation}" in status.stdout and "orphaned" in status.stdout
    rolled = stack.vrm("rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert "retired" in rolled.stdout
    seen = await sample_backends(f"{stack.proxy}{METRICS}", 200)
    assert seen["rust"] == 0 and seen["typescript"] == 200, seen
    assert all(procs.start_ticks(p) is None or procs.worker_retired(p) for p in orphans)
    new_master = _master(stack)
    assert new_master != old_master
    assert stack.vrm("deploy", "--rust-weight", "25").returncode == 0
    assert stack.controller.served().split == Split(25)
    assert stack.vrm("status").returncode == 0


def test_down_after_the_master_was_killed_leaves_no_listener(stack: Stack) -> None:
    orphans = _kill_master(stack)
    assert stack.vrm("down").returncode == 0
    for port in (stack.settings.proxy_port, stack.settings.proxy_status_port):
        assert not procs.port_in_use("127.0.0.1", port), port
    assert all(procs.start_ticks(p) is None for p in orphans)
    assert stack.vrm("up").returncode == 0


# --- 3. bring-up under the lock -----------------------------------------------------------

def test_parallel_deploys_on_a_stopped_stack_start_one_stack(tmp_path: Path) -> None:
    stack = new_stack(tmp_path)
    try:
        with ThreadPoolExecutor(6) as pool:
            runs = list(pool.map(lambda w: stack.vrm("deploy", "--rust-weight", str(w),
                                                     timeout=180), [10, 20, 30, 40, 50, 60]))
        assert [r.returncode for r in runs] == [0] * 6, [r.stderr for r in runs]
        for service in services.BACKENDS:
            log = stack.settings.paths.service_log(service)
            assert len(procs.writing_to(log)) == 1, service
        assert stack.vrm("down").returncode == 0
        for setting in ("PROXY_PORT", "PROXY_STATUS_PORT", "VISION_MANAGER_PORT",
                        "TS_VISION_MANAGER_PORT"):
            assert not procs.port_in_use("127.0.0.1", int(stack.env_values[setting])), setting
        assert stack.vrm("up").returncode == 0
    finally:
        stack.down()


# --- 4. disk ------------------------------------------------------------------------------


async def test_a_full_state_dir_fails_clearly_and_rollback_still_works(
        tmp_path: Path, small_disk: Path) -> None:
    stack = new_stack(tmp_path, VRM_STATE_DIR=str(small_disk / "state"))
    stack.up()
    try:
        assert stack.vrm("deploy", "--rust-weight", "40").returncode == 0
        generation = stack.controller.served().generation
        fill(small_disk)
        refused = stack.vrm("deploy", "--rust-weight", "60")
        assert refused.returncode == 1 and "MB free" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert stack.controller.served().generation == generation
        rolled = stack.vrm("rollback")
        assert rolled.returncode == 0, rolled.stderr
        assert "Traceback" not in rolled.stderr  # the reserve it released holds the record
        seen = await sample_backends(f"{stack.proxy}{METRICS}", 100)
        assert seen["rust"] == 0 and seen["typescript"] == 100, seen
        store = stack.settings.paths.nginx
        for folder in store.iterdir():
            assert not folder.name.startswith(".gen-"), f"partial generation {folder}"
            if folder.name.startswith("gen-") and folder.is_dir() and "." not in folder.name:
                assert {p.name for p in folder.iterdir()} == {"nginx.conf", "upstream.conf"}
    finally:
        stack.down()


def test_logs_are_rotated_and_nginx_reopens_them(stack: Stack) -> None:
    access = stack.runtime.access_log()
    stack.controller.log_max_bytes = 1
    with open(access, "ab") as handle:
        handle.write(b"x" * 4096 + b"\n")
    assert access in stack.controller.rotate_logs()
    assert access.with_name(access.name + ".1").stat().st_size >= 4096
    subprocess.run(["curl", "-s", "-o", "/dev/null", f"{stack.proxy}{METRICS}"], check=False)
    _wait(lambda: access.exists() and access.stat().st_size > 0, "nginx to reopen its log")


def test_an_unwritable_journal_is_said_and_the_change_stands(stack: Stack) -> None:
    journal = stack.settings.paths.journal
    journal.touch()
    locked = subprocess.run(["chattr", "+i", str(journal)], capture_output=True, text=True,
                            check=False)
    if locked.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: chattr +i unsupported here: {locked.stderr.strip()}")
    try:
        done = stack.vrm("deploy", "--rust-weight", "45")
    finally:
        subprocess.run(["chattr", "-i", str(journal)], check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "could not be written" in done.stderr and "not journaled" in done.stderr
    assert stack.controller.served().split == Split(45)


# --- 5. unprivileged workers, a private state dir -----------------------------------------

def test_workers_drop_root_and_the_state_dir_is_private() -> None:
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: runs as root only (workers cannot drop otherwise)")
    # Under a folder `nobody` may traverse (pytest's own tmp dir is 0700).
    base = Path(tempfile.mkdtemp(prefix="vrm-fault-"))
    base.chmod(0o755)
    stack = new_stack(base)
    try:
        stack.up()
        workers = procs.children(_master(stack))
        assert workers
        for pid in workers:
            uid = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if ln.startswith("Uid:")).split()[1]
            assert uid != "0", f"worker {pid} runs as root"
        state = stack.settings.state_dir
        assert stat.S_IMODE(state.stat().st_mode) == 0o710
        assert stat.S_IMODE(state.stat().st_mode) & 0o007 == 0
        stack.controller.set_split(Split(20))
        assert stat.S_IMODE(stack.settings.paths.journal.stat().st_mode) == 0o640
        # Workers can buffer a large request body in the temp dir.
        body = base / "body"
        body.write_bytes(b"x" * 200_000)
        code = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                               "--data-binary", f"@{body}", f"{stack.proxy}{METRICS}"],
                              capture_output=True, text=True, check=False).stdout
        assert code != "500", "workers could not write the request body to the temp dir"
    finally:
        stack.down()
        shutil.rmtree(base, ignore_errors=True)


# --- 6. a foreign nginx, an interrupted change --------------------------------------------

FOREIGN = """
pid {dir}/nginx.pid; error_log {dir}/error.log; daemon off; worker_processes 1;
events {{}}
http {{ access_log off; client_body_temp_path {dir}; proxy_temp_path {dir};
  fastcgi_temp_path {dir}; uwsgi_temp_path {dir}; scgi_temp_path {dir};
  server {{ listen 127.0.0.1:{port};
    location = /vrm/served {{
      return 200 '{{"generation":5,"rust":40,"typescript":60,"worker_pid":1}}'; }} }} }}
"""


def test_status_of_a_stopped_stack_ignores_another_nginx(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    stack = new_stack(tmp_path / "mine")
    other = tmp_path / "other"
    other.mkdir()
    (other / "nginx.conf").write_text(
        FOREIGN.format(dir=other, port=stack.settings.proxy_status_port))
    foreign = subprocess.Popen([nginx.nginx_binary(), "-e", str(other / "error.log"),
                                "-c", str(other / "nginx.conf")])
    try:
        _wait(lambda: procs.port_in_use("127.0.0.1", stack.settings.proxy_status_port),
              "the foreign nginx to listen")
        status = stack.vrm("status", "--json")
        assert status.returncode == 1
        data = json.loads(status.stdout)
        assert data["split"] is None and "not this state dir's" in data["split_error"]
        proxy = next(s for s in data["services"] if s["name"] == services.PROXY)
        assert proxy["healthy"] is False
    finally:
        foreign.send_signal(signal.SIGQUIT)
        foreign.wait(timeout=10)


KILL_BEFORE_RELOAD = """
import os, signal, sys
from vrm_tui.stack.local import LocalRuntime
LocalRuntime.signal_proxy_reload = lambda self: os.kill(os.getpid(), signal.SIGKILL)
from vrm_tui.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_restart_does_not_load_an_unverified_generation(stack: Stack) -> None:
    stack.configure(VRM_LIVE_SPLIT="0")  # the reload path (test_live_split covers the other)
    stack.controller.set_split(Split(20))
    killed = subprocess.run([sys.executable, "-c", KILL_BEFORE_RELOAD, "deploy",
                             "--rust-weight", "70"], cwd=stack.deploy_dir, env=clean_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert killed.returncode == -9
    assert stack.vrm("down").returncode == 0
    assert stack.vrm("up").returncode == 0
    assert stack.controller.served().split == Split(20)
    up = [r for r in Journal(stack.settings.paths.journal).read() if r.action == "up"][-1]
    assert "never verified" in up.detail and up.result == "ok"


def test_a_first_config_nginx_rejects_leaves_nothing_running(tmp_path: Path) -> None:
    """`vrm up` on a stopped stack with a template `nginx -t` rejects: exit 1, and the
    backends it started for the test are stopped again (nothing the operator did not get)."""
    stack = new_stack(tmp_path)
    own = stack.deploy_dir / "nginx" / "nginx.conf"
    own.parent.mkdir(exist_ok=True)
    bogus = "server_tokens off;\n    bogus_directive on;"
    own.write_text(nginx.TEMPLATE.read_text().replace("server_tokens off;", bogus))
    failed = stack.vrm("up")
    assert failed.returncode == 1 and "bogus_directive" in failed.stderr, failed.stderr
    assert all(s.state != "running" for s in stack.runtime.services()), stack.runtime.services()
    for port in (stack.settings.rust_port, stack.settings.ts_port):
        assert not procs.port_in_use("127.0.0.1", port), port
