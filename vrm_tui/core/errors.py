"""The one exception hierarchy: every error vrm reports carries its exit code.

`cli.main` catches `VrmError` alone and exits with `error.exit_code`; anything else is a bug
and keeps its traceback.

    VrmError                 exit 1 unless a subclass says otherwise
    ├── BadInput             exit 2: a value the operator gave (flag, variable, file)
    └── Failure              exit 1: vrm could not do it; the previous config still serves
        └── StackError       a runtime (processes, docker compose) could not do it
"""

from __future__ import annotations

import errno

__all__ = ["BadInput", "Failure", "StackError", "VrmError", "environment_fault", "shown"]


class VrmError(Exception):
    """An error vrm explains in one line; `exit_code` is what the CLI exits with."""

    exit_code: int = 1


class BadInput(VrmError, ValueError):
    """A value the operator gave cannot be used; the message names it. Exit 2."""

    exit_code = 2


class Failure(VrmError, RuntimeError):
    """vrm could not do what was asked; the message says why and what still serves. Exit 1."""

    exit_code = 1


class StackError(Failure):
    """A runtime (local processes, docker compose) could not do what was asked; the message
    says what to do about it."""


def shown(value: object, limit: int = 80) -> str:
    """The value as the operator wrote it, cut short: a 5000-digit number or a path past the
    OS limit still makes a one-line error that names it."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str | bytes) else ""
    return text[:limit - 3] + "..." + size


# What the host did, in the words an operator searches for (DESIGN: exit 1, one line).
_FAULTS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def environment_fault(exc: OSError, where: object = None, *,
                      target: object = None) -> Failure | None:
    """An OSError that is the host's doing (a full disk, a read-only mount, permissions) as
    one Failure naming the path: `target` (the file being written, not the temporary file
    beside it), else the error's own, else `where` (a failed write() names none); None for
    any other error, which is a bug and keeps its traceback."""
    what = _FAULTS.get(exc.errno or 0)
    if what is None:
        return None
    path = next((p for p in (target, exc.filename, where) if p is not None), None)
    return Failure(f"{what} at {path}" if path is not None else what)
