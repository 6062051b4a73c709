"""B vs A pooled over shots: one comparison over every shot both systems have, one sign flip per question.

Units: scores are per-question accuracies in 0..1, (K shots, n questions) aligned by question; differences are
returned in POINTS. Each question's difference is averaged over the K shots, d_i = (1/K) sum_k (b_ki - a_ki),
and the test is the paired sign-flip test of mean(d): flipping question i flips its difference at every shot
together, so the correlation between shots (the same question is easy or hard at each) is kept, and the K
per-shot comparisons become one, which asks "is B better than A over the shots?" once.

On the 1/30 lattice K * 30 * d_i = sum_k 30 (b_ki - a_ki) is an integer, so the p is exact on the lattice of
1/(30 K) (`icl_kit.stats.exact`: convolution over the integer sums, ties counted exactly) and the TOST p is
the exact tilted-null p (`icl_kit.stats.tost`) with a change of 1.0 = 30 K integers. The interval, sign test,
Wilcoxon, MDE and n needed are those of `compare_paired`, on the averaged scores; with clusters (one image
per question) whole clusters flip and the interval and power are cluster-robust, as there.

In comparisons.csv a pooled row has `shot` = POOLED_SHOT (-1, never a shot: shot 0 is zero-shot) and
`shots` = the shots it pools, e.g. "1,2,3,4" (a per-shot row's `shots` is its shot).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from icl_kit.core.errors import KitError
from icl_kit.stats.cluster import cluster_codes
from icl_kit.stats.diff_intervals import IntervalMethod, check_method
from icl_kit.stats.exact import (
    LATTICE,
    SNAPPED,
    cluster_sums,
    decimal_ints,
    exact_feasible,
    exact_sign_flip_p,
    lattice_ints,
    monte_carlo_sign_flip_p,
)
from icl_kit.stats.paired import DEFAULTS, _check_pair, paired_fields, snap_pair
from icl_kit.stats.power import MIN_N
from icl_kit.stats.tost import MAX_UNIT, fits_exact_tost, tost_p, tost_p_ints

POOLED_SHOT = -1  # comparisons.csv `shot` of a row pooled over shots (0 is a real shot: zero-shot)
SHOTS_SEP = ","  # comparisons.csv `shots`: the pooled shots, "1,2,3,4"


def shots_field(shots: Sequence[int]) -> str:
    """comparisons.csv `shots` of a row: '2' for one shot, '1,2,3,4' for a pooled row."""
    return SHOTS_SEP.join(str(int(k)) for k in shots)


def _check_shots(scores_a: Any, scores_b: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """(A, B, snapped): two (K, n) arrays of scores, checked as compare_paired checks them and read back onto
    the 1/30 lattice when every score lies within exact.SNAP_TOL of it."""
    A, B = np.asarray(scores_a, float), np.asarray(scores_b, float)
    if A.ndim != 2 or A.shape != B.shape or A.shape[1] < MIN_N:
        raise KitError(f"Pooled scores must be two (shots, questions) arrays of equal shape with at least {MIN_N} "
                       f"questions; got {A.shape} and {B.shape}.")
    a, b, snapped = snap_pair(*_check_pair(A.ravel(), B.ravel()))
    return a.reshape(A.shape), b.reshape(B.shape), snapped


def pooled_ints(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, int, bool] | None:
    """(k, unit, on_lattice): k_i = sum over the K shots of b - a as integers (the 1/30 lattice, else the scores'
    decimal precision), `unit` the integers of a change of 1.0 in the averaged difference (30 K on the lattice);
    None when the scores are neither."""
    shots = A.shape[0]
    ka, kb = lattice_ints(A), lattice_ints(B)
    if ka is not None and kb is not None:
        return (kb - ka).sum(axis=0), LATTICE * shots, True
    found = decimal_ints(np.concatenate([A.ravel(), B.ravel()]))
    if found is None:
        return None
    k = found[0].reshape(2, *A.shape)
    return (k[1] - k[0]).sum(axis=0), found[1] * shots, False


def pooled_p(A: np.ndarray, B: np.ndarray, n_perm: int, seed: int,
             codes: np.ndarray | None = None) -> tuple[float, str]:
    """(two-sided p, method) of the sign-flip test of the mean averaged difference, one sign per question (per
    cluster with `codes`): exact on the 1/(30 K) lattice when feasible, else Monte Carlo with integer sums."""
    found = pooled_ints(A, B)
    rng = np.random.default_rng(seed)
    if found is None:
        d = cluster_sums(B.mean(axis=0) - A.mean(axis=0), codes)
        return monte_carlo_sign_flip_p(d, n_perm, rng), "monte_carlo_off_lattice"
    k, _, on_lattice = found
    k = cluster_sums(k, codes)
    if on_lattice and exact_feasible(k):
        return exact_sign_flip_p(k), "exact"
    return monte_carlo_sign_flip_p(k, n_perm, rng), "monte_carlo" if on_lattice else "monte_carlo_off_lattice"


def pooled_tost(A: np.ndarray, B: np.ndarray, margin: float) -> tuple[float, str]:
    """(TOST p, note) of the averaged differences: exact under the tilted nulls on their integers, else as
    `tost_p` decides for the averaged scores (the paired t, with its note)."""
    found = pooled_ints(A, B)
    if found is not None and (found[2] or found[1] <= MAX_UNIT * A.shape[0]) and fits_exact_tost(A.shape[1], found[1]):
        return tost_p_ints(found[0], found[1], margin), ""
    return tost_p(A.mean(axis=0), B.mean(axis=0), margin)


def compare_pooled(
    scores_a: Any,
    scores_b: Any,
    *,
    n_boot: int = DEFAULTS.n_boot,
    n_perm: int = DEFAULTS.n_perm,
    seed: int = DEFAULTS.seed,
    alpha: float = DEFAULTS.alpha,
    equivalence_margin: float = DEFAULTS.equivalence_margin,
    power: float = DEFAULTS.power,
    interval: IntervalMethod = DEFAULTS.interval,
    family_size: int = 1,
    clusters: Sequence[Hashable] | None = None,
) -> dict[str, Any]:
    """Compare B with A over K shots at once: scores (K, n) of the same n questions at each shot (0..1).

    Returns the fields of `compare_paired` for the per-question scores averaged over the shots (diff, acc_a and
    acc_b are means over shots and questions), with p the exact sign-flip p of the mean averaged difference
    (module docstring) and the TOST p exact on the same integers.
    """
    check_method(interval)
    A, B, snapped = _check_shots(scores_a, scores_b)
    a, b = A.mean(axis=0), B.mean(axis=0)  # each question's score averaged over the shots
    codes = cluster_codes(clusters, a.size)
    p, method = pooled_p(A, B, n_perm, seed, codes)
    lead = f"pooled over {A.shape[0]} shots: each question's difference averaged, flipped at every shot at once"
    return paired_fields(a, b, codes, (p, method + (SNAPPED if snapped else "")), pooled_tost(A, B, equivalence_margin),
                         n_boot=n_boot, seed=seed, alpha=alpha, equivalence_margin=equivalence_margin, power=power,
                         interval=interval, family_size=family_size, lead_note=lead)
