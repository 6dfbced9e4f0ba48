"""A sequential test of rust's failure rate, safe to evaluate on every new sample.

Why e-values: a fixed-sample test (Fisher, a binomial z) looked at after every request crosses
its threshold by chance sooner or later, so a healthy rust would be rolled back in a long
bake; waiting for a fixed sample size instead makes a broken rust at 10% of light traffic
fail users for minutes. An e-value E_n whose every version stays below a test martingale
under the null is "anytime valid": by Ville's inequality P(E_n >= 1/alpha at ANY n) <= alpha.
So the gate may look after every sample, stop at the first crossing, and still false-alarm
in at most `1 - confidence` of healthy bakes, while a strong signal (3 of 10 rust attempts
failing against a clean typescript) decides at once.

Construction (universal inference, Wasserman, Ramdas & Balakrishnan 2020): numerator = the
Bayesian mixture likelihood of the counts (a product of predictive probabilities, so a
martingale under every fixed rate pair); denominator = the likelihood maximised over the
whole null hypothesis, which is at least the likelihood of the true null rates. Both depend
only on the counts, so the runner may keep counts across pause/resume and need not keep the
order of samples. Priors change only how fast a true fault is found, never the false-alarm
bound: Jeffreys Beta(1/2, 1/2) for rust, Beta(1/2, 20) for typescript (a reference backend
that usually fails rarely; mean 2.4%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Decision = Literal["fail", "pass", "inconclusive"]

RUST_PRIOR = (0.5, 0.5)
TYPESCRIPT_PRIOR = (0.5, 20.0)
_MAX_LOG_E = 700.0  # exp() limit; such evidence is decisive anyway


@dataclass(frozen=True)
class Counts:
    """Attempts and failures of one backend (timeouts and 5xx are failures)."""

    attempts: int
    failures: int

    def __post_init__(self) -> None:
        if not 0 <= self.failures <= self.attempts:
            raise ValueError(f"counts: {self.failures} failures of {self.attempts} attempts")

    @property
    def rate(self) -> float | None:
        return self.failures / self.attempts if self.attempts else None

    def __str__(self) -> str:
        rate = self.rate
        return f"{self.failures}/{self.attempts}" + ("" if rate is None else f" ({rate:.1%})")


@dataclass(frozen=True)
class ErrorRateResult:
    """The decision and the numbers behind it (e-values: evidence against each null)."""

    decision: Decision
    rust: Counts
    typescript: Counts
    ceiling: float
    margin: float
    confidence: float
    min_attempts: int
    worse_than_typescript: float  # e-value against "rust fails no more than typescript"
    above_ceiling: float  # e-value against "rust fails at most `ceiling`"
    below_ceiling: float  # e-value against "rust fails at least `ceiling`"

    @property
    def threshold(self) -> float:
        return 1 / (1 - self.confidence)

    @property
    def explanation(self) -> str:
        """One line for the pane, the journal and `vrm migrate status`."""
        conf = f"{100 * self.confidence:g}%"
        seen = f"rust failed {self.rust}"
        if self.typescript.attempts:
            seen += f" vs typescript {self.typescript}"
        if self.decision == "fail" and self.worse_than_typescript >= self.threshold:
            extra = f" by more than {self.margin:.1%}" if self.margin else ""
            return (f"{seen}: rust fails more often than typescript{extra} at {conf} "
                    f"confidence (e={_fmt(self.worse_than_typescript)})")
        if self.decision == "fail":
            return (f"{seen}: above the {self.ceiling:.0%} ceiling at {conf} confidence "
                    f"(e={_fmt(self.above_ceiling)})")
        if self.decision == "pass":
            return f"{seen}: below the {self.ceiling:.0%} ceiling at {conf} confidence"
        if self.rust.attempts < self.min_attempts:
            return f"{seen}: need {self.min_attempts} rust attempts to pass"
        return (f"{seen}: not enough evidence yet (e={_fmt(self.below_ceiling)} to pass, "
                f"{_fmt(max(self.worse_than_typescript, self.above_ceiling))} to fail; "
                f"decides at {_fmt(self.threshold)})")


def _fmt(e: float) -> str:
    return f"{e:.3g}" if e < 1e6 else f"{e:.1e}"


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


_PRIOR_LOG_BETA = {prior: _log_beta(*prior) for prior in (RUST_PRIOR, TYPESCRIPT_PRIOR)}


def _log_marginal(c: Counts, prior: tuple[float, float]) -> float:
    """log of the Beta-Bernoulli mixture likelihood of the counts."""
    a, b = prior
    return _log_beta(a + c.failures, b + c.attempts - c.failures) - _PRIOR_LOG_BETA[prior]


def _log_lik(c: Counts, p: float) -> float:
    """log Bernoulli likelihood, with 0 * log 0 = 0 (a rate of 0 or 1 can be the maximum)."""
    out = 0.0
    if c.failures:
        out += c.failures * math.log(p) if p > 0 else -math.inf
    if c.attempts - c.failures:
        out += (c.attempts - c.failures) * math.log1p(-p) if p < 1 else -math.inf
    return out


def _e(log_e: float) -> float:
    """The e-value, floored at 1: below 1 there is no evidence, and how little does not matter."""
    return math.exp(min(max(log_e, 0.0), _MAX_LOG_E))


def worse_evalue(rust: Counts, typescript: Counts, margin: float = 0.0) -> float:
    """Evidence against H0: rust's failure rate <= typescript's + margin (anytime valid).

    Without typescript attempts there is no reference and the value stays 1."""
    if not rust.attempts or not typescript.attempts:
        return 1.0
    pr = rust.failures / rust.attempts
    pt = typescript.failures / typescript.attempts
    if pr <= pt + margin:  # the unrestricted maximum lies in the null: E <= 1
        return 1.0
    if margin == 0:
        pooled = (rust.failures + typescript.failures) / (rust.attempts + typescript.attempts)
        null = _log_lik(rust, pooled) + _log_lik(typescript, pooled)
    else:
        null = _max_on_boundary(rust, typescript, margin)
    alt = _log_marginal(rust, RUST_PRIOR) + _log_marginal(typescript, TYPESCRIPT_PRIOR)
    return _e(alt - null)


def _max_on_boundary(rust: Counts, typescript: Counts, margin: float) -> float:
    """max over p of loglik(rust at p + margin) + loglik(typescript at p), p in [0, 1 - margin].

    The function is concave in p, so bisection on the sign of its derivative finds the top."""
    lo, hi = 0.0, 1.0 - margin
    xr, fr = rust.failures, rust.attempts - rust.failures
    xt, ft = typescript.failures, typescript.attempts - typescript.failures
    for _ in range(60):
        p = (lo + hi) / 2
        slope = (xr / (p + margin) - fr / max(1e-300, 1 - p - margin)
                 + (xt / p if p > 0 else (math.inf if xt else 0.0))
                 - ft / (1 - p))
        if slope > 0:
            lo = p
        else:
            hi = p
    p = (lo + hi) / 2
    return max(_log_lik(rust, p + margin) + _log_lik(typescript, p),
               _log_lik(rust, margin) + _log_lik(typescript, 0.0),
               _log_lik(rust, 1.0) + _log_lik(typescript, 1.0 - margin))


def above_evalue(rust: Counts, ceiling: float) -> float:
    """Evidence against H0: rust's failure rate <= ceiling (anytime valid)."""
    if not rust.attempts or rust.failures <= ceiling * rust.attempts:
        return 1.0  # the observed rate is in the null: E <= 1
    null = _log_lik(rust, ceiling)
    return _e(_log_marginal(rust, RUST_PRIOR) - null)


