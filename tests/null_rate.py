"""The bound a null simulation's rejection rate is held to (tests/stats)."""

from __future__ import annotations

from scipy import stats as st

ALPHA = 0.05


def rate_bound(n_sims: int, rate: float = ALPHA, tail: float = 0.001) -> float:
    """The largest rejection rate a test of true level `rate` shows in n_sims simulations but for a `tail`
    chance: the binomial quantile, as a share."""
    return float(st.binom.ppf(1 - tail, n_sims, rate)) / n_sims
