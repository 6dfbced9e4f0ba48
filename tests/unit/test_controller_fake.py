"""The traffic controller's protocol against the in-memory ProxyHost: fast, and every fault
on demand. The same behaviour is tested against a real nginx in tests/integration."""

from __future__ import annotations

from pathlib import Path

import pytest

from vrm_tui import settings as settings_mod
from vrm_tui.core.errors import ApplyError
from vrm_tui.core.split import Split
from vrm_tui.journal import Journal
from vrm_tui.traffic.controller import TrafficController
from vrm_tui.traffic.fake import FakeProxyHost


def _controller(tmp_path: Path, live: bool = False) -> tuple[TrafficController, FakeProxyHost]:
    """A controller over the in-memory nginx (`live`: with the Lua module)."""
    settings = settings_mod.load({"VRM_STATE_DIR": str(tmp_path)}, environ={},
                                 deploy_dir=tmp_path)
    host = FakeProxyHost(tmp_path, live=live)
    controller = TrafficController(settings, host)
    controller.prepare(Split(10))
    host.load()
    return controller, host


def test_a_change_is_verified_and_journaled(tmp_path: Path) -> None:
    controller, host = _controller(tmp_path)
    result = controller.set_split(Split(40))
    assert result.verified and host.served().split == Split(40)
    assert controller.configured() == Split(40)
    last = Journal(tmp_path / "journal.jsonl").read()[-1]
    assert (last.action, last.result, last.to) == ("deploy", "ok", {"rust": 40, "typescript": 60})


def test_a_rejected_config_changes_nothing(tmp_path: Path) -> None:
    controller, host = _controller(tmp_path)
    host.reject_test = "unknown directive \"bogus\""
    with pytest.raises(ApplyError, match="nginx -t rejected"):
        controller.set_split(Split(50))
    assert host.served().split == Split(10) and host.reloads == 0
    assert controller.configured() == Split(10)


def test_a_rollback_never_asks_nginx_t(tmp_path: Path) -> None:
    """Rollback reuses the last config nginx accepted: a template or setting that `nginx -t`
    would reject now cannot block it."""
    controller, host = _controller(tmp_path)
    controller.set_split(Split(60))
    host.reject_test = "unknown directive \"bogus\""
    result = controller.rollback()
    assert result.verified and host.served().split == Split(0)
    assert controller.configured() == Split(0)


def test_a_refused_reload_leaves_the_previous_generation_current(tmp_path: Path) -> None:
    controller, host = _controller(tmp_path)
    host.refuse_reload = "bind() to 224.0.0.1:3000 failed (99: Cannot assign requested address)"
    with pytest.raises(ApplyError, match="bind"):
        controller.set_split(Split(50))
    assert host.served().split == Split(10)
    assert controller.configured() == Split(10), "disk must say what nginx serves"


def test_no_master_is_a_clear_failure(tmp_path: Path) -> None:
    controller, host = _controller(tmp_path)
    host.running = False
    with pytest.raises(ApplyError, match="not running"):
        controller.rollback()
    assert Journal(tmp_path / "journal.jsonl").read()[-1].result == "failed"


def test_a_refusal_is_judged_by_nginx_not_by_old_log_lines(tmp_path: Path) -> None:
    controller, host = _controller(tmp_path)
    log = host.proxy_error_log()
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("2026/01/01 00:00:00 [emerg] 1#1: bind() failed, from an earlier reload\n")
    host.busy_polls = 3  # the master still works on an earlier reload when we signal
    result = controller.set_split(Split(60))
    assert result.verified and host.served().split == Split(60)


def test_a_refused_reload_then_good_changes_all_succeed(tmp_path: Path) -> None:
    controller, host = _controller(tmp_path)
    host.refuse_reload = "bind() to 127.0.0.1:3001 failed (98: Address already in use)"
    with pytest.raises(ApplyError, match="Address already in use"):
        controller.set_split(Split(55))
    host.refuse_reload = None
    for weight in (55, 0, 70):
        assert controller.set_split(Split(weight)).generation == host.served().generation
        assert controller.configured() == Split(weight) == host.served().split


