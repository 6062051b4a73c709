"""Intervals of a paired difference mean(b - a), in points, by one of five methods.

- `t_changed` (the default): mean +- t_{(1+level)/2, k-1} * sd / sqrt(n), the Student t interval with its
  degrees of freedom taken from the k questions that changed (d != 0) instead of all n (k - 1 capped at n - 1,
  floored at 1). Why: s^2 = (sum d_i^2 - n mean^2) / (n - 1) sums over the changed questions only, the others
  adding nothing but their count, so with few changes it rests on k values and fluctuates as a k-value
  variance does; the t on n - 1 df treats it as nearly known, and its interval is too narrow exactly when a
  sample happens to hold fewer changes than usual (VQA-like pairs, n = 100, ~9 changed, true +3 points: the t
  covered 90.5%, missing from below about 9% of the time, because fewer changes give both a smaller mean and
  a smaller s). Matching the df to the values s^2 rests on is Satterthwaite's idea: a chi-square
  approximation of s^2 with the df of its own variability, which for zero-inflated differences is about
  2 k / kurtosis(changes), i.e. about k; k - 1 is the Student df of k changes taken on their own, and the more
  conservative of the two. With many changes (k >= 30) it is the t interval (1-3% wider at n = 100, 0.2-1.4% at
  n = 1,000). Measured on the simulated VQA pairs of tests/stats/test_interval.py: coverage 94.6-98.8% with ~9
  and ~34 of 100 changed and ~84 and ~334 of 1,000, true differences 0, 1 and 3 points; width 1.22-1.27x the t
  at n = 100 with ~9 changed, <= 1.03x otherwise (numbers in docs/statistics.md). Its price: with few
  changes it can cover 0 where the exact sign-flip p is below alpha (22% of the pairs with ~9 of 100 changed
  and a true +3 points); comparisons flag such rows (`icl_kit.stats.verdict.p_ci_disagree`).
- `score`: the Wilson idea for a bounded mean: every mu with |mean - mu| <= t_q * sd_mu / sqrt(n),
  where sd_mu is the SD of the empirical distribution tilted to mean mu by moving mass to the
  largest observed change on that side. When few questions changed, a t interval takes their
  count as known and under-covers (one change: [mean - 2 mean, mean + 2 mean] misses a true
  rate of three); the tilt lets the spread grow with the hypothesised mean, as Wilson's does. The default
  until t_changed: it covers, but is 1.3-1.5x the t width at n = 100 and 1.13-1.26x at n = 1,000.
- `t`: mean +- t_{(1+level)/2, n-1} * sd / sqrt(n) (Student t on the differences)
- `percentile`, `bca`: `scipy.stats.bootstrap(paired=True)`, resampling questions
The inverted exact sign-flip test (`exact`) was removed: shifted sign flips assume the differences are
symmetric about their mean, which VQA differences with few changed questions are not, and it covered
74% (about 3 of 100 questions changed) to 94% (many); `stats.interval: exact` is refused when params load.

No question changed (every difference 0): no method can see any spread, so the interval
is the exact bound for a proportion of changed questions seen 0 times in n (the rule of
three, exactly 1 - (tail)^(1/n)), times the largest possible change (1.0 = 100 points).
Every difference equal to one c != 0: no method sees any spread, yet n equal changes do not make the
mean certain (n = 2). The interval is the score interval with the largest possible changes, +-1.0, as the
extremes it tilts to (the bound the no-change rule uses too): the mean mu of a two-point distribution on
{c, +-1} is kept while (c - mu)^2 <= q^2 (c - mu)(mu -+ 1) / n, i.e. the ends are
(n c - q^2) / (n + q^2) and (n c + q^2) / (n + q^2), q = t_{(1+level)/2, n-1} (Wilson's interval when c = +-1;
an end at c = +-1 stays there). Said in the note.
The default method (`stats.interval`) is the one the coverage test in tests/stats/test_interval.py finds to
cover >= 94% in every scenario while staying within 1.3x (n = 100) and 1.15x (n = 1,000) the t width.
"""

