"""A steady stream through the proxy while the split changes 20 times, then rolls back."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from tests.support import Sent, Stack, steady_stream
from vrm_tui.core.split import Split

RATE = 250  # requests per second


def _failures(sent: list[Sent]) -> list[Sent]:
    return [s for s in sent if s.error or s.status != 200]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/vision/metrics", None),
        ("POST", "/api/v1/vision/process", {"model": "resnet50", "image_size": [64, 64]}),
    ],
    ids=["GET", "POST"],
)
async def test_changes_under_load_lose_nothing(stack: Stack, method: str, path: str,
                                               body: dict[str, Any] | None) -> None:
    stop = asyncio.Event()
    weights = random.Random(7).choices(range(1, 100), k=20)
    applied: list[int] = []
    rolled: list[float] = []

    def change_and_roll_back() -> None:
        for weight in weights:
            applied.append(stack.controller.set_split(Split(weight)).after.rust)
            time.sleep(0.08)  # a change without a reload takes milliseconds: spread them out
        applied.append(stack.controller.rollback().after.rust)
        rolled.append(time.perf_counter())  # the clock `Sent.start` uses

    stream = asyncio.create_task(steady_stream(stack.proxy + path, RATE, stop, method, body))
    await asyncio.sleep(0.5)  # traffic flowing before the first change
    await asyncio.to_thread(change_and_roll_back)
    await asyncio.sleep(0.3)
    stop.set()
    sent = await stream
    assert applied == [*weights, 0]
    assert len(sent) >= RATE * 2, f"only {len(sent)} requests in the stream"
    failures = _failures(sent)
    assert not failures, f"{len(failures)} of {len(sent)} failed, first: {failures[:3]}"
    # Every request sent after the rollback returned went to typescript (`sent` is in the
    # order requests finished, so its last one may have been sent long before).
    tail = [s for s in sent if s.start > rolled[0]]
    assert tail and all(s.backend == "typescript" for s in tail)
