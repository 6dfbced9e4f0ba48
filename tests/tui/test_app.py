"""Pilot tests of the TUI against the real local stack (nginx + rehearsal backends)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import cast

from textual.pilot import Pilot
from textual.widgets import Input

from tests.support import Stack, rendered, sample_backends
from vrm_tui.core import services
from vrm_tui.core.split import Split
from vrm_tui.migrate.state import StateStore
from vrm_tui.tui.app import VrmApp
from vrm_tui.tui.messages import ActionDone, StatusUpdate, VramUpdate
from vrm_tui.tui.polls import POLL_S, Source
from vrm_tui.tui.screens.bench import BenchScreen
from vrm_tui.tui.screens.confirm import ConfirmScreen
from vrm_tui.tui.screens.help import HelpScreen
from vrm_tui.tui.screens.weight import WeightScreen
from vrm_tui.tui.widgets.health import HealthPane
from vrm_tui.tui.widgets.journal import JournalPane
from vrm_tui.tui.widgets.migration import MigrationPane
from vrm_tui.tui.widgets.split import SplitPane
from vrm_tui.tui.widgets.vram import VramPane

SIZE = (120, 40)


async def until(pilot: Pilot[None], predicate: Callable[[], bool], timeout: float = 5.0) -> float:
    """Let the app run until `predicate()` holds; return how long that took."""
    started = time.perf_counter()
    while not predicate():
        assert time.perf_counter() - started < timeout, "condition not reached in time"
        await pilot.pause(0.01)
    return time.perf_counter() - started


def last_action(app: VrmApp) -> ActionDone:
    """The action the app reported last (the caller has waited for one)."""
    done = app.last_action
    assert done is not None
    return done


def shown_split(app: VrmApp) -> Split:
    """The split the app's last status shows (the dashboard has loaded one)."""
    status = app.status
    assert status is not None and status.served is not None
    return status.served.split


async def _loaded(pilot: Pilot[None], app: VrmApp) -> None:
    await until(pilot, lambda: app.status is not None and app.status.served is not None)


@asynccontextmanager
async def dashboard(stack: Stack, split: int | None = None,
                    **options: object) -> AsyncIterator[tuple[VrmApp, Pilot[None]]]:
    """The app on the real stack (serving `split` first, if given), once it shows the split."""
    if split is not None:
        stack.controller.set_split(Split(split))
    app = VrmApp(stack.console, **options)  # type: ignore[arg-type]
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot, app)
        yield app, pilot


async def test_r_rolls_back_and_the_split_pane_says_so(stack: Stack) -> None:
    async with dashboard(stack, 50) as (app, pilot):
        await pilot.press("r")
        await until(pilot, lambda: app.last_action is not None)
        assert last_action(app).ok and last_action(app).action == "rollback"
        seen = await sample_backends(f"{stack.proxy}/api/v1/vision/metrics", 200)
        assert seen == {"typescript": 200}
        split = app.query_one(SplitPane)
        await until(pilot, lambda: "rust   0%" in rendered(split))
        line = rendered(app.query_one("#action-line"))
        assert "ms from key" in line and "s ago)" in line, "the action line has time and age"


async def test_plus_asks_then_moves_the_split(stack: Stack) -> None:
    async with dashboard(stack, 10) as (app, pilot):
        await pilot.press("plus")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert stack.controller.served().split == Split(10), "nothing before the answer"
        await pilot.press("y")
        await until(pilot, lambda: app.last_action is not None)
        assert last_action(app).ok
        assert stack.controller.served().split == Split(20)
        app.last_action = None
        await until(pilot, lambda: shown_split(app) == Split(20))
        await pilot.press("minus")  # decreases do not ask
        await until(pilot, lambda: app.last_action is not None)
        assert stack.controller.served().split == Split(10)


async def test_w_refuses_bad_weights_inline_and_applies_nothing(stack: Stack) -> None:
    async with dashboard(stack, 30) as (app, pilot):
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, WeightScreen))
        for bad in ("150", "abc"):
            field = app.screen.query_one("#weight-input", Input)
            field.value = ""
            await pilot.press(*bad, "enter")
            await pilot.pause(0.05)
            assert isinstance(app.screen, WeightScreen), "a bad weight must not close the modal"
            assert f"'{bad}'" in rendered(app.screen.query_one("#weight-error"))
        field = app.screen.query_one("#weight-input", Input)
        field.value = ""
        await pilot.press("4", "5")
        assert "weight=45" in rendered(app.screen.query_one("#weight-diff"))
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.last_action is None
        assert stack.controller.served().split == Split(30)


