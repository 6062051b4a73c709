"""Intervals of a paired difference mean(b - a), in points, by one of four methods.

- `score`: the Wilson idea for a bounded mean: every mu with |mean - mu| <= t_q * sd_mu / sqrt(n),
  where sd_mu is the SD of the empirical distribution tilted to mean mu by moving mass to the
  largest observed change on that side. When few questions changed, a t interval takes their
  count as known and under-covers (one change: [mean - 2 mean, mean + 2 mean] misses a true
  rate of three); the tilt lets the spread grow with the hypothesised mean, as Wilson's does.
- `t`: mean +- t_{(1+level)/2, n-1} * sd / sqrt(n) (Student t on the differences)
- `percentile`, `bca`: `scipy.stats.bootstrap(paired=True)`, resampling questions
- `exact`: the set of shifts theta the exact two-sided sign-flip test of d - theta does not
  reject (test inversion), on a grid of theta with step 1 / (30 * EXACT_GRID) (0.11 points),
  endpoints rounded outward so the grid never narrows the interval. Shifted sign flips assume the
  differences are symmetric about their mean, which VQA differences with few changed questions are
  not: in the coverage study it covered 74% (about 3 of 100 questions changed) to 94% (many), and it
  takes about 2 s per comparison at n = 1000. Offered for comparison, not recommended.

No question changed (every difference 0): no method can see any spread, so the interval
is the exact bound for a proportion of changed questions seen 0 times in n (the rule of
three, exactly 1 - (tail)^(1/n)), times the largest possible change (1.0 = 100 points).
Every difference equal and non-zero: the interval is the point (said in the note).
The default method (`stats.interval`) is the one the coverage test in tests/stats/test_stats.py
finds closest to nominal on VQA-like data at n = 100.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
from scipy import stats as st

from icl_kit.core.names import POINTS
from icl_kit.stats.exact import LATTICE, exact_sign_flip_p, lattice_ints

IntervalMethod = Literal["score", "t", "bca", "percentile", "exact"]
PTS_DECIMALS = 9  # points are rounded so 1/3-steps print as 0, not 2.2e-16
RESAMPLE_BATCH = 2000  # resamples per vectorised call: ~16 MB per array at n=1000, same numbers
DEGENERATE_TOL = 1e-12  # differences (or their range) below this are float noise of 0
SCORE_BISECTIONS = 50  # halvings of a range <= 2: endpoints to 2e-15
EXACT_GRID = 30  # theta step of the exact interval: 1 / (30 * 30) accuracy = 0.11 points
EXACT_MAX_WORK = 2_000_000  # n * largest |grid value|: beyond it the exact interval falls back to t


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


def _tilted_sd(mean: float, m2: float, mu: float, ext: float) -> float:
    """SD of (1 - w) F_hat + w delta_ext, w chosen so its mean is mu (mu between mean and ext)."""
    w = (mu - mean) / (ext - mean)
    return math.sqrt(max((1 - w) * m2 + w * ext * ext - mu * mu, 0.0))


def score_interval(d: np.ndarray, level: float) -> tuple[float, float]:
    """`score` interval of mean(d) in points (module docstring); each end by bisection."""
    n, mean, m2 = d.size, float(d.mean()), float(np.mean(d * d))
    q = st.t.ppf(0.5 + level / 2, n - 1)
    ends = []
    for sign in (-1.0, 1.0):
        side = np.abs(d[d * sign > 0])
        ext = sign * float(side.max() if side.size else np.abs(d).max())  # the largest change on this side
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


def _exact_endpoint(k: np.ndarray, alpha: float, sign: int, start: int) -> int:
    """Grid shift t beyond which (in direction `sign`) the test of G k - t rejects; bisection."""
    g = EXACT_GRID

    def rejects(t: int) -> bool:
        return exact_sign_flip_p(g * k - t) <= alpha

    inside, outside = start, start + sign * g * LATTICE * 2  # a shift of 2.0: every sign vector is extreme
    if not rejects(outside):  # n < 6: even the most extreme sign vector is not rare enough
        return sign * g * LATTICE  # the widest possible: a mean difference of +-1.0
    while abs(outside - inside) > 1:
        mid = (inside + outside) // 2
        inside, outside = (inside, mid) if rejects(mid) else (mid, outside)
    return outside


def exact_interval(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float, str] | None:
    """Inverted exact sign-flip test; None when off the lattice or too costly (caller falls back)."""
    ka, kb = lattice_ints(a), lattice_ints(b)
    if ka is None or kb is None or ka.size * EXACT_GRID * 2 * LATTICE > EXACT_MAX_WORK:
        return None
    k = kb - ka
    start = int(round(EXACT_GRID * k.mean()))  # the point estimate on the grid: never rejected
    alpha = 1 - level
    low = _exact_endpoint(k, alpha, -1, start)
    high = _exact_endpoint(k, alpha, +1, start)
    step = POINTS / (LATTICE * EXACT_GRID)
    return round(low * step, PTS_DECIMALS), round(high * step, PTS_DECIMALS), ""


def diff_intervals(
    a: np.ndarray, b: np.ndarray, method: IntervalMethod, levels: tuple[float, ...], n_boot: int, seed: int
) -> tuple[list[tuple[float, float]], str]:
    """One (low, high) in points per level, and a note when a method could not be used as asked."""
    d = b - a
    if np.all(np.abs(d) <= DEGENERATE_TOL):
        return [(-no_change_bound(d.size, (1 - lv) / 2), no_change_bound(d.size, (1 - lv) / 2)) for lv in levels], (
            "no question changed: exact bound (rule of three) on the share of changed questions x 100 points")
    if np.ptp(d) <= DEGENERATE_TOL:
        point = (pts(d.mean()), pts(d.mean()))
        return [point] * len(levels), "all paired differences are identical: the interval is the point"
    if method in ("bca", "percentile"):
        return bootstrap_intervals(a, b, "BCa" if method == "bca" else "percentile", levels, n_boot, seed)
    if method == "exact":
        found = [exact_interval(a, b, lv) for lv in levels]
        if all(f is not None for f in found):
            return [(f[0], f[1]) for f in found], ""
        return [t_interval(d, lv) for lv in levels], "exact interval not available (off the lattice or too large): t"
    if method == "score":
        return [score_interval(d, lv) for lv in levels], ""
    return [t_interval(d, lv) for lv in levels], ""
