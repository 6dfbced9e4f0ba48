"""Rollback sets the split and nothing else, and only vrm can set the split (issue 19).

Against a real nginx with Debian's Lua module and real rehearsal backends: a pending config
that nginx or the bind rejects never blocks `vrm rollback` (and is never shipped by it), on
the live path, the reload path and with the master killed; `/vrm/split` takes a change only
when it is signed with the state dir's secret; a start never serves a split nobody verified.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_live_split import KILL_BEFORE_SET
from tests.support import Stack, clean_env
from vrm_tui.core import services
from vrm_tui.core.split import Split
from vrm_tui.journal import Journal, Record
from vrm_tui.system import loophttp
from vrm_tui.traffic import live, nginx

pytestmark = pytest.mark.skipif(not live.modules_installed(),
                                reason="LUA MODULE MISSING: scripts/test.sh installs "
                                       "libnginx-mod-http-lua")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other program holds (the bind of a pending PROXY_PORT fails)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _break_template(stack: Stack) -> None:
    own = stack.deploy_dir / "nginx" / "nginx.conf"
    own.parent.mkdir(exist_ok=True)
    own.write_text(nginx.TEMPLATE.read_text().replace("server_tokens off;",
                                                      "server_tokens of;"))


def _last_record(stack: Stack) -> Record:
    return Journal(stack.settings.paths.journal).read()[-1]


def test_a_pending_port_nginx_cannot_bind_does_not_block_rollback(stack: Stack,
                                                                  taken_port: int) -> None:
    assert stack.vrm("deploy", "--rust-weight", "50").returncode == 0
    workers = stack.runtime.proxy_worker_pids()
    config = stack.controller.served().config_generation
    rolled = stack.vrm("rollback", PROXY_PORT=str(taken_port))
    assert rolled.returncode == 0, rolled.stderr
    served = stack.controller.served()
    assert served.split == Split(0)
    assert served.config_generation == config, "a rollback never ships a config"
    assert stack.runtime.proxy_worker_pids() == workers, "and never reloads"
    assert "pending change not applied" in rolled.stdout + rolled.stderr
    record = _last_record(stack)
    assert record.result == "ok" and "pending change not applied" in record.detail


def test_a_template_nginx_rejects_does_not_block_rollback(stack: Stack) -> None:
    stack.controller.set_split(Split(40))
    _break_template(stack)
    rolled = stack.vrm("rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert stack.controller.served().split == Split(0)
    assert "pending change not applied" in rolled.stdout + rolled.stderr
    # A deploy still goes through `nginx -t`, and still refuses it.
    refused = stack.vrm("deploy", "--rust-weight", "30")
    assert refused.returncode == 1 and "nginx -t rejected" in refused.stderr
    assert stack.controller.served().split == Split(0)


def test_a_pending_change_nginx_accepts_is_not_shipped_by_a_rollback(stack: Stack) -> None:
    stack.controller.set_split(Split(60))
    before = stack.controller.store.current()
    stack.configure(PROXY_RATE_LIMIT="7")
    result = stack.controller.rollback()
    assert result.after == Split(0) and "pending change not applied" in result.note
    assert stack.controller.store.current() == before, "the pending config stays unapplied"
    assert "zone=vrm_api" not in stack.controller.store.main_config.read_text()
    assert stack.controller.reload().verified  # applying it is its own, explicit action
    assert "rate=7r/s" in stack.controller.store.main_config.read_text()
    assert stack.controller.served().split == Split(0)


def test_reload_path_rollback_uses_the_last_accepted_config(stack: Stack) -> None:
    stack.configure(VRM_LIVE_SPLIT="0")
    stack.controller.set_split(Split(35))
    accepted = stack.controller.store.good()
    assert accepted is not None
    _break_template(stack)
    result = stack.controller.rollback()
    assert result.verified and stack.controller.served().split == Split(0)
    current = stack.controller.store.current()
    assert current is not None and current.main.read_text() == accepted.main.read_text()
    assert "pending change not applied" in result.note


def test_rollback_after_the_master_is_killed_with_a_rejected_pending_config(
        stack: Stack, taken_port: int) -> None:
    stack.controller.set_split(Split(70))
    record = stack.runtime._record(services.PROXY)
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)
    _break_template(stack)
    rolled = stack.vrm("rollback", PROXY_PORT=str(taken_port))
    assert rolled.returncode == 0, rolled.stderr
    assert stack.controller.served().split == Split(0)


def _post(stack: Stack, body: bytes, signature: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-VRM-Signature"] = signature
    return loophttp.request("127.0.0.1", stack.settings.proxy_status_port, "POST",
                            "/vrm/split", body=body, headers=headers, timeout=2)


def test_an_unsigned_split_change_is_refused_logged_and_shown(stack: Stack) -> None:
    stack.controller.set_split(Split(10))
    generation = stack.controller.served().generation
    body = json.dumps({"generation": generation + 5, "rust": 100}).encode()
    assert _post(stack, body)[0] == 403
    assert _post(stack, body, "bm90IHRoZSBzZWNyZXQ=")[0] == 403
    served = stack.controller.served()
    assert served.split == Split(10) and served.refused == 2
    secret = stack.settings.paths.nginx_secret
    assert secret.stat().st_mode & 0o777 == 0o600
    _, answer = loophttp.request("127.0.0.1", stack.settings.proxy_status_port, "GET",
                                 "/vrm/served", timeout=2)
    assert secret.read_bytes().strip() not in answer, "the secret is never served"
    status = stack.vrm("status")
    assert "REFUSED  2 split change(s)" in status.stdout, status.stdout
    assert json.loads(stack.vrm("status", "--json").stdout)["refused"] == 2
    errors = stack.runtime.proxy_error_log().read_text()
    assert "vrm split change refused" in errors
    # vrm itself still changes it.
    assert stack.controller.set_split(Split(20)).verified


def test_another_local_user_cannot_move_traffic(stack: Stack) -> None:
    """The issue's reproduction: `nobody` with curl, and the token /vrm/served prints."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("curl") is None:
        pytest.skip("needs root, setpriv and curl to act as another user")
    stack.controller.set_split(Split(10))
    served = stack.controller.served()
    body = json.dumps({"generation": served.generation + 1, "rust": 100,
                       "token": served.token})
    poke = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "curl", "-s",
         "-o", "/dev/null", "-w", "%{http_code}", "-XPOST",
         f"http://127.0.0.1:{stack.settings.proxy_status_port}/vrm/split", "-d", body],
        capture_output=True, text=True, timeout=10, check=False)
    assert poke.stdout == "403", poke
    cannot_read = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat",
         str(stack.settings.paths.nginx_secret)], capture_output=True, timeout=10, check=False)
    assert cannot_read.returncode != 0
    assert stack.controller.served().split == Split(10)


