"""Writing state files so a reader, a crash or a full disk never sees half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["fsync_dir", "write_atomic"]


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new link in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, *, sync: bool = True, mode: int | None = None,
                 durable_dir: bool = False) -> None:
    """Write `text` beside `path`, then rename it over `path`: readers see the old file or
    the new one. `sync` fsyncs the data first, `durable_dir` the rename too. On any failure
    (a full disk) the temporary file is removed and the old file stands."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable_dir:
        fsync_dir(path.parent)


def point_link(link: Path, target: str) -> None:
    """Point the symlink `link` at `target` with one atomic rename (readers see the old
    target or the new one), durably."""
    tmp = link.with_name(f".{link.name}-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(link.parent)


def move_over(source: Path, destination: Path) -> None:
    """Move a file or folder aside, replacing what `destination` held (a rotated log's older
    `.1`, a refused generation kept to diagnose): one rename, nothing copied."""
    os.replace(source, destination)

