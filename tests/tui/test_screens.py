"""Every screen over the dashboard: `r` rolls back from it, text stays text, and each
screen's own keys (weight, logs, benchmark, help) do what their footer says."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from rich.console import Console
from textual.command import CommandInput, CommandPalette
from textual.screen import Screen
from textual.widgets import Input, RichLog

from tests.support import Stack, rendered, sample_backends
from tests.tui.test_app import dashboard, last_action, shown_split, until
from vrm_tui.core.split import Split
from vrm_tui.tui.messages import ActionDone
from vrm_tui.tui.screens.bench import BenchScreen
from vrm_tui.tui.screens.confirm import ConfirmScreen
from vrm_tui.tui.screens.help import HelpScreen
from vrm_tui.tui.screens.logs import LogScreen
from vrm_tui.tui.screens.weight import WeightScreen
from vrm_tui.tui.widgets.health import HealthPane

NASTY = ("[/", "[emerg]", "[bold]")
SCREENS = {"help": ("question_mark", HelpScreen), "logs": ("l", LogScreen),
           "benchmark": ("b", BenchScreen), "confirm": ("plus", ConfirmScreen),
           "weight": ("w", WeightScreen)}


def footer_keys(screen: Screen[Any]) -> dict[str, str]:
    """What the screen's own footer offers: key -> description."""
    return {key: active.binding.description for key, active in screen.active_bindings.items()}


def view_text(view: RichLog) -> str:
    return "\n".join(strip.text for strip in view.lines)


@pytest.mark.parametrize("name", list(SCREENS))
async def test_r_rolls_back_from_every_screen(stack: Stack, name: str) -> None:
    key, kind = SCREENS[name]
    async with dashboard(stack, 50) as (app, pilot):
        await pilot.press(key)
        await until(pilot, lambda: isinstance(app.screen, kind))
        assert footer_keys(app.screen).get("r") == "Rollback", "the footer offers r"
        await pilot.press("r")
        await until(pilot, lambda: app.last_action is not None)
        assert last_action(app).ok and last_action(app).action == "rollback"
        assert stack.controller.served().split == Split(0)
        if name in ("confirm", "weight"):  # a question about the old split must not stay
            await until(pilot, lambda: not isinstance(app.screen, kind))
        if name == "benchmark":
            assert not cast(BenchScreen, app.screen).started, "r is not the benchmark's start key"


async def test_ctrl_r_rolls_back_from_a_text_field_that_types_r(stack: Stack) -> None:
    async with dashboard(stack, 50) as (app, pilot):
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogScreen))
        await pilot.press("slash", "r")
        field = app.screen.query_one("#logs-filter", Input)
        assert field.value == "r" and app.last_action is None, "r is typed in the filter"
        await pilot.press("ctrl+r")
        await until(pilot, lambda: app.last_action is not None)
        assert last_action(app).action == "rollback" and last_action(app).ok


async def test_read_only_screens_do_not_offer_r_and_help_marks_write_keys(stack: Stack) -> None:
    async with dashboard(stack, 40, read_only=True) as (app, pilot):
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert "r" not in footer_keys(app.screen)
        keys = Console(width=200, record=True, no_color=True)
        keys.print(cast(HelpScreen, app.screen).table())
        text = keys.export_text()
        for word in ("Rollback", "+Rust", "Weight", "Bench", "Migrate"):
            assert f"✗ read-only {word}" in text, word
        assert "✗ read-only Logs" not in text and "the stack keeps running" in text
        await pilot.press("r")
        await pilot.pause(0.2)
        assert app.last_action is None and stack.controller.served().split == Split(40)


async def test_help_in_the_demo_says_quit_stops_the_stack(stack: Stack) -> None:
    async with dashboard(stack, quit_stops_stack=True) as (app, pilot):
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        console = Console(width=200, record=True, no_color=True)
        console.print(cast(HelpScreen, app.screen).table())
        assert "stop the demo stack" in console.export_text()


