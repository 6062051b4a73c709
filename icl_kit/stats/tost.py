"""TOST equivalence p of a paired difference: two one-sided tests, each exact under a tilted null.

H0: |mean(b - a)| >= delta is rejected when both one-sided nulls are: H+ (mean >= +delta) by a small
observed sum S = sum_i k_i of the integer differences, H- (mean <= -delta) by a large one; p = max(p+, p-).

Each one-sided p is computed exactly under one null distribution: the questions' own differences
tilted to the margin by moving a share w of their mass to the largest change the scores allow (+1.0
for H+, -1.0 for H-; 30 lattice units), G = (1 - w) F_hat + w point(+-1.0), w chosen so that G has mean
+-delta. p+ = P(S* <= S) for S* the sum of n independent draws from G (p- = P(S* >= S)), from G's pmf
raised to the n-th power by FFT on the integers, so ties are counted exactly.

Why this null: it is the most skewed one the data and the bound |d| <= 1 allow, which is what matters
when few questions change.
- No question changed: G puts delta on +1.0, p = (1 - delta)^n, the exact no-change bound (n = 300,
  delta = 1 point: 0.049).
- c questions changed by +1.0, none by less: p = P(Binomial(n, delta) <= c), the exact chance of seeing at
  most c changes when a share delta changed by +1.0, the largest change a mean of +delta needs the fewest
  of (one +1.0 among 300: 0.198).
- Many changes: w <= delta moves little mass, G has about the data's spread, and p is close to a
  paired t's.
The paired t TOST reads the spread off the few changes it happened to see and is far too small there
(one +1.0 among 300: 0.023); sign flips of d -+ delta assume the differences are symmetric about the
margin, which few changes are not (the same case: 1e-9). The null is an estimate, not a bound over every
distribution; tests/stats/test_tost.py checks by simulation that equivalence is declared at most alpha of
the time when the true difference sits on the margin, with few and with many changed questions.

Integers: the 1/30 lattice (unit 30) or, off it, the scores' decimal precision (unit 10^D, D <= 2). Past
MAX_SUPPORT points of the sum's pmf, or with scores of more decimals, the paired t TOST is used
(statsmodels `ttost_paired`), and the note says so.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft
from statsmodels.stats.weightstats import ttost_paired

from icl_kit.core.names import POINTS
from icl_kit.stats.exact import LATTICE, decimal_ints, lattice_ints

MAX_SUPPORT = 4_000_000  # points of the pmf of the sum (n * width + 1): ~0.3 s of FFT; past it, paired t
MAX_UNIT = 100  # off the lattice, scores with at most 2 decimals are tested exactly
T_NOTE = "TOST by paired t (scores off the 1/30 lattice or too many questions for the exact TOST)"


def _power(z: np.ndarray, n: int) -> np.ndarray:
    """z ** n elementwise by repeated squaring (numpy's complex power is ~10x slower)."""
    out, base = np.ones_like(z), z.copy()
    while n:
        if n & 1:
            out *= base
        base *= base
        n >>= 1
    return out


def sum_tail(values: np.ndarray, probs: np.ndarray, n: int, s_obs: int, lower: bool) -> float:
    """P(S* <= s_obs) (lower) or P(S* >= s_obs) for S* the sum of n iid draws taking integer `values` with `probs`."""
    lo = int(values.min())
    pmf1 = np.zeros(int(values.max()) - lo + 1)
    np.add.at(pmf1, values - lo, probs)
    size = n * (pmf1.size - 1) + 1
    length = sp_fft.next_fast_len(size, real=True)
    pmf = np.clip(sp_fft.irfft(_power(sp_fft.rfft(pmf1, length), n), length)[:size], 0.0, None)  # noise dips < 0
    at = s_obs - n * lo  # index of the observed sum
    tail = pmf[: at + 1].sum() if lower else pmf[max(at, 0):].sum()
    return float(min(1.0, tail))


def one_sided_p(k: np.ndarray, unit: int, mu0: float) -> float:
    """Exact p of H: mean >= mu0 (mu0 > 0; small sums reject) or H: mean <= mu0 (mu0 < 0; large sums reject),
    under the tilted null with its extra mass at +-unit (the largest possible change). 1 when the observed mean
    already lies at or beyond mu0. mu0 = 0 is taken as the H+ side."""
    side = 1 if mu0 >= 0 else -1
    mean = float(k.mean())
    if side * (mean - mu0) >= 0:
        return 1.0
    ext = side * unit
    w = min(1.0, (mu0 - mean) / (ext - mean))
    values, counts = np.unique(k, return_counts=True)
    values, probs = np.append(values, ext), np.append((1.0 - w) * counts / k.size, w)
    return sum_tail(values, probs, k.size, int(k.sum()), lower=side > 0)


def integer_diffs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int] | None:
    """(b - a as integers, the integer of a change of 1.0): on the 1/30 lattice, else at the scores' decimal
    precision up to MAX_UNIT; None otherwise."""
    ka, kb = lattice_ints(a), lattice_ints(b)
    if ka is not None and kb is not None:
        return kb - ka, LATTICE
    if np.array_equal(a, b):  # no change: every unit gives the same (1 - delta)^n
        return np.zeros(a.size, np.int64), LATTICE
    found = decimal_ints(np.concatenate([a, b]))
    if found is None or found[1] > MAX_UNIT:
        return None
    k, unit = found
    return k[a.size:] - k[:a.size], unit


def tost_p_ints(k: np.ndarray, unit: int, margin: float) -> float:
    """TOST p of integer differences k, `unit` integers being a change of 1.0 (30 on the lattice; 30 K for
    differences averaged over K shots), margin in points: the larger of the two exact one-sided p."""
    mu0 = margin / POINTS * unit
    return max(one_sided_p(k, unit, mu0), one_sided_p(k, unit, -mu0) if mu0 > 0 else 1.0)


def fits_exact_tost(n: int, unit: int) -> bool:
    """Whether the exact TOST's pmf of a sum of n differences of `unit` per 1.0 is small enough to compute."""
    return n * 2 * unit + 1 <= MAX_SUPPORT


def tost_p(a: np.ndarray, b: np.ndarray, margin: float) -> tuple[float, str]:
    """(TOST p that |mean(b - a)| < margin points, note): exact under the tilted nulls (module docstring), or
    the paired t TOST with a note when the scores are not integers of a small unit or the sum is too wide."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    found = integer_diffs(a, b)
    if found is not None and fits_exact_tost(a.size, found[1]):
        return tost_p_ints(*found, margin), ""
    if np.ptp(b - a) == 0:
        return 1.0, T_NOTE  # no spread for a t; conservative
    return float(ttost_paired(b, a, -margin / POINTS, margin / POINTS)[0]), T_NOTE
