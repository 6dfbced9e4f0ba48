"""How numbers read on screen and in reports, one function per meaning."""

from __future__ import annotations

__all__ = ["percent"]


def percent(rate: float | None, digits: int = 1) -> str:
    """`rate` (0..1) as a percentage with `digits` decimals; "-" when there is none.

    A share that is neither none nor all never reads as 0% or 100%: one error in 3,000 is
    "<0.1%", not a "0.0%" beside a red mark that says otherwise.
    """
    if rate is None:
        return "-"
    step = 10.0 ** -digits  # the smallest share shown, in percent
    value = 100 * rate
    if 0 < value < step / 2:
        return f"<{step:.{digits}f}%"
    if 100 - step / 2 < value < 100:
        return f">{100 - step:.{digits}f}%"
    return f"{value:.{digits}f}%"
