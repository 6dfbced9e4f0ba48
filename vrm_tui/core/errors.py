"""The one exception hierarchy: every error vrm reports carries its exit code.

`cli.main` catches `VrmError` alone and exits with `error.exit_code`; anything else is a bug
and keeps its traceback.

    VrmError                 exit 1 unless a subclass says otherwise
    ├── BadInput             exit 2: a value the operator gave (flag, variable, file)
    └── Failure              exit 1: vrm could not do it; the previous config still serves
        └── StackError       a runtime (processes, docker compose) could not do it
"""

from __future__ import annotations

__all__ = ["BadInput", "Failure", "StackError", "VrmError"]


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
