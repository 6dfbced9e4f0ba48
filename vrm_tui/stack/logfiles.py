"""Reading and following log files (local runtime logs, the nginx access log)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def last_lines(path: Path, count: int, chunk: int = 65536) -> list[str]:
    """The last `count` lines of a file without reading all of it."""
    if count <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            data = b""
            while end > 0 and data.count(b"\n") <= count:
                start = max(0, end - chunk)
                handle.seek(start)
                data = handle.read(end - start) + data
                end = start
    except FileNotFoundError:
        return []
    return [ln.decode(errors="replace") for ln in data.splitlines()[-count:]]


def follow(
    paths: list[Path],
    tail: int,
    keep_going: Callable[[], bool] = lambda: True,
    interval: float = 0.25,
) -> Iterator[str]:
    """Yield the last `tail` lines of each file, then lines appended to any of them.

    With several files each line is prefixed with the file's name. A truncated or replaced
    file (logrotate) is read again from its start.
    """
    label = len(paths) > 1
    offsets: dict[Path, tuple[int, int]] = {}
    for path in paths:
        try:
            st = path.stat()
            offsets[path] = (st.st_ino, st.st_size)
        except FileNotFoundError:
            offsets[path] = (0, 0)
    yield from tail_once(paths, tail)
    pending: dict[Path, bytes] = {p: b"" for p in paths}
    while keep_going():
        quiet = True
        for path in paths:
            inode, offset = offsets[path]
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if st.st_ino != inode or st.st_size < offset:
                inode, offset = st.st_ino, 0
            if st.st_size == offset:
                continue
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = pending[path] + handle.read()
                offset = handle.tell()
            offsets[path] = (inode, offset)
            *complete, pending[path] = data.split(b"\n")
            for raw in complete:
                quiet = False
                line = raw.decode(errors="replace")
                yield f"{path.name}: {line}" if label else line
        if quiet:
            time.sleep(interval)


def tail_once(paths: list[Path], tail: int) -> Iterator[str]:
    """The last `tail` lines of each file, then stop."""
    label = len(paths) > 1
    for path in paths:
        for line in last_lines(path, tail):
            yield f"{path.name}: {line}" if label else line
