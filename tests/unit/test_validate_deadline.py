"""validate's per-check deadline: a check that never answers, or breaks, is still a row."""

from __future__ import annotations

import asyncio

from vrm_tui.validate import Check, bounded


async def test_a_check_that_never_answers_is_a_fail_row_at_its_deadline() -> None:
    async def hung() -> Check:
        await asyncio.Event().wait()  # nothing ever sets it
        raise AssertionError("unreachable")

    rows = await bounded("load balancing", "observed split", hung, 0.05, "the proxy")
    assert [(r.name, r.result) for r in rows] == [("observed split", "FAIL")]
    assert rows[0].detail.startswith("no answer within 0.05s from the proxy")


async def test_a_check_that_raises_is_a_fail_row_naming_the_error() -> None:
    async def broken() -> Check:
        raise ValueError("bad JSON from Prometheus")

    rows = await bounded("monitoring", "targets", broken, 5, "Prometheus")
    assert rows[0].result == "FAIL" and "ValueError: bad JSON from Prometheus" in rows[0].detail


async def test_a_check_within_its_deadline_keeps_its_rows() -> None:
    async def fine() -> list[Check]:
        return [Check("security", "a", "PASS", ""), Check("security", "b", "WARN", "")]

    assert [r.name for r in await bounded("security", "x", fine, 5, "-")] == ["a", "b"]