from __future__ import annotations

import math
import typing
import warnings
from typing import Literal

import numpy as np
from scipy import stats as st

from icl_kit.core.config.params import EXACT_INTERVAL_RETIRED
from icl_kit.core.errors import KitError
from icl_kit.core.names import POINTS

IntervalMethod = Literal["t_changed", "score", "t", "bca", "percentile"]
PTS_DECIMALS = 9  # points are rounded so 1/3-steps print as 0, not 2.2e-16
RESAMPLE_BATCH = 2000  # resamples per vectorised call: ~16 MB per array at n=1000, same numbers
DEGENERATE_TOL = 1e-12  # differences (or their range) below this are float noise of 0
SCORE_BISECTIONS = 50  # halvings of a range <= 2: endpoints to 2e-15
LARGEST_CHANGE = 1.0  # a per-question difference of scores in 0..1 is at most this
CONSTANT_NOTE = ("all paired differences are identical: score interval tilted to the largest possible changes "
                 "(+-100 points)")


def check_method(method: str) -> None:
    """Refuse an interval method that is not offered (`exact` with the reason it was removed)."""
    if method == "exact":
        raise KitError(EXACT_INTERVAL_RETIRED)
    if method not in typing.get_args(IntervalMethod):
        raise KitError(f"interval={method!r} is not supported; choose one of {list(typing.get_args(IntervalMethod))}.")


def pts(x: float) -> float:
    """0..1 accuracy (or difference) -> points, without float noise of the 1/3 steps."""
    return round(float(x) * POINTS, PTS_DECIMALS)


def no_change_bound(n: int, tail: float) -> float:
    """Largest |mean difference| (points) compatible, at one-sided level `tail`, with 0 changes in n.

    P(no change | a share pi changed) = (1 - pi)^n <= tail  <=>  pi >= 1 - tail^(1/n); each change is
    at most 1.0 (100 points), so |mean| <= 100 (1 - tail^(1/n)). n = 100, tail 0.025: 3.6 points.
    """
    return POINTS * (1.0 - tail ** (1.0 / n))


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(y, axis=axis) - np.mean(x, axis=axis)


def t_interval(d: np.ndarray, level: float) -> tuple[float, float]:
    half = st.t.ppf(0.5 + level / 2, d.size - 1) * np.std(d, ddof=1) / math.sqrt(d.size)
    return pts(d.mean() - half), pts(d.mean() + half)


def changed_count(d: np.ndarray) -> np.ndarray:
    """Questions (units) whose difference is not 0, along the last axis."""
    return np.count_nonzero(np.abs(d) > DEGENERATE_TOL, axis=-1)


