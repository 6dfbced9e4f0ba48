"""nginx access-log lines for people: one short line per request instead of raw JSON.

Shared by the TUI's log viewer and `vrm logs`; any other line passes through unchanged.
"""

from __future__ import annotations

import json
from datetime import datetime

PREFIX_END = ": {"  # follow() labels lines with their file's name when it reads several


def _ms(seconds: str) -> str:
    try:
        value = float(seconds) * 1000
    except ValueError:
        return seconds or "-"
    return f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"


def format_access(entry: dict[str, object], names: dict[str, str] | None = None) -> str:
    """`time method path status backend upstream_time`; a retried request lists every
    attempt (`rust 502 1.0ms, typescript 200 3.0ms`), since the failed one matters."""
    names = names or {}
    when = datetime.fromtimestamp(float(str(entry["msec"]))).strftime("%H:%M:%S.%f")[:-3]
    addrs = [a.strip() for a in str(entry.get("upstream_addr") or "").split(",") if a.strip()]
    statuses = [s.strip() for s in str(entry.get("upstream_status") or "").split(",")]
    times = [t.strip() for t in str(entry.get("upstream_response_time") or "").split(",")]
    backend = str(entry.get("backend") or "") or (names.get(addrs[-1], addrs[-1]) if addrs
                                                  else "-")
    upstream = _ms(times[-1]) if times and times[-1] else "-"
    line = (f"{when} {entry.get('method', '-')} {entry.get('uri', '-')} "
            f"{entry.get('status', '-')} {backend} {upstream}")
    if len(addrs) > 1:
        attempts = [f"{names.get(a, a)} {statuses[i] if i < len(statuses) else '-'} "
                    f"{_ms(times[i]) if i < len(times) else '-'}" for i, a in enumerate(addrs)]
        line += f"  (attempts: {', '.join(attempts)})"
    return line


def format_line(line: str, names: dict[str, str] | None = None) -> str:
    """An access-log JSON line formatted, with its file label kept; others unchanged."""
    label, start = "", line.find("{")
    if start < 0:
        return line
    if start > 0:
        if not line[:start + 1].endswith(PREFIX_END):
            return line
        label = line[:start]
    try:
        entry = json.loads(line[start:])
    except ValueError:
        return line
    if not isinstance(entry, dict) or "msec" not in entry:
        return line
    try:
        return label + format_access(entry, names)
    except (ValueError, TypeError, OverflowError, OSError):
        return line
