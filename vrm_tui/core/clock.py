"""One way to write a moment for people: local HH:MM:SS (journal, action line, panes, CLI)."""

from __future__ import annotations

from datetime import datetime

__all__ = ["hhmmss"]


def hhmmss(at: float | str | None) -> str:
    """`at` (epoch seconds, or a journal record's ISO time) as local HH:MM:SS; "?" for none."""
    if at is None or at == "":
        return "?"
    moment = datetime.fromisoformat(at).astimezone() if isinstance(at, str) \
        else datetime.fromtimestamp(at)
    return moment.strftime("%H:%M:%S")
