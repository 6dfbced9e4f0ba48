"""Shared rendering helpers: state as a word and a symbol, never by colour alone."""

from __future__ import annotations

import time

from rich.text import Text

BARS = "▁▂▃▄▅▆▇█"

STATE_STYLE = {"up": ("●", "green"), "degraded": ("▲", "yellow"), "down": ("✗", "red"),
               "hanging": ("⧖", "red bold"), "unknown": ("?", "dim"),
               "external": ("●", "green"), "absent": ("–", "dim"),
               # the latency pane's word for what requests do now
               "ok": ("●", "green"), "slow": ("◔", "yellow"), "errors": ("▲", "yellow"),
               "failing": ("✗", "red bold"),
               "idle": ("–", "dim")}


def state_text(state: str) -> Text:
    symbol, style = STATE_STYLE.get(state, ("?", ""))
    return Text(f"{symbol} {state}", style=style)


GAP = " "


def sparkline(values: list[float | None], width: int | None = None) -> str:
    """Values as block characters from their minimum (▁) to their maximum (█).

    `None` is a slot with nothing to measure (no successful request): a gap, never `▁`,
    which would read as "fastest" during an outage."""
    if width is not None and len(values) > width:
        values = values[-width:]
    present = [v for v in values if v is not None]
    low, high = min(present, default=0.0), max(present, default=0.0)
    span = high - low
    top = len(BARS) - 1
    return "".join(GAP if v is None else BARS[0] if span <= 0 else
                   BARS[min(top, int((v - low) / span * top + 0.5))] for v in values)


def scale(values: list[float | None], width: int | None = None) -> str:
    """What ▁ and █ stand for in `sparkline(values, width)`: `3.1ms…26ms`."""
    if width is not None and len(values) > width:
        values = values[-width:]
    present = [v for v in values if v is not None]
    if not present:
        return "no data"
    return f"{ms(min(present))}…{ms(max(present))}"


def meter(fraction: float, width: int = 20) -> str:
    filled = max(0, min(width, round(fraction * width)))
    return "█" * filled + "░" * (width - filled)


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"


def ago(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return "never"
    seconds = max(0, int((now or time.time()) - timestamp))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s ago"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m ago"
