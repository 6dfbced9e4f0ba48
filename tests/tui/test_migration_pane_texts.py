"""The migration pane says an ended migration's reason once (issue 20 item 7)."""

from __future__ import annotations

from textual.app import App, ComposeResult

from tests.support import rendered
from vrm_tui.console import MigrationView
from vrm_tui.migrate.plan import load
from vrm_tui.migrate.state import MigrationState
from vrm_tui.tui.widgets.migration import MigrationPane


class _One(App[None]):
    def compose(self) -> ComposeResult:
        yield MigrationPane()


async def test_a_rolled_back_migration_says_its_reason_once() -> None:
    reason = "step 1 failed its gates: rust health zzhung (fail unless ...) fail; rolled back"
    state = MigrationState(plan=load(steps="10,50", bake=30, gate_interval=1).to_dict(),
                           phase="rolled-back", reason=reason,
                           history=[{"step": 0, "target": 10, "outcome": "failed", "at": 0.0,
                                     "detail": reason}])
    app = _One()
    async with app.run_test(size=(200, 30)) as pilot:
        pane = app.query_one(MigrationPane)
        pane.show_view(MigrationView(state, guarded=False))
        await pilot.pause()
        assert rendered(pane).count("zzhung") == 1, rendered(pane)


async def test_a_finished_migration_is_one_line() -> None:
    """Issue 22: a finished migration's pane pushed Parity and the Journal off screen."""
    state = MigrationState(plan=load(steps="10,50,100", bake=30, gate_interval=1).to_dict(),
                           phase="done", step=2, reason="all steps passed their gates")
    app = _One()
    async with app.run_test(size=(120, 30)) as pilot:
        pane = app.query_one(MigrationPane)
        pane.show_view(MigrationView(state, guarded=False))
        await pilot.pause()
        assert pane.region.height == 1, rendered(pane)  # one line (no app CSS: no border)
        assert "✓ done" in rendered(pane)


def test_the_last_step_says_when_it_is_done_once() -> None:
    """Issue 22: `next: done at 09:11:00 if gates hold; done by ~09:11:00` said it twice."""
    from vrm_tui.migrate.timeline import next_line

    state = MigrationState(plan=load(steps="10,100", bake=30, gate_interval=1).to_dict(),
                           phase="baking", step=1)
    line = next_line(state, guarded=True)
    assert line.startswith("next: done at ") and "done by" not in line, line
