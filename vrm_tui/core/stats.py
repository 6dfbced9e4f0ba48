"""vrm's statistics, one function per meaning: the percentile every pane, gate and report
uses, a bootstrap interval for the speedup, and the one-sided Mann-Whitney U test.

One percentile definition matters: an operator must never see a p95 that the gate did not
judge. Plain Python (no SciPy): sample sizes here are hundreds to a few thousand.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def nearest_rank(count: int, q: float) -> int:
    """The 1-based rank of the q-quantile (0 < q <= 1) among `count` ordered values.

    Nearest-rank definition: the smallest value with at least q of the values at or below
    it, so p95 of 1..20 is 19 and p100 is the maximum. Histograms use the same rank."""
    return min(count, max(1, math.ceil(q * count - 1e-9)))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) of `values` by nearest rank; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[nearest_rank(len(ordered), q) - 1]


@dataclass(frozen=True)
class Speedup:
    """typescript median / rust median, with a bootstrap confidence interval."""

    ratio: float
    low: float
    high: float
    confidence: float


def median_ratio(slow: list[float], fast: list[float], confidence: float = 0.95,
                 resamples: int = 1000, seed: int = 1) -> Speedup | None:
    """How many times faster `fast` is than `slow` at the median, with an interval."""
    if len(slow) < 5 or len(fast) < 5:
        return None
    rng = random.Random(seed)
    slow_n, fast_n = min(len(slow), 2000), min(len(fast), 2000)
    slow, fast = rng.sample(slow, slow_n), rng.sample(fast, fast_n)
    ratios = []
    for _ in range(resamples):
        a = statistics.median(rng.choices(slow, k=slow_n))
        b = statistics.median(rng.choices(fast, k=fast_n))
        ratios.append(a / b if b > 0 else math.inf)
    ratios.sort()
    tail = (1 - confidence) / 2
    return Speedup(statistics.median(slow) / statistics.median(fast),
                   ratios[int(tail * resamples)], ratios[int((1 - tail) * resamples) - 1],
                   confidence)


@dataclass(frozen=True)
class MannWhitney:
    """One-sided test that `candidate` tends to be larger (slower) than `baseline`."""

    u: float
    z: float
    p_value: float  # P(as extreme | candidate not slower)
    effect: float  # probability that a candidate sample exceeds a baseline sample


def mann_whitney_greater(candidate: list[float], baseline: list[float]) -> MannWhitney | None:
    """Normal approximation with tie correction; None when a side is empty."""
    n1, n2 = len(candidate), len(baseline)
    if n1 == 0 or n2 == 0:
        return None
    merged = sorted([(v, 0) for v in candidate] + [(v, 1) for v in baseline])
    ranks = [0.0] * len(merged)
    tie_term = 0.0
    i = 0
    while i < len(merged):
        j = i
        while j + 1 < len(merged) and merged[j + 1][0] == merged[i][0]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[k] = rank
        t = j - i + 1
        tie_term += t ** 3 - t
        i = j + 1
    r1 = sum(rank for rank, (_, side) in zip(ranks, merged, strict=True) if side == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    mean = n1 * n2 / 2
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return MannWhitney(u1, 0.0, 0.5, u1 / (n1 * n2))
    z = (u1 - mean - 0.5) / math.sqrt(variance)  # continuity correction
    p_value = 0.5 * math.erfc(z / math.sqrt(2))
    return MannWhitney(u1, z, p_value, u1 / (n1 * n2))
