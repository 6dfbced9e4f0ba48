"""The requests in flight per backend on screen (issue 22 item 3): shown with each backend, and
at 80x24, 120x40 and 200x60 no Latency or Health line wraps because of them (the head line
did at 120 columns)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.support import rendered
from tests.tui import test_snapshots
from vrm_tui.traffic.served import InFlight
from vrm_tui.tui.widgets.health import HealthPane
from vrm_tui.tui.widgets.latency import LatencyPane
from vrm_tui.views import StackStatus


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)],
                         ids=["80x24", "120x40", "200x60"])
async def test_each_backend_shows_its_own_count_and_no_line_wraps(
        size: tuple[int, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = test_snapshots._status

    def counted(hanging: bool = False) -> StackStatus:
        status = plain(hanging)
        assert status.served is not None
        return replace(status, served=replace(status.served, in_flight=InFlight(123, 0)))

    monkeypatch.setattr(test_snapshots, "_status", counted)
    app = test_snapshots._app(tmp_path)
    async with app.run_test(size=size) as pilot:
        test_snapshots._feed(app, hanging=True)
        await pilot.pause(0.2)
        latency, health = app.query_one(LatencyPane), app.query_one(HealthPane)
        shown = rendered(latency)
        assert "+ 123 in flight" in shown and "· 0 in flight" in shown, shown
        assert "HANGING: health probe: no answer within 1s; 123 waiting at nginx" in shown
        assert "rust: no answer within 1s; 123 waiting" in rendered(health)
        # (rendered() draws the Health table 200 wide: only its problem lines are text)
        lines = {latency: rendered(latency).splitlines(),
                 health: [ln for ln in rendered(health).splitlines() if ln.startswith("rust:")]}
        for pane, text in lines.items():
            width = pane.content_size.width
            too_wide = [ln for ln in text if len(ln.rstrip()) > width]
            assert not too_wide, (size, width, too_wide)
