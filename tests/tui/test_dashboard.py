"""The dashboard at every size and in both modes: layout from the current size, the keys that
matter in the footer, an observer's footer without write keys, one notice per refusal, the
action line's time and age, and vrm's actions in the command palette."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.widgets._footer import FooterKey

from tests.support import Stack, rendered
from tests.tui.test_app import dashboard, until
from tests.tui.test_screens import footer_keys
from vrm_tui import settings as settings_mod
from vrm_tui.console import Console
from vrm_tui.tui.app import VrmApp
from vrm_tui.tui.commands import vrm_commands
from vrm_tui.tui.screens.help import HelpScreen
from vrm_tui.tui.widgets.health import HealthPane

WRITE_KEYS = ("r", "plus", "minus", "w", "n", "b", "m")


def _app(tmp_path: Path, read_only: bool = False) -> VrmApp:
    settings = settings_mod.load(environ={}, deploy_dir=tmp_path)
    return VrmApp(Console(settings), read_only=read_only, live=False)


def _shown_keys(app: VrmApp) -> set[str]:
    """Footer keys drawn wholly inside the terminal."""
    width = app.size.width
    return {key.key for key in app.query(FooterKey)
            if key.region.width and key.region.right <= width}


async def test_the_layout_follows_the_size_of_each_resize(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.has_class("compact")
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert not app.has_class("compact"), "the new size, not the one before"
        assert app.query_one(HealthPane).compact is False
        await pilot.resize_terminal(200, 60)
        await pilot.pause()
        await pilot.resize_terminal(100, 30)
        await pilot.pause()
        assert app.has_class("compact")


async def test_80x24_shows_the_keys_that_matter_and_scrolls_to_the_journal(
        tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert {"r", "m", "l", "t", "question_mark"} <= _shown_keys(app)
        body = app.query_one("#body")
        body.scroll_end(animate=False)
        await pilot.pause()
        journal = app.query_one("#journal-pane")
        assert journal.region.height >= 3 and journal.region.bottom <= 24 - 1


async def test_an_observers_footer_has_no_write_keys_and_one_notice_per_refusal(
        tmp_path: Path) -> None:
    app = _app(tmp_path, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        keys = footer_keys(app.screen)
        assert not set(WRITE_KEYS) & set(keys), keys
        assert {"l", "t", "question_mark"} <= _shown_keys(app)
        banner = app.query_one("#read-only-banner")
        assert "keys that change traffic are off" in rendered(banner)
        assert banner.region.height == 1, "the whole banner, on one line at 80 columns"
        await pilot.press("r", "w", "plus", "r")
        await pilot.pause(0.1)
        notices = [n for n in app._notifications if n.title == "read-only"]
        assert len(notices) == 1, "one notice, not a stack of toasts"


async def test_the_palette_offers_vrms_actions_and_an_observer_only_its_own(
        tmp_path: Path) -> None:
    operator = [title for title, *_ in vrm_commands(_app(tmp_path))]
    observer = [title for title, *_ in vrm_commands(_app(tmp_path, read_only=True))]
    for word in ("Roll back", "Set rust weight", "Reload nginx", "Benchmark", "Logs", "Help"):
        assert any(word in title for title in operator), word
    assert not any("Roll back" in t or "weight" in t for t in observer)
    assert any("Logs" in t for t in observer)
    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"help every key")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))


async def test_an_observer_is_told_who_changed_the_split_with_time_and_age(stack: Stack) -> None:
    async with dashboard(stack, 40, read_only=True) as (app, pilot):
        await until(pilot, lambda: app.dashboard.journal_primed)  # the journal's history is read
        done = stack.vrm("rollback", USER="alice", SUDO_USER="")
        assert done.returncode == 0, done.stderr
        line = app.query_one("#action-line")
        await until(pilot, lambda: "alice" in rendered(line))
        assert "alice rollback: rust 40% → 0%" in rendered(line) and "s ago)" in rendered(line)
        # Issue 22: told on the action line, not by a toast over the Health rows.
        assert not any("alice" in n.message for n in app._notifications)


async def test_m_names_a_firing_critical_alert_before_it_starts(tmp_path: Path) -> None:
    """Issue 22: `m` asked to start without a word about a firing critical alert about rust
    (which fails the first step's gate) or a recent parity mismatch."""
    from vrm_tui.telemetry.prometheus import Alert
    from vrm_tui.tui.messages import AlertsUpdate
    from vrm_tui.tui.screens.confirm import ConfirmScreen

    app = _app(tmp_path)
    app.post_message(AlertsUpdate([Alert("HighErrorRateCritical", "firing", "critical",
                                         "rust error rate is 16% (> 15%)", "", {})]))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        detail = rendered(app.screen.query_one("#confirm-detail"))
        assert "⚠ critical alert firing: HighErrorRateCritical" in detail, detail


async def test_a_reload_that_keeps_the_split_is_no_split_change(tmp_path: Path) -> None:
    """Issue 22: `vrm parity on` (a reload) showed as `reload: rust 20% → 20%`, a split
    change, on the action line and as the split's last change."""
    from vrm_tui.core.names import Action
    from vrm_tui.journal import Record
    from vrm_tui.tui.messages import JournalUpdate

    def record(action: Action, was: int, now: int) -> Record:
        return Record(action=action, result="ok", operator="carol", host="elsewhere",
                      time="2026-11-26T09:00:00.000+00:00", from_={"rust": was},
                      to={"rust": now}, pid=1)

    app = _app(tmp_path)
    app.post_message(JournalUpdate([record("deploy", 10, 20)]))  # history: primes
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.dashboard.journal_primed)
        app.post_message(JournalUpdate([record("reload", 20, 20)]))
        await pilot.pause(0.2)
        assert "reload" not in rendered(app.query_one("#action-line"))
        assert "reload" not in rendered(app.query_one("#split-pane"))
        app.post_message(JournalUpdate([record("set-split", 20, 30)]))
        await until(pilot, lambda: "carol set-split" in rendered(app.query_one("#action-line")))


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (120, 40)])
async def test_health_words_are_never_cut(tmp_path: Path, size: tuple[int, int]) -> None:
    """Issue 22: at 120x40 Health read `⧖ hangi…` / `▲ degrad…`."""
    from tests.tui.test_snapshots import _status
    from vrm_tui.tui.messages import StatusUpdate

    app = _app(tmp_path)
    app.post_message(StatusUpdate(_status(hanging=True)))
    async with app.run_test(size=size) as pilot:
        health = app.query_one(HealthPane)
        await until(pilot, lambda: "⧖ hanging" in rendered(health))
        assert "hangi…" not in rendered(health)


async def test_at_80x24_an_active_migration_is_above_the_fold(tmp_path: Path) -> None:
    """Issue 22: at 80x24 an active migration was below the fold (under latency, VRAM,
    alerts); now it comes right under split and health, and goes back when it ends."""
    from tests.tui.test_snapshots import _feed, _migration
    from vrm_tui.tui.messages import MigrationUpdate
    from vrm_tui.tui.widgets.migration import MigrationPane

    app = _app(tmp_path)
    _feed(app)
    app.post_message(MigrationUpdate(_migration(True)))
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(MigrationPane)
        await until(pilot, lambda: pane.display and 0 < pane.region.y < 24)
        body = app.query_one("#body")
        assert body.children.index(pane) == body.children.index(app.query_one("#top-row")) + 1
        await pilot.resize_terminal(120, 40)
        await until(pilot, lambda: body.children.index(pane)
                    == body.children.index(app.query_one("#middle-row")) + 1)