async def test_read_only_refuses_write_keys_and_says_why(stack: Stack) -> None:
    async with dashboard(stack, 40, read_only=True) as (app, pilot):
        assert "READ-ONLY" in rendered(app.query_one("#read-only-banner"))
        await pilot.press("r", "plus", "w")
        await pilot.pause(0.3)
        assert app.last_action is None and not isinstance(app.screen, WeightScreen)
        assert stack.controller.served().split == Split(40)
        assert any("read-only" in n.message for n in app._notifications)
        await pilot.press("question_mark")  # reading keys still work
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))


async def test_a_killed_backend_shows_down_while_keys_stay_responsive(stack: Stack) -> None:
    async with dashboard(stack) as (app, pilot):
        health = app.query_one(HealthPane)
        assert health.states()[services.RUST] == "up"
        stack.runtime.stop_service(services.RUST)
        killed = time.perf_counter()
        await pilot.press("question_mark")
        assert await until(pilot, lambda: isinstance(app.screen, HelpScreen)) < 0.2
        await until(pilot, lambda: health.states().get(services.RUST) == "down", timeout=3.0)
        assert time.perf_counter() - killed < 3.0
        assert "✗ down" in rendered(health)


async def test_a_change_of_state_is_shown_at_once_not_at_the_next_paint(stack: Stack) -> None:
    """Answers that only refresh numbers wait for the once-a-second paint; one in which a
    backend's state changes (rust went down) is shown as soon as it is read."""
    app = VrmApp(stack.console, live=False)  # polls started by hand, and no paint at all
    async with app.run_test(size=SIZE) as pilot:
        health = app.query_one(HealthPane)
        app.polls.poll(Source.STATUS)
        await until(pilot, lambda: health.states().get(services.RUST) == "up")
        await until(pilot, lambda: Source.STATUS in app.polls.fresh)  # the same state again: held
        stack.runtime.stop_service(services.RUST)
        await until(pilot, lambda: health.states().get(services.RUST) == "down", timeout=4.0)


async def test_an_action_in_one_instance_shows_in_the_others_journal(stack: Stack) -> None:
    stack.controller.set_split(Split(60))
    first, second = VrmApp(stack.console), VrmApp(stack.console)
    async with first.run_test(size=SIZE) as one, second.run_test(size=SIZE) as two:
        await _loaded(one, first)
        await _loaded(two, second)
        await one.press("r")
        await until(one, lambda: first.last_action is not None)
        journal = second.query_one(JournalPane)
        await until(two, lambda: any(r.action == "rollback" for r in journal.records))
        assert "rollback 60→0" in rendered(journal)


async def test_b_runs_a_benchmark_with_live_progress(stack: Stack) -> None:
    async with dashboard(stack) as (app, pilot):
        app.bench_seconds = 1.0
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BenchScreen))
        await pilot.pause(0.3)
        bench = cast(BenchScreen, app.screen)
        assert not bench.started, "the live backends are loaded only once asked"
        await pilot.press("y")
        live = app.screen.query_one("#bench-live")
        await until(pilot, lambda: "req/s" in rendered(live), timeout=10)
        result = app.screen.query_one("#bench-result")
        await until(pilot, lambda: "faster than typescript" in rendered(result), timeout=20)
        assert "█ compare rust" in rendered(live) and "▒ compare typescript" in rendered(live)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, BenchScreen))


async def test_m_starts_a_migration_and_r_rolls_back_and_stops_it(stack: Stack) -> None:
    store = StateStore(stack.settings.state_dir)
    async with dashboard(stack, 0) as (app, pilot):
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: (s := store.load()) is not None and s.phase == "baking",
                    timeout=10)
        assert stack.controller.served().split == Split(10)
        pane = app.query_one(MigrationPane)
        await until(pilot, lambda: "● 10%" in rendered(pane) and pane.display)
        await pilot.press("r")
        await until(pilot, lambda: (s := store.load()) is not None and s.phase == "aborted",
                    timeout=10)
        assert stack.controller.served().split == Split(0)
        await until(pilot, lambda: "aborted" in rendered(pane))


async def test_rollback_does_not_queue_behind_hung_telemetry(stack: Stack) -> None:
    """Polls run in the event loop's thread pool (6 threads on 2 cores); with a backend hung
    every probe waits out its timeout there. A rollback must not wait behind them."""
    async with dashboard(stack, 50) as (app, pilot):
        loop = asyncio.get_running_loop()
        release = threading.Event()
        blockers = [loop.run_in_executor(None, release.wait, 30.0) for _ in range(12)]
        try:
            app.last_action = None
            await pilot.press("r")
            # The pool stays full until the rollback is done: queued behind it, it never is.
            await until(pilot, lambda: app.last_action is not None, timeout=10)
            assert app.last_action is not None and app.last_action.ok, app.last_action
        finally:
            release.set()
            await asyncio.gather(*blockers)


