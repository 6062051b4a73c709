"""Is the best of several epochs really better than the baseline? (Westfall–Young max-T)

Units: scores are per-question accuracies in 0..1; differences are returned in POINTS.
Both p-values are ONE-SIDED (in the direction of "better"). On the 1/30 score lattice the
statistics are integer sums, so ties are exact (`icl_kit.stats.exact`): the joint null is
enumerated when few questions differ, else drawn at random with integer tie counting, and the
naive p is always the exact one-sided sign-flip p of the chosen epoch. Scores rounded outside the kit
(0.3333) are read back onto the lattice first, as in `compare_paired` (`method` then ends in
' (snapped to 1/30)'). `max_t_joint` runs the same test over every (epoch, shot) column of a lineage at once,
so picking the best shot is accounted for too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from icl_kit.core.errors import KitError
from icl_kit.stats.diff_intervals import pts
from icl_kit.stats.exact import LATTICE, SNAPPED, exact_feasible, exact_sign_flip_p, lattice_ints, snap_to_lattice
from icl_kit.stats.power import MIN_N

PERM_CHUNK = 2000  # sign-flip rows per matrix product: bounds memory at n=1000 to ~16 MB
EXACT_MAX_COLUMNS = 16  # questions where some epoch differs from the base: 2^16 sign vectors enumerated
TIE_RTOL = 1e-9  # off the lattice only: float sums within this fraction of sum|D| count as ties


def _all_signs(k: int) -> np.ndarray:
    """Every sign vector of length k, (2^k, k) in {-1, +1}."""
    bits = (np.arange(2**k)[:, None] >> np.arange(k)[None, :]) & 1
    return (bits * 2 - 1).astype(np.int64)


def _null_sums(d: np.ndarray, n_perm: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """(null sums (P, E), exact) of the joint sign flip: one sign per question shared by all epochs.

    Exact: all 2^k sign vectors over the k questions where some epoch differs (the rest add 0).
    Else n_perm random sign vectors: `S*[p, e] = sum_i s[p, i] * d[e, i]`, computed in chunks.
    """
    cols = d[:, np.any(d != 0, axis=0)]  # (E, k)
    if cols.shape[1] <= EXACT_MAX_COLUMNS:
        return _all_signs(cols.shape[1]) @ cols.T, True
    out = np.empty((n_perm, d.shape[0]), dtype=d.dtype)
    for start in range(0, n_perm, PERM_CHUNK):
        rows = min(PERM_CHUNK, n_perm - start)
        signs = rng.integers(0, 2, size=(rows, cols.shape[1]), dtype=np.int8) * 2 - 1  # (rows, k)
        out[start:start + rows] = signs.astype(d.dtype) @ cols.T  # (rows, E)
    return out, False


def _lattice_diffs(
    scores_epochs: np.ndarray, scores_base: np.ndarray, rows: bool = False
) -> tuple[np.ndarray, bool, bool]:
    """(D = epochs - base, on_lattice, snapped): integers on the 1/30 lattice when possible, else floats. Scores
    rounded outside the kit (0.3333) are read back onto the lattice when every score of the epochs and the base
    lies within exact.SNAP_TOL of it, as compare_paired does (`snapped` then True), so their ties stay ties. The
    base is one row (n,) shared by every epoch, or with `rows` one row per epoch (E, n)."""
    ke, kb = lattice_ints(scores_epochs), lattice_ints(scores_base)
    snapped = False
    if ke is None or kb is None:
        se, sb = snap_to_lattice(scores_epochs), snap_to_lattice(scores_base)
        if se is not None and sb is not None:
            ke, kb, snapped = lattice_ints(se), lattice_ints(sb), True
    if ke is not None and kb is not None:
        return ke - (kb if rows else kb[None, :]), True, snapped
    base = np.asarray(scores_base, float)
    return np.asarray(scores_epochs, float) - (base if rows else base[None, :]), False, False


def max_t_best_epoch(
    scores_epochs: np.ndarray,
    scores_base: np.ndarray,
    n_perm: int = 10000,
    seed: int = 0,
) -> dict[str, Any]:
    """Is the best of E epochs really better than the base? Westfall–Young max-T, one-sided.

    scores_epochs: (E, n) per-question scores of each epoch, aligned with scores_base: (n,).
    D = scores_epochs - scores_base (E, n); observed sums m_e = sum_i D[e, i] (the same n for all
    epochs, so sums order like means); best e* = argmax_e m_e. One sign per question is flipped
    jointly across epochs, keeping their correlation:
      naive_p = P(S*[e*] >= m_e*)            as if e* were chosen in advance (exact, one-sided)
      maxT_p  = P(max_e S*[e] >= m_e*)       accounts for picking the best
    Exact (enumeration) when at most EXACT_MAX_COLUMNS questions differ; else Monte Carlo,
    (1 + #hits) / (P + 1), never below the exact naive p (max_e S*[e] >= S*[e*], so the true
    maxT_p >= naive_p; the Monte Carlo estimate is raised to it when noise puts it below).
    """
    d, on_lattice, snapped = _lattice_diffs(scores_epochs, scores_base)
    if d.ndim != 2 or d.shape[1] < MIN_N:
        raise KitError(f"scores_epochs must be (epochs, questions) aligned with scores_base; got shape {d.shape}.")
    return max_t_of_diffs(d, on_lattice, n_perm, seed, snapped)


def max_t_joint(
    scores_epochs: np.ndarray,
    scores_base: np.ndarray,
    n_perm: int = 10000,
    seed: int = 0,
) -> dict[str, Any]:
    """Is the best (epoch, shot) of a lineage better than the base at that shot? One max-T over every column.

    scores_epochs: (S, E, n) per-question scores of E epochs at S shots on the same n questions; scores_base:
    (S, n), the base at each shot. The S * E columns D[s, e] = scores_epochs[s, e] - scores_base[s] share one
    sign per question (flipping question i flips its row in every column, keeping the correlation between
    shots and epochs), and the statistic is the largest column sum, as in `max_t_best_epoch`: so "the best
    checkpoint at some shot" is tested once. Exact when the union of the columns' non-zero rows has at most
    EXACT_MAX_COLUMNS questions, else `n_perm` Monte Carlo sign vectors. Returns max_t_best_epoch's fields
    (`n_epochs` = E) with `best_shot_index`, `best_epoch_index`, `n_shots` = S and `n_columns` = S * E;
    `best_index` and `diffs` / `maxT_p_each` run over the columns shot-major (column s * E + e).
    """
    e3 = np.asarray(scores_epochs, float)
    base = np.asarray(scores_base, float)
    if e3.ndim != 3 or base.shape != (e3.shape[0], e3.shape[2]):
        raise KitError(f"scores_epochs must be (shots, epochs, questions) and scores_base (shots, questions); got "
                       f"{e3.shape} and {base.shape}.")
    shots, epochs, n = e3.shape
    d, on_lattice, snapped = _lattice_diffs(e3.reshape(shots * epochs, n), np.repeat(base, epochs, axis=0), rows=True)
    if n < MIN_N:
        raise KitError(f"Need at least {MIN_N} questions for the joint max-T; got {n}.")
    res = max_t_of_diffs(d, on_lattice, n_perm, seed, snapped)
    best = res["best_index"]
    return {**res, "best_shot_index": best // epochs, "best_epoch_index": best % epochs, "n_epochs": epochs,
            "n_shots": shots, "n_columns": shots * epochs}


def max_t_of_diffs(d: np.ndarray, on_lattice: bool, n_perm: int, seed: int, snapped: bool = False) -> dict[str, Any]:
    """The max-T test of `max_t_best_epoch` on differences D (columns, n): lattice integers or floats; `snapped`
    (rounded scores read back onto the lattice) adds exact.SNAPPED to `method`."""
    if n_perm < 1:
        raise KitError(f"n_perm={n_perm} must be at least 1.")
    observed = d.sum(axis=1)  # (E,)
    best = int(np.argmax(observed))
    null, exact = _null_sums(d, n_perm, np.random.default_rng(seed))  # (P, E)
    tol = 0 if on_lattice else TIE_RTOL * float(np.abs(d).sum())
    null_max = null.max(axis=1)  # (P,)
    if exact:
        naive_p = float(np.mean(null[:, best] >= observed[best] - tol))
        each = np.mean(null_max[:, None] >= observed[None, :] - tol, axis=0)
    else:
        hits = (null_max[:, None] >= observed[None, :] - tol).sum(axis=0)  # (E,)
        each = (1 + hits) / (n_perm + 1)
        naive_p = (exact_sign_flip_p(d[best], "greater") if on_lattice and exact_feasible(d[best])
                   else (1 + np.count_nonzero(null[:, best] >= observed[best] - tol)) / (n_perm + 1))
        each = np.maximum(each, naive_p) if on_lattice else each
    maxt_p = float(each[best])
    assert maxt_p >= naive_p - 1e-12, "max-T p below the naive p: the flips were not shared"
    n = d.shape[1]
    scale = n * (LATTICE if on_lattice else 1)  # sums -> mean accuracy (0..1)
    return {
        "best_index": best,
        "best_diff": pts(observed[best] / scale),
        "naive_p": float(naive_p),
        "maxT_p": maxt_p,
        "alternative": "one-sided (better)",
        "method": ("exact" if exact else "monte_carlo") + (SNAPPED if snapped else ""),
        "diffs": [pts(x / scale) for x in observed],
        "maxT_p_each": [float(x) for x in each],
        "n": int(n),
        "n_epochs": int(d.shape[0]),
        "n_perm": int(n_perm),
    }
