"""The traffic split: integer percent to rust, the rest to typescript."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vrm_tui.core.errors import SplitError, shown


def parse_weight(text: str, name: str = "rust weight") -> int:
    """Parse one weight as an operator typed it; the error names `name` and the value."""
    raw = str(text).strip()
    # ASCII digits only: `\d` and `int()` also take `٥٠`, and `int()` takes `1_0`.
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", raw):  # int() fails past 4300 digits
        raise SplitError(f"{name}={shown(text)}: expected a whole number from 0 to 100")
    value = int(raw)
    if not 0 <= value <= 100:
        raise SplitError(f"{name}={shown(text)}: expected a whole number from 0 to 100")
    return value


@dataclass(frozen=True, order=True)
class Split:
    """Percent of traffic nginx sends to rust; typescript gets the rest."""

    rust: int

    def __post_init__(self) -> None:
        if isinstance(self.rust, bool) or not isinstance(self.rust, int):
            raise SplitError(f"rust weight={self.rust!r}: expected a whole number from 0 to 100")
        if not 0 <= self.rust <= 100:
            raise SplitError(f"rust weight={self.rust!r}: expected a whole number from 0 to 100")

    @property
    def typescript(self) -> int:
        return 100 - self.rust

    def moved(self, step: int) -> Split:
        """This split with rust moved by `step` points, clamped to 0..100."""
        return Split(max(0, min(100, self.rust + step)))

    def as_dict(self) -> dict[str, int]:
        return {"rust": self.rust, "typescript": self.typescript}

    def __str__(self) -> str:
        return f"rust {self.rust}% / typescript {self.typescript}%"


ROLLBACK = Split(0)