async def test_markup_like_text_is_shown_as_text_on_every_path(stack: Stack) -> None:
    error_log = stack.runtime.proxy_error_log()
    with error_log.open("a") as handle:
        handle.write("2026/11/26 09:01:30 [emerg] 1#1: [/ and [bold] in a log line\n")
    async with dashboard(stack, 30) as (app, pilot):
        # The weight input: each typed (or pasted) as the operator might; no MarkupError.
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, WeightScreen))
        field = app.screen.query_one("#weight-input", Input)
        for text in NASTY:
            field.value = ""
            if "r" in text:
                field.value = text  # as pasted: a typed r rolls back
            else:
                await pilot.press(*text)
            await pilot.pause()
            assert f"'{text}'" in rendered(app.screen.query_one("#weight-error")), text
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, WeightScreen))
        # An error in a pane (shown directly: the next poll would replace it) and in the
        # action line and its toast.
        health = app.query_one(HealthPane)
        health.show_error("nginx: [emerg] [/ [bold] bad")
        assert "[emerg] [/ [bold]" in rendered(health)
        app.post_message(ActionDone("reload", False, "nginx -t: [emerg] [/ [bold] bad", 5.0))
        await until(pilot, lambda: "[emerg] [/ [bold]" in rendered(app.query_one("#action-line")))
        # A log line.
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogScreen))
        view = app.screen.query_one(RichLog)
        await until(pilot, lambda: "[emerg] 1#1: [/ and [bold] in a log line" in view_text(view))


async def test_w_starts_empty_names_backends_and_confirms_only_increases(stack: Stack) -> None:
    async with dashboard(stack, 30) as (app, pilot):
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, WeightScreen))
        field = app.screen.query_one("#weight-input", Input)
        assert field.value == "", "typing must not append to the current weight"
        await pilot.press("4", "5")
        diff = rendered(app.screen.query_one("#weight-diff"))
        assert "rust 30% → 45%" in diff and "+rust" in diff.replace(" ", "")
        assert "typescript" in diff and "weight=45" in diff
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, WeightScreen), "an increase asks first"
        assert "press enter again" in rendered(app.screen.query_one("#weight-step"))
        assert stack.controller.served().split == Split(30)
        await pilot.press("enter")
        await until(pilot, lambda: app.last_action is not None)
        assert stack.controller.served().split == Split(45)
        app.last_action = None
        await until(pilot, lambda: shown_split(app) == Split(45))
        await pilot.press("w", "2", "0", "enter")  # a decrease: one enter
        await until(pilot, lambda: app.last_action is not None)
        assert stack.controller.served().split == Split(20)


async def test_logs_show_each_line_once_formatted_with_wrap_filter_and_pause(
        stack: Stack) -> None:
    url = f"{stack.proxy}/api/v1/vision/metrics"
    await sample_backends(url, 20)
    async with dashboard(stack) as (app, pilot):
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogScreen))
        logs = app.screen
        assert isinstance(logs, LogScreen)

        def sent() -> list[str]:
            return [ln for ln in logs.shown() if " GET /api/v1/vision/metrics 200 " in ln]

        await until(pilot, lambda: len(sent()) >= 20)
        await pilot.pause(0.5)
        assert len(sent()) == 20, "each request once: the tail and the follow do not overlap"
        assert all(ln.split(" 200 ")[1].split()[0] in ("rust", "typescript") for ln in sent())
        await pilot.press("w")
        assert logs.query_one(RichLog).wrap and "wrap on" in rendered(logs.query_one("#logs-title"))
        await pilot.press("slash", *"typescript", "enter")
        assert logs.shown() and all("typescript" in ln.lower() for ln in logs.shown())
        assert len(logs.shown()) < len(logs.lines)
        await pilot.press("p")
        assert logs.paused
        before = len(logs.query_one(RichLog).lines)
        await sample_backends(f"{stack.proxy}/api/v1/vision/typescript/metrics", 5)
        await until(pilot, lambda: logs.held >= 5)
        assert len(logs.query_one(RichLog).lines) == before, "paused: the view holds still"
        await pilot.press("p")
        await until(pilot, lambda: len(logs.query_one(RichLog).lines) > before)


