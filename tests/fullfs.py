"""A small real tmpfs to fill up: the full-disk tests' file system (skipped where mounting is
not allowed)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str = "16m", mode: str | None = "0700") -> Iterator[Path]:
    """Mount a tmpfs of `size` at `folder` for the block; skip the test loudly where mounting
    is not allowed (not root, or no mount namespace rights). `mode` None keeps tmpfs' own
    1777, for a folder that holds a deployment whose unprivileged workers must enter it."""
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: mounting a tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",mode={mode}" if mode else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def fill(folder: Path) -> Path:
    """Fill the file system under `folder` to the last byte; returns the filler (delete it
    to free the space)."""
    filler = folder / "filler"
    chunk = b"\0" * (1 << 16)
    with open(filler, "wb", buffering=0) as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0")
    probe = folder / "probe"
    try:
        probe.write_bytes(b"x" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    else:
        os.unlink(probe)
        raise AssertionError(f"{folder} is not full")
    return filler
