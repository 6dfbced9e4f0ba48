"""Reading and following log files (local runtime logs, the nginx access log)."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path


def last_lines(path: Path, count: int, chunk: int = 65536, end: int | None = None,
               since: int = 0) -> list[str]:
    """The last `count` lines of a file (of its bytes from `since` to `end`, if given)
    without reading all of it."""
    if count <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell() if end is None else min(end, handle.tell())
            data = b""
            while end > since and data.count(b"\n") <= count:
                start = max(since, end - chunk)
                handle.seek(start)
                data = handle.read(end - start) + data
                end = start
    except FileNotFoundError:
        return []
    return [ln.decode(errors="replace") for ln in data.splitlines()[-count:]]


class LogCursor:
    """Reads what was appended to a file since the last call, across truncation and rotation.

    Only complete lines are returned; a partial last line waits for its newline.
    """

    def __init__(self, path: Path, from_end: bool = True, max_bytes: int = 8 << 20) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.skipped = 0
        try:
            st = path.stat()
            self._inode, self._offset = st.st_ino, (st.st_size if from_end else 0)
        except FileNotFoundError:
            self._inode, self._offset = 0, 0
        self._pending = b""

    @property
    def offset(self) -> int:
        """Where the next read starts (bytes already consumed)."""
        return self._offset

    def read(self) -> list[str]:
        """New complete lines; raises OSError (not FileNotFoundError) if unreadable."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        if st.st_ino != self._inode or st.st_size < self._offset:
            self._inode, self._offset, self._pending = st.st_ino, 0, b""
        if st.st_size == self._offset:
            return []
        if st.st_size - self._offset > self.max_bytes:
            # Too far behind to catch up: skip ahead rather than stall the caller.
            self.skipped += st.st_size - self.max_bytes - self._offset
            self._offset, self._pending = st.st_size - self.max_bytes, b""
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            data = self._pending + handle.read(st.st_size - self._offset)
            self._offset = handle.tell()
        *complete, self._pending = data.split(b"\n")
        return [raw.decode(errors="replace") for raw in complete]


def follow(
    paths: list[Path],
    tail: int,
    keep_going: Callable[[], bool] = lambda: True,
    interval: float = 0.25,
) -> Iterator[str]:
    """Yield the last `tail` lines of each file, then lines appended to any of them.

    With several files each line is prefixed with the file's name. The tail ends where
    each cursor starts, so a line written meanwhile is shown once, not twice.
    """
    label = len(paths) > 1
    cursors = [LogCursor(path) for path in paths]
    for cursor in cursors:
        for line in last_lines(cursor.path, tail, end=cursor.offset):
            yield f"{cursor.path.name}: {line}" if label else line
    while keep_going():
        quiet = True
        for cursor in cursors:
            for line in cursor.read():
                quiet = False
                yield f"{cursor.path.name}: {line}" if label else line
        if quiet:
            time.sleep(interval)


_NGINX_TIME = re.compile(r"^(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)")
_MSEC = re.compile(r'"msec":\s*([0-9.]+)')
_ISO_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)")


def line_time(line: str) -> float | None:
    """When a log line was written, where it says so: nginx's error-log prefix (local
    time), the access log's `msec`, or an ISO 8601 time near the start of the line."""
    if match := _MSEC.search(line):
        return float(match.group(1))
    if match := _NGINX_TIME.match(line):
        year, month, day, hour, minute, second = (int(g) for g in match.groups())
        return time.mktime((year, month, day, hour, minute, second, 0, 0, -1))
    if match := _ISO_TIME.search(line[:64]):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(match.group(1).replace("Z", "+00:00")).timestamp()
    return None


def tail_once(paths: list[Path], tail: int) -> Iterator[str]:
    """The last `tail` lines of all the files together, merged by time (a line without a
    time keeps its place after the line before it), each labelled with its file when there
    are several."""
    if len(paths) == 1:
        yield from last_lines(paths[0], tail)
        return
    merged: list[tuple[float, int, str]] = []
    for index, path in enumerate(paths):
        when = 0.0
        for line in last_lines(path, tail):
            when = line_time(line) or when
            merged.append((when, index, f"{path.name}: {line}"))
    merged.sort(key=lambda item: (item[0], item[1]))  # stable: each file's own order kept
    for _when, _index, line in merged[-tail:]:
        yield line