@pytest.mark.parametrize("key", ["r", "ctrl+r"])
async def test_rollback_from_the_command_palette(stack: Stack, key: str) -> None:
    """Issue 22: ctrl+p then r (or ctrl+r) typed into the palette's search and nothing was
    rolled back. The app's rollback binding is above every screen, the palette included."""
    async with dashboard(stack, 50) as (app, pilot):
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(key)
        await until(pilot, lambda: app.last_action is not None)
        assert last_action(app).ok and last_action(app).action == "rollback"
        assert stack.controller.served().split == Split(0)
        assert any(r.action == "rollback" for r in stack.console.journal_records())


async def test_r_types_once_the_palette_search_has_text(stack: Stack) -> None:
    """A search already typed keeps its r (`reload`); ctrl+r still rolls back there."""
    async with dashboard(stack, 50) as (app, pilot):
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press("w", "r")
        field = app.screen.query_one(CommandInput)
        assert field.value == "wr" and app.last_action is None
        await pilot.press("ctrl+r")
        await until(pilot, lambda: app.last_action is not None)
        assert last_action(app).action == "rollback" and last_action(app).ok


@pytest.mark.parametrize("name", ["logs", "benchmark"])  # help closes: the dashboard says it
async def test_a_rollback_shows_its_verified_result_on_the_screen_it_came_from(
        stack: Stack, name: str) -> None:
    """Issue 22: from the logs (l) or benchmark (b) screen the journal had the rollback and
    the screen said nothing."""
    key, kind = SCREENS[name]
    async with dashboard(stack, 30) as (app, pilot):
        await pilot.press(key)
        await until(pilot, lambda: isinstance(app.screen, kind))
        await pilot.press("r")
        await until(pilot, lambda: bool(app.screen.query("#screen-action")))
        line = app.screen.query_one("#screen-action")
        await until(pilot, lambda: "verified" in rendered(line))
        assert rendered(line).startswith("✓ rollback"), rendered(line)
        assert isinstance(app.screen, kind), "the screen stays; its result is on it"


async def test_a_keymap_rebinds_the_dashboards_keys_but_never_rollback(stack: Stack) -> None:
    """actions.py: operators rebind by binding id; rollback's entry, and any key r / ctrl+r
    would lose to another action, are dropped."""
    keymap = {"vrm.logs": "L", "vrm.rollback": "x", "vrm.window": "r"}
    async with dashboard(stack, 50, keymap=keymap) as (app, pilot):
        await pilot.press("L")
        await until(pilot, lambda: isinstance(app.screen, LogScreen))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, LogScreen))
        await pilot.press("x")
        await pilot.pause(0.2)
        assert app.last_action is None, "x is not rollback's"
        await pilot.press("r")
        await until(pilot, lambda: app.last_action is not None)
        assert last_action(app).action == "rollback" and last_action(app).ok
        assert stack.controller.served().split == Split(0)


async def test_the_benchmark_verdict_is_on_screen_at_80x24(tmp_path: Path) -> None:
    """Issue 22: at 80x24 the benchmark's result table and verdict could not be reached."""
    from tests.tui.test_snapshots import _app
    from vrm_tui.tui.screens.bench import BenchDone

    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BenchScreen))
        screen = app.screen
        table = "\n".join(f"row {i}: rust 1.0 ms, typescript 2.0 ms" for i in range(30))
        screen.post_message(BenchDone(f"{table}\nVERDICT rust 2.0x faster than typescript"))
        result = screen.query_one("#bench-result")
        body = screen.query_one("#bench-body")
        await until(pilot, lambda: "VERDICT" in rendered(result))
        await until(pilot, lambda: body.scroll_y >= body.max_scroll_y > 0)
        await pilot.press("home")
        await until(pilot, lambda: body.scroll_y == 0)
        await pilot.press("end")
        await until(pilot, lambda: body.scroll_y == body.max_scroll_y)
