"""The traffic controller's protocol against the in-memory ProxyHost: fast, and every fault
on demand. The same behaviour is tested against a real nginx in tests/integration."""

from __future__ import annotations

from pathlib import Path

import pytest

from vrm_tui import settings as settings_mod
from vrm_tui.core.split import Split
from vrm_tui.journal import Journal
from vrm_tui.traffic.controller import ApplyError, TrafficController
from vrm_tui.traffic.fake import FakeProxyHost


def _controller(tmp_path: Path) -> tuple[TrafficController, FakeProxyHost]:
    settings = settings_mod.load({"VRM_STATE_DIR": str(tmp_path)}, environ={},
                                 deploy_dir=tmp_path)
    host = FakeProxyHost(tmp_path)
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
        controller.rollback()
    assert host.served().split == Split(10) and host.reloads == 0
    assert controller.configured() == Split(10)


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