def test_a_signed_generation_jump_is_refused(stack: Stack) -> None:
    served = stack.controller.served()
    secret = live.read_secret(stack.settings.paths.nginx_secret)
    body = json.dumps({"generation": 10_000_000_000_000, "rust": 100}).encode()
    status, _ = _post(stack, body, live.sign(secret, body))
    assert status == 409
    assert stack.controller.served().generation == served.generation
    assert stack.controller.set_split(Split(25)).verified
    assert stack.vrm("rollback").returncode == 0


def test_rollback_works_when_nginx_holds_another_key(stack: Stack) -> None:
    """The key changed on disk since nginx loaded it: the signed write is refused, and the
    rollback reloads the last accepted config (which loads the key) instead of failing."""
    stack.controller.set_split(Split(45))
    secret = stack.settings.paths.nginx_secret
    secret.unlink()
    live.ensure_secret(secret)
    result = stack.controller.rollback()
    assert result.verified and stack.controller.served().split == Split(0)
    assert "refused" in result.note
    assert stack.controller.set_split(Split(5)).verified


def test_a_restart_never_serves_a_split_nobody_verified(stack: Stack) -> None:
    stack.controller.set_split(Split(20))
    killed = subprocess.run([sys.executable, "-c", KILL_BEFORE_SET, "deploy", "--rust-weight",
                             "100"], cwd=stack.deploy_dir, env=clean_env(), capture_output=True,
                            text=True, timeout=60, check=False)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert "PENDING" in stack.vrm("status").stdout
    assert stack.vrm("down").returncode == 0
    up = stack.vrm("up")
    assert up.returncode == 0, up.stderr
    assert stack.controller.served().split == Split(20), "the last verified split serves"
    record = [r for r in Journal(stack.settings.paths.journal).read() if r.action == "up"][-1]
    assert "pending split not served" in record.detail and "rust 100%" in record.detail
    assert "PENDING" not in stack.vrm("status").stdout


def test_the_rollback_reserve_is_made_again_after_use(stack: Stack) -> None:
    reserve = stack.controller.store.reserve
    assert reserve.exists(), "bring-up keeps a reserve"
    reserve.unlink()  # what a rollback on a full disk spends
    stack.controller.rollback()
    assert reserve.exists()
    reserve.unlink()
    stack.controller.set_split(Split(40))
    assert reserve.exists()


def test_a_plain_rollback_stays_fast(stack: Stack) -> None:
    """Not a timing test: the rollback path itself does no render and no `nginx -t`."""
    stack.controller.set_split(Split(50))
    calls: list[str] = []
    original = stack.runtime.test_proxy_config

    def counting(config: Path) -> None:
        calls.append(str(config))
        original(config)

    stack.controller.host.test_proxy_config = counting  # type: ignore[method-assign]
    _break_template(stack)
    stack.controller.rollback()
    assert not calls and stack.controller.served().split == Split(0)


def test_rollback_on_a_full_disk_twice(tmp_path: Path) -> None:
    """Issue 19: fill -> rollback ok -> free -> deploy 40 -> fill -> rollback failed (the
    reserve was spent by the first rollback and never made again)."""
    from tests.fullfs import fill, small_tmpfs
    from tests.support import new_stack

    with small_tmpfs(tmp_path / "state") as state:
        full = new_stack(tmp_path, VRM_STATE_DIR=str(state), VRM_MONITORING="0")
        full.up()
        try:
            assert full.vrm("deploy", "--rust-weight", "50").returncode == 0
            filler = fill(state)
            first = full.vrm("rollback")
            assert first.returncode == 0, first.stderr
            assert full.controller.served().split == Split(0)
            filler.unlink()
            assert full.vrm("deploy", "--rust-weight", "40").returncode == 0
            assert full.controller.store.reserve.exists(), "the reserve is made again"
            filler = fill(state)
            second = full.vrm("rollback")
            assert second.returncode == 0, second.stderr
            assert full.controller.served().split == Split(0)
            filler.unlink()
        finally:
            full.down()
