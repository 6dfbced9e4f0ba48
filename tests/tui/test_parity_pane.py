"""The parity pane and its diff screen, on the real stack with nginx mirroring to the real
comparator and rust diverging on every label."""

from __future__ import annotations

import httpx

from tests.support import Stack, rendered
from tests.tui.test_app import SIZE, until
from vrm_tui.core import services
from vrm_tui.tui.app import VrmApp
from vrm_tui.tui.screens.parity import ParityScreen
from vrm_tui.tui.widgets.parity import ParityPane


async def test_pane_shows_mismatches_and_d_opens_them_side_by_side(stack: Stack) -> None:
    admin = stack.runtime.admin_url(services.RUST)
    httpx.post(f"{admin}/faults", json={"divergence_rate": 1.0, "divergence_path": "label"},
               timeout=5).raise_for_status()
    stack.console.parity_on(100)
    async with httpx.AsyncClient(timeout=10) as client:
        for n in range(10):
            answer = await client.post(f"{stack.proxy}/api/v1/vision/process",
                                       json={"model": "yolov8", "image_size": [64, 64], "n": n})
            assert answer.status_code == 200
    app = VrmApp(stack.console)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(ParityPane)
        await until(pilot, lambda: pane.display and "MISMATCH" in rendered(pane), timeout=10)
        text = rendered(pane)
        assert "mirroring 100%" in text and "$.result.detections[*].label" in text
        assert "routes: POST /api/v1/vision/process 100" in text
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ParityScreen))
        screen = app.screen
        assert isinstance(screen, ParityScreen) and screen.examples
        shown = rendered(screen.query_one("#parity-example"))
        assert "mismatch" in shown and ".label" in shown and "typescript again" in shown
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ParityScreen))
