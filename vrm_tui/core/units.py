"""How numbers read on screen and in reports, one function per meaning."""

from __future__ import annotations

import math

__all__ = ["percent"]


def percent(rate: float | None, digits: int = 1) -> str:
    """`rate` (0..1) as a percentage with `digits` decimals; "-" when there is none.

    A share that is neither none nor all never reads as 0% or 100%: one error in 3,000 is
    "<0.1%", not a "0.0%" beside a red mark that says otherwise.
    """
    if rate is None or not math.isfinite(rate):
        return "-"
    value, step = 100 * rate, 10.0 ** -digits
    text = f"{value:.{digits}f}"
    if value > 0 and float(text) == 0:
        return f"<{step:.{digits}f}%"
    if value < 100 and float(text) >= 100:
        return f">{100 - step:.{digits}f}%"
    return text + "%"
