"""A latency histogram with bounded relative error (log-spaced buckets), mergeable.

Bucket i holds values in [G^i, G^(i+1)) microseconds with G = 1.02; a value is reported as
its bucket's geometric midpoint, so any percentile is within 1% of a true sample value.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from vrm_tui.core.stats import nearest_rank

GROWTH = 1.02
_LOG = math.log(GROWTH)


@dataclass
class Histogram:
    counts: Counter[int] = field(default_factory=Counter)
    total: int = 0
    max_us: float = 0.0
    min_us: float = math.inf
    sum_us: float = 0.0

    def record(self, seconds: float) -> None:
        us = max(seconds * 1e6, 1.0)
        self.counts[int(math.log(us) / _LOG)] += 1
        self.total += 1
        self.sum_us += us
        self.max_us = max(self.max_us, us)
        self.min_us = min(self.min_us, us)

    def merge(self, other: Histogram) -> None:
        self.counts.update(other.counts)
        self.total += other.total
        self.sum_us += other.sum_us
        self.max_us = max(self.max_us, other.max_us)
        self.min_us = min(self.min_us, other.min_us)

    def percentile_ms(self, q: float) -> float | None:
        """The q-th percentile (0-100) in milliseconds, None when empty."""
        if not self.total:
            return None
        if q >= 100:
            return self.max_us / 1000
        rank = nearest_rank(self.total, q / 100)
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                midpoint: float = GROWTH ** (index + 0.5)
                return min(max(midpoint, self.min_us), self.max_us) / 1000
        return self.max_us / 1000

    @property
    def mean_ms(self) -> float | None:
        return self.sum_us / self.total / 1000 if self.total else None

    def buckets_ms(self, bins: int = 20) -> list[tuple[float, int]]:
        """Counts regrouped into `bins` log-spaced bins between min and max, for plots."""
        if not self.total:
            return []
        low, high = math.log(self.min_us), math.log(self.max_us * 1.0001)
        width = (high - low) / bins or 1.0
        grouped = [0] * bins
        for index, count in self.counts.items():
            value = math.log(GROWTH ** (index + 0.5))
            grouped[min(bins - 1, max(0, int((value - low) / width)))] += count
        return [(math.exp(low + (i + 0.5) * width) / 1000, n) for i, n in enumerate(grouped)]

    def to_dict(self) -> dict[str, float | int | None]:
        return {"count": self.total, "mean_ms": _r(self.mean_ms),
                **{f"p{q}_ms": _r(self.percentile_ms(q)) for q in (50, 90, 95, 99)},
                "max_ms": _r(self.max_us / 1000 if self.total else None)}


def _r(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None