def below_evalue(rust: Counts, ceiling: float) -> float:
    """Evidence against H0: rust's failure rate >= ceiling (anytime valid)."""
    if not rust.attempts or rust.failures >= ceiling * rust.attempts:
        return 1.0
    null = _log_lik(rust, ceiling)
    return _e(_log_marginal(rust, RUST_PRIOR) - null)


def error_rate_test(rust: Counts, typescript: Counts, *, ceiling: float,
                    confidence: float = 0.99, min_attempts: int = 1,
                    margin: float = 0.0) -> ErrorRateResult:
    """Decide on rust's failure rate from the counts so far; call it after every sample.

    fail: rust fails more often than typescript (+ margin), or more often than `ceiling`,
    at `confidence`. pass: at least `min_attempts`, rust fails less often than `ceiling` at
    `confidence`, and no fail. Otherwise inconclusive. A healthy rust false-alarms in at most
    `1 - confidence` of bakes per test, however often this is called."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r}: expected between 0 and 1")
    if not 0 < ceiling <= 1:
        raise ValueError(f"ceiling={ceiling!r}: expected above 0, at most 1")
    threshold = 1 / (1 - confidence)
    worse = worse_evalue(rust, typescript, margin)
    above = above_evalue(rust, ceiling)
    below = below_evalue(rust, ceiling)
    decision: Decision
    if worse >= threshold or above >= threshold:
        decision = "fail"
    elif rust.attempts >= min_attempts and below >= threshold:
        decision = "pass"
    else:
        decision = "inconclusive"
    return ErrorRateResult(decision, rust, typescript, ceiling, margin, confidence,
                           min_attempts, worse, above, below)