def test_rollback_with_the_master_gone_restarts_it(tmp_path: Path) -> None:
    controller, host = _controller(tmp_path)
    controller.set_split(Split(40))
    host.running, host.orphans = False, {7, 8}
    result = controller.rollback()
    assert host.restarts == 1 and host.served().split == Split(0)
    assert "retired 2 orphan workers" in result.note
    assert "retired 2" in Journal(tmp_path / "journal.jsonl").read()[-1].detail


def test_a_restart_never_loads_an_unverified_generation(tmp_path: Path) -> None:
    controller, _ = _controller(tmp_path)
    controller.set_split(Split(20))
    pending = controller._candidate(Split(70), 99, 0)
    controller.store.activate(pending)  # swapped, then vrm was killed before the reload
    assert "never verified" in controller.settle_for_start()
    assert controller.configured() == Split(20)


def test_too_little_disk_fails_before_writing(tmp_path: Path) -> None:
    controller, host = _controller(tmp_path)
    controller.min_free_bytes = 2**62
    with pytest.raises(ApplyError, match="MB free"):
        controller.set_split(Split(50))
    assert host.served().split == Split(10)
    assert not [p for p in (tmp_path / "nginx").iterdir() if p.name.startswith(".gen-")]
    assert controller.rollback().verified, "a rollback needs only what it writes"


def test_an_unwritable_journal_is_reported_with_the_change(tmp_path: Path) -> None:
    controller, host = _controller(tmp_path)
    journal = tmp_path / "journal.jsonl"
    journal.unlink(missing_ok=True)
    journal.mkdir()  # cannot be opened for writing, as with `chattr +i`
    result = controller.set_split(Split(30))
    assert host.served().split == Split(30)
    assert "could not be written" in result.journal_error


def test_the_lock_is_reentrant_within_a_thread(tmp_path: Path) -> None:
    controller, _ = _controller(tmp_path)
    with controller.lock.hold("up", timeout=1), controller.lock.hold("prepare", timeout=1):
        pass


def test_logs_rotate_past_the_limit(tmp_path: Path) -> None:
    controller, host = _controller(tmp_path)
    controller.log_max_bytes = 10
    host.access_log().parent.mkdir(parents=True, exist_ok=True)
    host.access_log().write_text("x" * 100)
    assert controller.rotate_logs() == [host.access_log()] and host.reopened == 1
    assert not host.access_log().exists()


def test_a_weight_change_with_the_lua_module_is_no_reload(tmp_path: Path) -> None:
    controller, host = _controller(tmp_path, live=True)
    result = controller.set_split(Split(40))
    assert result.verified and host.served().split == Split(40)
    assert host.reloads == 0 and host.live_sets == 1
    assert controller.configured() == Split(40), "the split file is the truth on disk"


def test_a_refused_live_change_puts_the_file_back(tmp_path: Path) -> None:
    controller, host = _controller(tmp_path, live=True)
    controller.set_split(Split(30))
    host.refuse_live = "worker busy"
    with pytest.raises(ApplyError, match="did not take"):
        controller.rollback()
    assert host.served().split == Split(30) and controller.configured() == Split(30)


def test_a_refused_reload_never_moves_the_live_split(tmp_path: Path) -> None:
    controller, host = _controller(tmp_path, live=True)
    controller.set_split(Split(30))
    host.refuse_reload = "bind() to 127.0.0.1:1 failed (98: Address already in use)"
    with pytest.raises(ApplyError, match="bind"):
        controller.reload()
    assert host.served().split == Split(30) and host.live_sets == 1
    host.refuse_reload = None
    assert controller.reload().after == Split(30) and host.served().split == Split(30)
