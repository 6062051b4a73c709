"""Exact sign-flip tests on the VQA score lattice, with exact tie counting.

Official VQA accuracy is the mean over 10 leave-one-out subsets of min(1, matches / 3),
so every per-question score is a multiple of 1/30 (0, 0.3, 0.6, 0.9, 1 and the 1/3 steps
of other scorers are all on this lattice). Scores are mapped to integers k = round(30 x)
(refused when the rounding is not exact), so the statistic S = sum_i s_i k_i of a sign
vector s is an integer and "as extreme as observed" is an integer comparison.

Why not `scipy.stats.permutation_test`: it decides "null statistic at least as extreme as the
observed one" on floats with a *relative* tolerance (about 1e-14 of the statistic), while the
float noise of mean(b) - mean(a) recomputed for each sign vector is of order n * eps * mean|d|
and depends on summation order, so null values mathematically equal to the observed one can
fall on either side of it. When few questions differ, such ties hold most of the null mass
(five equal differences: 2 of the 32 sign vectors reach |S_obs|), so a tie lost is a p far
too small: the review behind issue 14 saw p = 0.0002 for the exact 2/2^5 = 0.0625 and 11-18 %
false positives at alpha = 5 % under sparse nulls. It also caps p at 1 / (n_resamples + 1)
above 2^n, so n_perm limited what a Holm family of 56 could declare. Integers have no such noise.

The null distribution of S is computed exactly: only non-zero differences matter; their
magnitudes m_i (divided by their gcd) give T = sum of the m_i whose sign is +, whose
generating function is prod_m (1 + x^m)^{c_m}, c_m = number of questions with magnitude m,
and S = 2T - sum m_i. Each factor is a binomial pmf on a stride of m, convolved in float64
(direct below DIRECT_MAX_WORK, FFT above: absolute error < 1e-12, far below any alpha).
Past EXACT_MAX_SPAN (sum of the reduced magnitudes) the p is Monte Carlo, still with
integer sums, so ties stay exact: p = (1 + #{|S*| >= |S_obs|}) / (n_perm + 1).

Scores rounded outside the kit (0.3333, 0.67) are read back onto the lattice when every score lies
within SNAP_TOL of a multiple of 1/30 (`snap_to_lattice`): 2-decimal rounding moves a score by at most
0.005, and the nearest other multiple is 1/30 = 0.033 away, so this undoes the rounding. Scores farther
off stay Monte Carlo, with the sums counted as integers in units of the data's decimal precision
(`decimal_ints`), so ties are judged at the precision the scores were written with.

Clusters (`sign_flip_p(clusters=...)`, `stats.cluster: image`): the questions of one image flip together, so
the integers tested are the cluster sums K_c (`cluster_sums`); they stay on the lattice, and everything above
applies to them unchanged.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import signal
from scipy import stats as st

LATTICE = 30  # official VQA scores are multiples of 1/30
LATTICE_TOL = 1e-6  # |30 x - round(30 x)| below this is float noise of a lattice value
EXACT_MAX_SPAN = 3_000_000  # sum of reduced magnitudes past which the exact pmf costs > ~1 s: Monte Carlo
DIRECT_MAX_WORK = 2_000_000  # len(acc) * len(factor) up to which np.convolve (exact float sums) is used
MC_CHUNK = 2000  # sign vectors per integer matrix product
OFF_LATTICE_RTOL = 1e-9  # off-lattice Monte Carlo: ties within this fraction of sum|d| (float noise << it)
SNAP_TOL = 0.007  # a score within this of a multiple of 1/30 is that multiple, rounded (2 decimals move it <= 0.005)
MAX_DECIMALS = 6  # off the lattice: scores written with at most this many decimals are counted as integers
SNAPPED = " (snapped to 1/30)"  # appended to p_method when rounded scores were read back onto the lattice
Alternative = Literal["two-sided", "greater"]


def lattice_ints(x: np.ndarray) -> np.ndarray | None:
    """Scores (0..1) as integers on the 1/30 lattice, or None when any score is off it."""
    x = np.asarray(x, float)
    k = np.rint(x * LATTICE)
    return k.astype(np.int64) if np.all(np.abs(x * LATTICE - k) <= LATTICE_TOL) else None


def snap_to_lattice(x: np.ndarray) -> np.ndarray | None:
    """Scores read back onto the 1/30 lattice (the nearest multiple) when every one lies within SNAP_TOL of
    it, else None (then nothing is moved: a score 0.26 of a 0.01 grid beside 0.25 is not a rounded 8/30)."""
    x = np.asarray(x, float)
    k = np.rint(x * LATTICE)
    return k / LATTICE if np.all(np.abs(x - k / LATTICE) <= SNAP_TOL) else None


def decimal_ints(x: np.ndarray) -> tuple[np.ndarray, int] | None:
    """(scores as integers in units of 10^-D, 10^D) for the fewest decimals D <= MAX_DECIMALS that write
    every score (up to float noise), or None."""
    x = np.asarray(x, float)
    for decimals in range(MAX_DECIMALS + 1):
        unit = 10**decimals
        k = np.rint(x * unit)
        if np.all(np.abs(x * unit - k) <= LATTICE_TOL):
            return k.astype(np.int64), unit
    return None


def _convolve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.size * y.size <= DIRECT_MAX_WORK:
        return np.convolve(x, y)
    return np.clip(signal.fftconvolve(x, y), 0.0, None)  # FFT noise can dip a few 1e-17 below 0


def subset_sum_pmf(mags: np.ndarray) -> np.ndarray:
    """pmf of T = sum_i [s_i = +1] m_i over t = 0..sum(m), signs s_i independent fair coins.

    mags: positive integers (n,). Generating function prod_m ((1 + x^m) / 2)^{c_m}.
    """
    values, counts = np.unique(np.asarray(mags, np.int64), return_counts=True)
    acc = np.ones(1)
    for m, c in zip(values.tolist(), counts.tolist(), strict=True):
        factor = np.zeros(m * c + 1)
        factor[::m] = st.binom.pmf(np.arange(c + 1), c, 0.5)  # (c + 1,) on a stride of m
        acc = _convolve(acc, factor)
    return acc


def reduced(k: np.ndarray) -> tuple[np.ndarray, int]:
    """(non-zero magnitudes / their gcd, observed sum / gcd) of integer differences k."""
    nz = np.abs(k[k != 0])
    if nz.size == 0:
        return nz, 0
    g = int(np.gcd.reduce(nz))
    return nz // g, int(k.sum()) // g


def exact_feasible(k: np.ndarray) -> bool:
    mags, _ = reduced(k)
    return int(mags.sum()) <= EXACT_MAX_SPAN


def exact_sign_flip_p(k: np.ndarray, alternative: Alternative = "two-sided") -> float:
    """Exact sign-flip p of S = sum k_i (integers): P(|S*| >= |S|), or P(S* >= S) for 'greater'."""
    mags, s_obs = reduced(np.asarray(k, np.int64))
    if mags.size == 0:
        return 1.0
    pmf = subset_sum_pmf(mags)
    s = 2 * np.arange(pmf.size) - int(mags.sum())  # S for each T
    hit = np.abs(s) >= abs(s_obs) if alternative == "two-sided" else s >= s_obs
    return float(min(1.0, pmf[hit].sum()))


def _extreme(null: np.ndarray, obs: float, alternative: Alternative, tol: float) -> np.ndarray:
    if alternative == "two-sided":
        return np.abs(null) >= abs(obs) - tol
    return null >= obs - tol


def monte_carlo_sign_flip_p(
    d: np.ndarray, n_perm: int, rng: np.random.Generator, alternative: Alternative = "two-sided"
) -> float:
    """Monte Carlo sign-flip p, (1 + #extreme) / (n_perm + 1).

    Integer d (the lattice, or the data's decimal precision): integer sums, exact ties. Float d: ties within
    OFF_LATTICE_RTOL * sum|d|, an absolute tolerance far above the float noise of the sums
    and far below the smallest non-zero gap of any realistic score grid.
    """
    d = np.asarray(d)
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    integer = np.issubdtype(d.dtype, np.integer)
    tol = 0 if integer else OFF_LATTICE_RTOL * float(np.abs(d).sum())
    obs = d.sum()
    hits = 0
    for start in range(0, n_perm, MC_CHUNK):
        rows = min(MC_CHUNK, n_perm - start)
        signs = rng.integers(0, 2, size=(rows, d.size), dtype=np.int8) * 2 - 1  # (rows, k)
        null = signs.astype(np.int64 if integer else float) @ d  # (rows,)
        hits += int(np.count_nonzero(_extreme(null, obs, alternative, tol)))
    return (1 + hits) / (n_perm + 1)


def cluster_sums(d: np.ndarray, clusters: np.ndarray | None) -> np.ndarray:
    """Per-cluster sums of d (integers stay integers), clusters coded 0..G-1; d itself when clusters is None."""
    if clusters is None:
        return d
    out = np.zeros(int(clusters.max()) + 1, d.dtype)
    np.add.at(out, clusters, d)
    return out


def sign_flip_p(
    a: np.ndarray, b: np.ndarray, n_perm: int, seed: int, alternative: Alternative = "two-sided",
    clusters: np.ndarray | None = None,
) -> tuple[float, str]:
    """(p, method) of the paired sign-flip test of mean(b - a); method 'exact', 'monte_carlo' or
    'monte_carlo_off_lattice'. Exact whenever the scores are on the lattice and the span is small (snapping
    rounded scores onto the lattice is the caller's choice: `snap_to_lattice`). `clusters` (codes 0..G-1, one
    per question): the questions of a cluster flip together, so the null is that of sum_c +-K_c over the
    cluster sums K_c, still integers of the lattice, by the same convolution."""
    ka, kb = lattice_ints(a), lattice_ints(b)
    if ka is None or kb is None:
        both = decimal_ints(np.concatenate([np.asarray(a, float), np.asarray(b, float)]))
        d = np.asarray(b, float) - np.asarray(a, float) if both is None else np.diff(both[0].reshape(2, -1), axis=0)[0]
        d = cluster_sums(d, clusters)
        return monte_carlo_sign_flip_p(d, n_perm, np.random.default_rng(seed), alternative), "monte_carlo_off_lattice"
    k = cluster_sums(kb - ka, clusters)
    if exact_feasible(k):
        return exact_sign_flip_p(k, alternative), "exact"
    return monte_carlo_sign_flip_p(k, n_perm, np.random.default_rng(seed), alternative), "monte_carlo"
