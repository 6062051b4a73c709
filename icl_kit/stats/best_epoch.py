"""Is the best of several epochs really better than the baseline? (Westfall–Young max-T)

Units: scores are per-question accuracies in 0..1; differences are returned in POINTS.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from icl_kit.core.errors import KitError
from icl_kit.core.names import POINTS
from icl_kit.stats.power import MIN_N

PERM_CHUNK = 2000  # sign-flip rows per matrix product: bounds memory at n=1000 to ~16 MB
TIE_TOL = 1e-9  # mean differences closer than this count as ties (distinct ones differ by >= 1/(3n))


def _sign_flip_means(diffs: np.ndarray, n_perm: int, rng: np.random.Generator) -> np.ndarray:
    """Means of sign-flipped differences, one flip per question shared by all rows.

    diffs: (E, n). Returns (n_perm, E): `m*[p, e] = (1/n) sum_i s[p, i] * diffs[e, i]`,
    s[p, i] in {-1, +1} uniform; computed as a matrix product in chunks.
    """
    n = diffs.shape[1]
    out = np.empty((n_perm, diffs.shape[0]))
    for start in range(0, n_perm, PERM_CHUNK):
        rows = min(PERM_CHUNK, n_perm - start)
        signs = rng.integers(0, 2, size=(rows, n), dtype=np.int8) * 2 - 1  # (rows, n)
        out[start:start + rows] = signs.astype(float) @ diffs.T / n  # (rows, E)
    return out


def max_t_best_epoch(
    scores_epochs: np.ndarray,
    scores_base: np.ndarray,
    n_perm: int = 10000,
    seed: int = 0,
) -> dict[str, Any]:
    """Is the best of E epochs really better than the base? Westfall–Young max-T.

    scores_epochs: (E, n) per-question scores of each epoch, aligned with
    scores_base: (n,). Differences `D = scores_epochs - scores_base` (E, n).
    Observed `m_e = mean_i D[e, i]`, best `e* = argmax_e m_e`.

    The sign of each question's differences is flipped jointly across all epochs
    (one flip per question per permutation), which keeps the correlation between
    epochs. One-sided, in the direction of "better":
      naive_p = (1 + #{p: m*[p, e*] >= m_e*}) / (P + 1)        (as if e* were chosen in advance)
      maxT_p  = (1 + #{p: max_e m*[p, e] >= m_e*}) / (P + 1)   (accounts for picking the best)
    Since max_e m*[p, e] >= m*[p, e*] for the same flips, maxT_p >= naive_p always.

    Limits: the joint sign flip is exact when the vector of differences is symmetric
    about 0 under the null (e.g. base and epochs exchangeable with symmetric marginals);
    otherwise it is the usual approximation, good for moderate n.
    """
    d = np.asarray(scores_epochs, float) - np.asarray(scores_base, float)[None, :]  # (E, n)
    if d.ndim != 2 or d.shape[1] < MIN_N:
        raise KitError(
            f"scores_epochs must be (epochs, questions) aligned with scores_base; got shape {d.shape}."
        )
    if n_perm < 1:
        raise KitError(f"n_perm={n_perm} must be at least 1.")
    observed = d.mean(axis=1)  # (E,)
    best = int(np.argmax(observed))
    null = _sign_flip_means(d, n_perm, np.random.default_rng(seed))  # (P, E)
    threshold = observed[best] - TIE_TOL
    naive_p = (1 + np.count_nonzero(null[:, best] >= threshold)) / (n_perm + 1)
    null_max = null.max(axis=1)  # (P,)
    maxt_p = (1 + np.count_nonzero(null_max >= threshold)) / (n_perm + 1)
    # single-step adjusted p of every epoch, for a table
    adj = (1 + (null_max[:, None] >= observed[None, :] - TIE_TOL).sum(axis=0)) / (n_perm + 1)
    assert maxt_p >= naive_p, "max-T p below the naive p: the flips were not shared"
    return {
        "best_index": best,
        "best_diff": float(observed[best] * POINTS),
        "naive_p": float(naive_p),
        "maxT_p": float(maxt_p),
        "diffs": [float(x * POINTS) for x in observed],
        "maxT_p_each": [float(x) for x in adj],
        "n": int(d.shape[1]),
        "n_epochs": int(d.shape[0]),
        "n_perm": int(n_perm),
    }
