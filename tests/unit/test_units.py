"""How numbers read on screen: a share is never rounded to a state it is not in."""

from __future__ import annotations

import pytest

from vrm_tui.core.units import percent


@pytest.mark.parametrize(("rate", "digits", "shown"), [
    (0.0, 1, "0.0%"), (1.0, 1, "100.0%"), (0.25, 1, "25.0%"), (0.0005, 1, "0.1%"),
    # one error in 3,000 is not "0.0%", nor 2,999 failures in 3,000 "100.0%"
    (1 / 3000, 1, "<0.1%"), (2999 / 3000, 1, ">99.9%"),
    (1 / 30000, 2, "<0.01%"), (29999 / 30000, 2, ">99.99%"), (0.05, 2, "5.00%"),
    (0.004, 0, "<1%"), (0.5, 0, "50%"), (None, 1, "-"),
])
def test_a_share_never_reads_as_none_or_all_when_it_is_neither(
        rate: float | None, digits: int, shown: str) -> None:
    assert percent(rate, digits) == shown


@pytest.mark.parametrize(("rate", "digits", "shown"), [
    (1999 / 2000, 1, ">99.9%"), (19999 / 20000, 2, ">99.99%"), (0.005, 0, "<1%"),
    (1 / 2000, 1, "0.1%"), (float("nan"), 1, "-"),
])
def test_halfway_shares_round_away_from_none_and_all(
        rate: float, digits: int, shown: str) -> None:
    assert percent(rate, digits) == shown
