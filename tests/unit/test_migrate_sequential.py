from __future__ import annotations

import random

import pytest

from vrm_tui.migrate.sequential import (
    Counts,
    ErrorRateResult,
    above_evalue,
    below_evalue,
    error_rate_test,
    worse_evalue,
)

CEILING = 0.15


def _test(rust: Counts, ts: Counts, min_attempts: int = 50) -> ErrorRateResult:
    return error_rate_test(rust, ts, ceiling=CEILING, confidence=0.99,
                           min_attempts=min_attempts)


def test_three_failures_in_ten_against_a_clean_typescript_is_a_fail() -> None:
    result = _test(Counts(10, 3), Counts(100, 0))
    assert result.decision == "fail"
    assert result.worse_than_typescript >= result.threshold == pytest.approx(100)
    assert "rust fails more often than typescript" in result.explanation
    assert "3/10 (30.0%)" in result.explanation and "0/100" in result.explanation


def test_too_little_evidence_is_inconclusive_not_pass() -> None:
    assert _test(Counts(0, 0), Counts(0, 0)).decision == "inconclusive"
    few = _test(Counts(10, 0), Counts(100, 0))
    assert few.decision == "inconclusive" and "need 50 rust attempts" in few.explanation
    one = _test(Counts(3, 1), Counts(100, 0))  # 33% of 3: suspicious, not yet proof
    assert one.decision == "inconclusive"


def test_pass_needs_enough_attempts_below_the_ceiling() -> None:
    assert _test(Counts(60, 0), Counts(540, 1)).decision == "pass"
    assert _test(Counts(200, 2), Counts(1800, 18)).decision == "pass"
    # 10% against a 15% ceiling with 60 attempts: not yet shown to be below it
    assert _test(Counts(60, 6), Counts(540, 50)).decision == "inconclusive"


def test_the_absolute_ceiling_fails_rust_even_when_typescript_fails_as_often() -> None:
    result = _test(Counts(100, 40), Counts(900, 360))
    assert result.decision == "fail" and result.above_ceiling >= 100
    assert "above the 15% ceiling" in result.explanation


def test_without_typescript_traffic_only_the_ceiling_judges() -> None:
    assert worse_evalue(Counts(50, 5), Counts(0, 0)) == 1.0
    assert _test(Counts(100, 1), Counts(0, 0)).decision == "pass"


def test_a_margin_tolerates_a_slightly_worse_rust() -> None:
    rust, ts = Counts(2000, 60), Counts(20000, 200)  # 3% vs 1%
    assert worse_evalue(rust, ts) >= 100
    assert 1 < worse_evalue(rust, ts, margin=0.005) < 100
    assert worse_evalue(rust, ts, margin=0.01) == 1.0
    # the boundary maximisation agrees with the pooled closed form as the margin vanishes
    assert worse_evalue(Counts(10, 3), Counts(100, 1), 1e-9) == pytest.approx(
        worse_evalue(Counts(10, 3), Counts(100, 1)), rel=1e-4)


def test_evalues_are_at_least_one_and_grow_with_evidence() -> None:
    assert above_evalue(Counts(100, 10), CEILING) == 1.0
    assert below_evalue(Counts(100, 20), CEILING) == 1.0
    assert above_evalue(Counts(200, 60), CEILING) > above_evalue(Counts(100, 30), CEILING) > 1
    assert worse_evalue(Counts(10**6, 10**5), Counts(10**6, 0)) < float("inf")


def test_counts_refuse_more_failures_than_attempts() -> None:
    with pytest.raises(ValueError, match="3 failures of 2 attempts"):
        Counts(2, 3)


def _first_fail(rng: random.Random, rust_rate: float, ts_rate: float, share: float,
                samples: int) -> int | None:
    """Feed samples one by one, evaluating after each; the rust attempt count at the first
    fail, or None. Each step computes the two e-values the fail decision is made of (the
    whole decision, with its explanation, is checked where they cross: same verdict)."""
    nr = xr = nt = xt = 0
    for _ in range(samples):
        if rng.random() < share:
            nr += 1
            xr += rng.random() < rust_rate
        else:
            nt += 1
            xt += rng.random() < ts_rate
        rust, ts = Counts(nr, xr), Counts(nt, xt)
        if max(worse_evalue(rust, ts), above_evalue(rust, CEILING)) >= 100:
            assert _test(rust, ts).decision == "fail"
            return nr
    assert _test(Counts(nr, xr), Counts(nt, xt)).decision != "fail"
    return None


def test_a_broken_rust_at_light_traffic_fails_within_about_30_attempts() -> None:
    # rust 10% of ~7 req/s (0.7 rust attempts/s), failing 30%; typescript clean
    rng = random.Random(10)
    found = [_first_fail(rng, 0.30, 0.0, share=0.10, samples=2000) for _ in range(200)]
    quick = sum(1 for n in found if n is not None and n <= 30)
    assert quick >= 0.95 * 200, sorted(n or 10**9 for n in found)[180:]


@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_a_healthy_rust_almost_never_fails_even_checked_after_every_sample(rate: float) -> None:
    rng = random.Random(int(rate * 1000))
    alarms = sum(_first_fail(rng, rate, rate, share=0.5, samples=3000) is not None
                 for _ in range(200))
    assert alarms <= 2  # <= 1% of 200 bakes; Ville's inequality bounds it at 1% per test
