"""Shared rendering helpers: state as a word and a symbol, never by colour alone."""

from __future__ import annotations

import time

from rich.text import Text

BARS = "▁▂▃▄▅▆▇█"

STATE_STYLE = {"up": ("●", "green"), "degraded": ("▲", "yellow"), "down": ("✗", "red"),
               "unknown": ("?", "dim"), "external": ("●", "green"),
               "absent": ("–", "dim")}


def state_text(state: str) -> Text:
    symbol, style = STATE_STYLE.get(state, ("?", ""))
    return Text(f"{symbol} {state}", style=style)


def sparkline(values: list[float], width: int | None = None) -> str:
    """Values as block characters scaled to their own maximum (zeros stay at the floor)."""
    if width is not None and len(values) > width:
        values = values[-width:]
    top = max(values, default=0.0)
    if top <= 0:
        return BARS[0] * len(values)
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1)))] for v in values)


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
