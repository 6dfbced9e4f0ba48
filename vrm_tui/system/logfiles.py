"""Reading and following log files (local runtime logs, the nginx access log)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def last_lines(path: Path, count: int, chunk: int = 65536, end: int | None = None) -> list[str]:
    """The last `count` lines of a file (of its first `end` bytes, if given) without
    reading all of it."""
    if count <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell() if end is None else min(end, handle.tell())
            data = b""
            while end > 0 and data.count(b"\n") <= count:
                start = max(0, end - chunk)
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


def tail_once(paths: list[Path], tail: int) -> Iterator[str]:
    """The last `tail` lines of each file, then stop."""
    label = len(paths) > 1
    for path in paths:
        for line in last_lines(path, tail):
            yield f"{path.name}: {line}" if label else line