def _racing_reads(stack: Stack) -> tuple[VrmApp, threading.Event, threading.Event]:
    """A dashboard (no polls of its own, past its first answers, showing the state after a
    rollback) whose first status read answers last, with the split from before the rollback;
    later reads answer at once, with the split after it. The events are set once the slow
    read has started, and once it has answered."""
    stack.controller.set_split(Split(50))
    before = stack.console.status()
    stack.controller.rollback()
    after = stack.console.status()
    app = VrmApp(stack.console, live=False)
    first, entered, answered = iter([before]), threading.Event(), threading.Event()

    def fetch() -> StatusUpdate:
        status = next(first, None)
        if status is None:
            return StatusUpdate(after)
        entered.set()
        time.sleep(0.4)
        answered.set()
        return StatusUpdate(status)

    app.polls.fetchers[Source.STATUS] = fetch
    app.polls.shown.add(Source.STATUS)  # a running dashboard: its answers wait for the paint...
    # ...unless the state changes
    app.polls.headlines[Source.STATUS] = StatusUpdate(after).headline()
    return app, entered, answered


async def test_an_answer_asked_before_an_action_never_replaces_one_asked_after(
        stack: Stack) -> None:
    """A poll still waiting on a slow probe when a rollback lands must not paint the split
    from before the rollback over the one the action's own status read shows."""
    app, entered, answered = _racing_reads(stack)
    async with app.run_test(size=SIZE) as pilot:
        app.polls.poll(Source.STATUS)
        await until(pilot, entered.is_set)
        app.polls.poll(Source.STATUS, repeat=False)  # what an action asks for
        await until(pilot, lambda: app.status is not None)
        await until(pilot, answered.is_set)
        await pilot.pause(0.1)
        app.polls.paint()
        await pilot.pause(0.1)
        assert app.status is not None and app.status.served is not None
        assert app.status.served.split == Split(0), "the older answer was painted over"


async def test_an_actions_own_read_shows_a_newer_buffered_answer_at_once(
        stack: Stack) -> None:
    """The read after an action, overtaken by a poll asked later (whose answer waits for
    the paint), shows that newer answer at once rather than nothing until the paint."""
    app, entered, _ = _racing_reads(stack)
    async with app.run_test(size=SIZE) as pilot:
        app.polls.poll(Source.STATUS, repeat=False)  # the action's read: asked first, slow
        await until(pilot, entered.is_set)
        app.polls.poll(Source.STATUS)  # a poll asked later, answered first: waits for the paint
        await until(pilot, lambda: app.status is not None, timeout=2)
        assert app.status is not None and app.status.served is not None
        assert app.status.served.split == Split(0)


async def test_quitting_waits_for_a_traffic_change_in_flight(stack: Stack) -> None:
    """`q` (or a hang-up) while a rollback runs: the rollback finishes before vrm exits,
    and before the demo stops its stack."""
    finished: list[bool] = []
    release = threading.Event()
    app = VrmApp(stack.console, live=False)

    def change() -> None:
        release.wait(10)
        time.sleep(0.3)
        finished.append(True)

    async with app.run_test(size=SIZE):
        app.changes.start("vrm-test", change)
    assert not finished  # the app has closed; the action is still running
    release.set()
    app.exited_cleanly()
    assert finished == [True]


async def test_a_failing_source_is_asked_later_and_a_hidden_pane_not_at_all(
        stack: Stack) -> None:
    """polls.py: a source that fails waits twice as long per failure in a row (up to a
    ceiling), is shown as failing at once, and one whose pane is hidden is not asked."""
    app = VrmApp(stack.console, live=False)

    def broken() -> StatusUpdate:
        raise OSError("no route to the metrics endpoint")

    app.polls.fetchers[Source.VRAM] = broken
    async with app.run_test(size=SIZE) as pilot:
        assert app.polls.interval(Source.VRAM) == POLL_S[Source.VRAM]
        app.polls.poll(Source.VRAM, repeat=False)
        await until(pilot, lambda: app.polls.failures.get(Source.VRAM) == 1)
        app.polls.poll(Source.VRAM, repeat=False)
        await until(pilot, lambda: app.polls.failures.get(Source.VRAM) == 2)
        assert app.polls.interval(Source.VRAM) == 4 * POLL_S[Source.VRAM]
        app.polls.fetchers[Source.VRAM] = lambda: VramUpdate(stack.console.vram(1.0))
        app.polls.poll(Source.VRAM, repeat=False)
        await until(pilot, lambda: app.polls.failures.get(Source.VRAM) == 0)
        assert app.polls.visible(Source.VRAM)
        app.query_one(VramPane).display = False
        assert not app.polls.visible(Source.VRAM)
        assert app.polls.visible(Source.STATUS), "status feeds the action line: always asked"