def t_changed_ends(
    d: np.ndarray, level: float, changed: np.ndarray | int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`t_changed` ends (0..1 units) of mean(d) along the last axis of d (..., n), vectorised: mean +- t_{(1+level)/2,
    df} sd / sqrt(n), df = clip(k - 1, 1, n - 1), k = `changed` (by default the non-zero entries of d; with clusters
    the clusters holding a changed question). Module docstring: why k - 1."""
    d = np.asarray(d, float)
    n = d.shape[-1]
    k = changed_count(d) if changed is None else np.asarray(changed)
    df = np.clip(k - 1, 1, n - 1)
    half = st.t.ppf(0.5 + level / 2, df) * np.std(d, axis=-1, ddof=1) / math.sqrt(n)
    mean = d.mean(axis=-1)
    return mean - half, mean + half


def t_changed_interval(d: np.ndarray, level: float, changed: int | None = None) -> tuple[float, float]:
    low, high = t_changed_ends(d, level, changed)
    return pts(low), pts(high)


def _tilted_sd(mean: float, m2: float, mu: float, ext: float) -> float:
    """SD of (1 - w) F_hat + w delta_ext, w chosen so its mean is mu (mu between mean and ext)."""
    w = (mu - mean) / (ext - mean)
    return math.sqrt(max((1 - w) * m2 + w * ext * ext - mu * mu, 0.0))


def score_interval(d: np.ndarray, level: float, extremes: tuple[float, float] | None = None) -> tuple[float, float]:
    """`score` interval of mean(d) in points (module docstring); each end by bisection. `extremes` (low, high):
    the values each end tilts to, by default the largest observed change on that side."""
    n, mean, m2 = d.size, float(d.mean()), float(np.mean(d * d))
    q = st.t.ppf(0.5 + level / 2, n - 1)
    ends = []
    for i, sign in enumerate((-1.0, 1.0)):
        side = np.abs(d[d * sign > 0])
        ext = sign * float(side.max() if side.size else np.abs(d).max())  # the largest change on this side
        ext = ext if extremes is None else extremes[i]
        if ext == mean:  # the mean already sits at the extreme: nothing lies beyond it
            ends.append(mean)
            continue
        inside, outside = mean, ext
        for _ in range(SCORE_BISECTIONS):
            mid = (inside + outside) / 2
            rejected = abs(mid - mean) > q * _tilted_sd(mean, m2, mid, ext) / math.sqrt(n)
            inside, outside = (inside, mid) if rejected else (mid, outside)
        ends.append(outside)
    return pts(ends[0]), pts(ends[1])


def bootstrap_intervals(
    a: np.ndarray, b: np.ndarray, method: str, levels: tuple[float, ...], n_boot: int, seed: int
) -> tuple[list[tuple[float, float]], str]:
    """Bootstrap intervals at several levels from ONE set of resamples (scipy `bootstrap_result`)."""
    out, note, res = [], "", None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.DegenerateDataWarning)
        for level in levels:
            res = st.bootstrap((a, b), _mean_diff, paired=True, method=method, confidence_level=level,
                               n_resamples=n_boot if res is None else 0, bootstrap_result=res,
                               random_state=np.random.default_rng(seed), vectorized=True, batch=RESAMPLE_BATCH)
            low, high = res.confidence_interval
            if not (np.isfinite(low) and np.isfinite(high)):  # BCa undefined (e.g. all resamples equal)
                low, high = np.percentile(res.bootstrap_distribution, [50 * (1 - level), 50 * (1 + level)])
                note = f"{method} undefined here: percentile interval"
            out.append((pts(low), pts(high)))
    return out, note


def diff_intervals(
    a: np.ndarray, b: np.ndarray, method: IntervalMethod, levels: tuple[float, ...], n_boot: int, seed: int,
    changed: int | None = None,
) -> tuple[list[tuple[float, float]], str]:
    """One (low, high) in points per level, and a note when a method could not be used as asked. `changed`: the
    units that changed, for `t_changed` (default: the non-zero b - a; clusters pass the clusters that changed)."""
    d = b - a
    if np.all(np.abs(d) <= DEGENERATE_TOL):
        return [(-no_change_bound(d.size, (1 - lv) / 2), no_change_bound(d.size, (1 - lv) / 2)) for lv in levels], (
            "no question changed: exact bound (rule of three) on the share of changed questions x 100 points")
    if np.ptp(d) <= DEGENERATE_TOL:
        extremes = (-LARGEST_CHANGE, LARGEST_CHANGE)
        return [score_interval(np.full(d.size, d.mean()), lv, extremes) for lv in levels], CONSTANT_NOTE
    check_method(method)
    if method in ("bca", "percentile"):
        return bootstrap_intervals(a, b, "BCa" if method == "bca" else "percentile", levels, n_boot, seed)
    if method == "score":
        return [score_interval(d, lv) for lv in levels], ""
    if method == "t_changed":
        return [t_changed_interval(d, lv, changed) for lv in levels], ""
    return [t_interval(d, lv) for lv in levels], ""
