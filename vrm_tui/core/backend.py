"""The two backends, named once: every place that says "rust" or "typescript" uses this."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Backend"]


class Backend(StrEnum):
    """A backend of the migration. A StrEnum, so it is its own JSON and log value."""

    RUST = "rust"
    TYPESCRIPT = "typescript"

    @property
    def other(self) -> Backend:
        return Backend.TYPESCRIPT if self is Backend.RUST else Backend.RUST
