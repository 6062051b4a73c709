"""Power, minimum detectable difference and questions needed, for paired differences.

Units: scores are per-question accuracies in 0..1; every difference, SD and
MDE returned here is in POINTS (percent units, x 100), as reports print them.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.power import TTestPower

from icl_kit.core.config.params import ALPHA, POWER
from icl_kit.core.errors import KitError
from icl_kit.core.names import POINTS

MIN_N = 2  # a paired t needs at least two differences


def sd_paired(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """SD of paired differences in points: `sd = std(b - a, ddof=1) * 100`."""
    d = np.asarray(scores_b, float) - np.asarray(scores_a, float)
    if d.size < MIN_N:
        raise KitError(f"Need at least {MIN_N} paired scores for an SD, got {d.size}; evaluate more questions.")
    return float(np.std(d, ddof=1) * POINTS)


ES_BRACKET = {"low": 1e-8, "start_upp": 1.0, "xtol": 1e-12}  # the positive root, to float precision
ES_CHECK_TOL = 1e-6  # |power(es) - power| a bracketed root must meet to be used


@functools.lru_cache(maxsize=65536)
def effect_at(n: int, alpha: float, power: float) -> float:
    """Standardised effect |es| a two-sided paired t-test detects with `power` at n and alpha (TTestPower).

    The two-sided power is symmetric in es, so the root is searched on es > 0 first. Left unbounded,
    solve_power picks its search direction from the rounding noise between power(-1) and power(1); at some
    (n, alpha) it then expands to es = -1e4, where scipy's noncentral t takes seconds per call (n = 79,
    alpha = 0.005: 16 s). A bracketed root that the power function does not confirm (scipy's noncentral t
    returns NaN for a few df below 5) falls back to the unbounded search.
    """
    tp = TTestPower()
    tp.start_bqexp["effect_size"] = dict(ES_BRACKET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a failed bracketed search is retried below, with its own warnings
        es = abs(float(np.squeeze(tp.solve_power(effect_size=None, nobs=int(n), alpha=alpha, power=power,
                                                 alternative="two-sided"))))
        got = float(np.squeeze(tp.power(es, int(n), alpha, alternative="two-sided"))) if math.isfinite(es) else math.nan
    if abs(got - power) <= ES_CHECK_TOL:
        return es
    es = TTestPower().solve_power(effect_size=None, nobs=int(n), alpha=alpha, power=power, alternative="two-sided")
    # solve_power may land on the negative root of the symmetric two-sided power function
    return abs(float(np.squeeze(es)))


def mde_paired(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable difference (points) of a two-sided paired t-test.

    Solves TTestPower for the standardised effect `es` with power(es, n, alpha) = power,
    then `mde = es * sd` (sd of the paired differences, points).
    """
    if n < MIN_N:
        return math.nan
    return effect_at(int(n), alpha, power) * sd


def n_needed_paired(sd: float, delta: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Questions needed to detect a true difference `delta` (points) with a paired t-test.

    The smallest integer n >= MIN_N with power(delta / sd, n, alpha) >= power (TTestPower), i.e.
    `ceil(solve n)`: from the normal approximation n0 = ((z_{1-alpha/2} + z_power) / es)^2 it steps
    up while the t power falls short (the t correction is a few questions), then down while n - 1
    still suffices. nan when sd == 0 or delta <= 0 (no noise: any n detects it; no effect: none does).
    """
    if not sd > 0 or not delta > 0:
        return math.nan
    es = delta / sd

    def enough(n: int) -> bool:
        return float(TTestPower().power(es, n, alpha, alternative="two-sided")) >= power

    n0 = ((st.norm.isf(alpha / 2) + st.norm.ppf(power)) / es) ** 2
    if not math.isfinite(n0):
        return math.nan
    n = max(MIN_N, math.ceil(n0))
    while not enough(n):
        n += 1
    while n > MIN_N and enough(n - 1):
        n -= 1
    return float(n)


def power_curve(sd: float, ns: Sequence[int], alpha: float = ALPHA, power: float = POWER) -> pd.DataFrame:
    """MDE (points) against the number of questions, for a figure: columns n, mde."""
    ns = [int(n) for n in ns]
    return pd.DataFrame({"n": ns, "mde": [mde_paired(sd, n, alpha, power) for n in ns]})
