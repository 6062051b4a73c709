"""Paired tests, intervals, equivalence, multiplicity: is system B really better than A?

Inputs are per-question scores (official VQA accuracy, 0..1) aligned by
question; every number returned is in POINTS (percent units), so +0.6 means
0.6 accuracy points. At n = 100 the 95% interval of a paired difference is
typically +-4..6 points: the point of this module is to say so.

The tests come from scipy/statsmodels; this module only wires them together:
- diff and its BCa bootstrap interval: `scipy.stats.bootstrap(paired=True)`
- two-sided p: paired permutation (sign flip) `scipy.stats.permutation_test`
- McNemar exact on right/wrong (acc > 0), Wilcoxon signed-rank (zsplit)
- equivalence: TOST on the paired differences with margin delta (points)
- power: MDE at the current n, n needed for delta (`icl_kit.stats.power`)
- multiplicity over the run's family of comparisons: Holm or BH (`adjust`)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from scipy import stats as st
from statsmodels.stats import proportion as smp
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.weightstats import ttost_paired

from icl_kit.core.errors import KitError
from icl_kit.stats.power import MIN_N, POINTS, mde_paired, n_needed_paired, sd_paired

DEGENERATE_TOL = 1e-12  # differences whose range is below this are "all identical"
RHO_RANGE = (0.3, 0.8)  # paired correlations typical of two prompts on the same questions
PTS_DECIMALS = 9  # points are rounded so 1/3-steps print as 0, not 2.2e-16
RESAMPLE_BATCH = 2000  # resamples per vectorised call: ~16 MB per array at n=1000, same numbers
Correction = Literal["holm", "fdr_bh"]


# ------------------------------------------------------------------ alignment
def align_scores(
    a: Mapping[Hashable, float], b: Mapping[Hashable, float]
) -> tuple[list[Hashable], np.ndarray, np.ndarray]:
    """Align two {question_id: acc} mappings on their common ids (sorted).

    Returns (ids, scores_a (n,), scores_b (n,)). Ids present in only one are dropped.
    """
    ids = sorted(set(a) & set(b))
    if not ids:
        raise KitError("The two systems share no question ids; evaluate them on the same questions.")
    return ids, np.array([a[i] for i in ids], float), np.array([b[i] for i in ids], float)


def _check_pair(scores_a: Sequence[float], scores_b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(scores_a, float), np.asarray(scores_b, float)
    if a.ndim != 1 or a.shape != b.shape:
        raise KitError(f"Paired scores must be two 1-D arrays of equal length; got {a.shape} and {b.shape}.")
    if a.size < MIN_N:
        raise KitError(f"Need at least {MIN_N} paired questions, got {a.size}; evaluate more questions.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise KitError("Paired scores contain NaN or inf; drop or re-evaluate those questions.")
    if min(a.min(), b.min()) < 0 or max(a.max(), b.max()) > 1:
        raise KitError("Paired scores must be accuracies in 0..1, not percent; divide by 100.")
    return a, b


# ------------------------------------------------------------------ pieces
def _pts(x: float) -> float:
    """0..1 accuracy (or difference) -> points, without float noise of the 1/3 steps."""
    return round(float(x) * POINTS, PTS_DECIMALS)


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Statistic of both resampling tests: mean(y - x) along `axis` (vectorised)."""
    return np.mean(y, axis=axis) - np.mean(x, axis=axis)


def bootstrap_interval(
    a: np.ndarray, b: np.ndarray, n_boot: int, seed: int, level: float
) -> tuple[float, float, str]:
    """BCa interval of mean(b - a) in points, resampling questions (pairs kept together).

    All differences identical: BCa is undefined (nan), the interval is the point itself.
    """
    d = b - a
    if np.ptp(d) <= DEGENERATE_TOL:
        diff = _pts(d.mean())
        return diff, diff, "all paired differences are identical: the interval is the point"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.DegenerateDataWarning)
        res = st.bootstrap((a, b), _mean_diff, paired=True, method="BCa", n_resamples=n_boot,
                           confidence_level=level, random_state=np.random.default_rng(seed),
                           vectorized=True, batch=RESAMPLE_BATCH)
    low, high = res.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):  # e.g. every resample equal: fall back
        low, high = np.percentile(res.bootstrap_distribution, [50 * (1 - level), 50 * (1 + level)])
        return _pts(low), _pts(high), "BCa undefined here: percentile interval"
    return _pts(low), _pts(high), ""


def permutation_p(a: np.ndarray, b: np.ndarray, n_perm: int, seed: int) -> float:
    """Two-sided paired permutation p of mean(b - a): swaps a_i <-> b_i (a sign flip of d_i).

    Exact enumeration when 2**n <= n_perm (scipy decides).
    """
    res = st.permutation_test((a, b), _mean_diff, permutation_type="samples", vectorized=True,
                              n_resamples=n_perm, random_state=np.random.default_rng(seed),
                              batch=RESAMPLE_BATCH)
    return float(res.pvalue)


def permutation_p_floor(n_perm: int) -> float:
    """Smallest p `permutation_p` can return with n_perm random resamples: 2 / (n_perm + 1).

    scipy counts the observed statistic as one resample, (k + 1) / (n_perm + 1) per side,
    and doubles the smaller side. A p at this floor only says "at most this".
    """
    return 2.0 / (n_perm + 1)


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """Exact McNemar p on right/wrong (acc > 0): binomial test of the discordant pairs."""
    ra, rb = a > 0, b > 0
    table = [[np.sum(ra & rb), np.sum(ra & ~rb)], [np.sum(~ra & rb), np.sum(~ra & ~rb)]]
    return float(mcnemar(table, exact=True).pvalue)


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Wilcoxon signed-rank p (zeros split between ranks); nan when every difference is 0."""
    d = b - a
    if not np.any(np.abs(d) > DEGENERATE_TOL):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "exact p unavailable with ties" notes
        return float(st.wilcoxon(d, zero_method="zsplit").pvalue)


def tost_p(a: np.ndarray, b: np.ndarray, margin: float) -> float:
    """TOST p that |mean(b - a)| < margin (points), paired t on the differences.

    With zero variance the tests are degenerate: p = 0 inside the margin, else 1.
    """
    d = b - a
    if np.ptp(d) <= DEGENERATE_TOL:
        return 0.0 if abs(d.mean() * POINTS) < margin else 1.0
    p, _, _ = ttost_paired(b, a, -margin / POINTS, margin / POINTS)
    return float(p)


def verdict(p_adj: float, tost_p: float, diff: float, alpha: float = 0.05, margin: float = 1.0) -> str:
    """'better' / 'worse' (B vs A) if p_adj < alpha; 'equivalent (±δ)' if TOST p < alpha; else 'inconclusive'."""
    if p_adj < alpha:  # nan compares False: never significant
        return "better" if diff > 0 else "worse"
    if tost_p < alpha:
        return f"equivalent (±{margin:.1f})"
    return "inconclusive"


# ------------------------------------------------------------------ paired
def compare_paired(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    *,
    n_boot: int = 10000,
    n_perm: int = 10000,
    seed: int = 0,
    alpha: float = 0.05,
    equivalence_margin: float = 1.0,
    power: float = 0.8,
) -> dict[str, Any]:
    """Compare system B with A on the same questions (scores 0..1, aligned by question).

    Returns a dict in points: diff = mean(b - a) * 100, BCa interval (level 1 - alpha),
    permutation p, McNemar, Wilcoxon and TOST p, SD of differences, MDE at `power`
    and this n, n needed for delta = equivalence_margin. `p_adj` equals `p` and
    `verdict` uses it (a family of one); `run_stats` replaces both after adjustment.
    """
    a, b = _check_pair(scores_a, scores_b)
    n = a.size
    diff = _pts((b - a).mean())
    low, high, note = bootstrap_interval(a, b, n_boot, seed, 1 - alpha)
    p = permutation_p(a, b, n_perm, seed)
    degenerate = np.ptp(b - a) <= DEGENERATE_TOL  # float noise of "constant" differences
    sd = 0.0 if degenerate else sd_paired(a, b)
    t_p = tost_p(a, b, equivalence_margin)
    return {
        "mode": "paired",
        "n": n,
        "acc_a": _pts(a.mean()),
        "acc_b": _pts(b.mean()),
        "diff": diff,
        "ci_low": low,
        "ci_high": high,
        "p": p,
        "p_adj": p,
        "mcnemar_p": mcnemar_p(a, b),
        "wilcoxon_p": wilcoxon_p(a, b),
        "tost_p": t_p,
        "sd_diff": sd,
        "mde": mde_paired(sd, n, alpha, power),
        "n_needed": n_needed_paired(sd, equivalence_margin, alpha, power),
        "verdict": verdict(p, t_p, diff, alpha, equivalence_margin),
        "approximate": False,
        "note": note,
    }


# ------------------------------------------------------------------ summary only
def _se_diff(p1: float, p2: float, n1: int, n2: int, rho: float) -> float:
    """SE of p2 - p1 (0..1) for binomial-variance arms with correlation rho between them."""
    v1, v2 = p1 * (1 - p1) / n1, p2 * (1 - p2) / n2
    return math.sqrt(max(v1 + v2 - 2 * rho * math.sqrt(v1 * v2), 0.0))


def _check_summary(acc_a: float, acc_b: float, n_a: int, n_b: int) -> None:
    if not (0 <= acc_a <= POINTS and 0 <= acc_b <= POINTS):
        raise KitError(f"Summary accuracies must be percentages in 0..100; got {acc_a} and {acc_b}.")
    if min(n_a, n_b) < MIN_N:
        raise KitError(f"Summary n must be at least {MIN_N} questions; got {n_a} and {n_b}.")


def compare_summary(
    acc_a: float,
    acc_b: float,
    n: int,
    *,
    n_b: int | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    equivalence_margin: float = 1.0,
) -> dict[str, Any]:
    """Compare two systems known only by accuracy (percent) and n: APPROXIMATE.

    Why approximate: without per-question scores the pairing is unknown, so the
    difference is tested as two independent proportions (Wald z, unpooled;
    statsmodels `test_proportions_2indep` / `confint_proportions_2indep` /
    `tost_proportions_2indep`). Two things make this conservative for real runs:
    (1) both systems answer the SAME questions, whose scores correlate (rho about
    0.3-0.8), which shrinks Var(diff) = v_a + v_b - 2 rho sqrt(v_a v_b);
    (2) VQA accuracy takes values in {0, 1/3, 2/3, 1}, whose variance is at most
    the binomial p(1 - p) used here. The `*_rho` keys show what the interval and p
    would be for rho in RHO_RANGE (normal approximation); the truth is unknowable
    from summaries. MDE and n needed use the independent-arms normal power.
    """
    n_b = n if n_b is None else n_b
    _check_summary(acc_a, acc_b, n, n_b)
    p1, p2 = acc_a / POINTS, acc_b / POINTS
    diff = acc_b - acc_a
    # group 1 = B, group 2 = A, so statsmodels' "diff" is B - A
    counts = (p2 * n_b, n_b, p1 * n)
    with warnings.catch_warnings():  # ratio/odds ratio of an arm at 0 %: unused here
        warnings.simplefilter("ignore", RuntimeWarning)
        test = smp.test_proportions_2indep(*counts, n, method="wald", compare="diff")
        low, high = smp.confint_proportions_2indep(*counts, n, method="wald", compare="diff",
                                                   alpha=alpha)
        tost = smp.tost_proportions_2indep(*counts, n, -equivalence_margin / POINTS,
                                           equivalence_margin / POINTS, method="wald",
                                           compare="diff")
    z = st.norm.isf(alpha / 2)
    se_rho = [_se_diff(p1, p2, n, n_b, rho) for rho in RHO_RANGE]  # wide (0.3) then narrow (0.8)
    hw = [float(z * se * POINTS) for se in se_rho]
    p_rho = [float(2 * st.norm.sf(abs(p2 - p1) / se)) if se > 0 else math.nan for se in se_rho]
    sd_arm = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2) * POINTS  # per-arm SD, points
    es = NormalIndPower().solve_power(effect_size=None, nobs1=min(n, n_b), alpha=alpha, power=power)
    n_need = (NormalIndPower().solve_power(effect_size=equivalence_margin / sd_arm, nobs1=None,
                                           alpha=alpha, power=power)
              if sd_arm > 0 and equivalence_margin > 0 else math.nan)
    # arms at 0 or 100 percent have no variance: the difference is then certain
    p = float(test.pvalue) if np.isfinite(test.pvalue) else float(diff == 0)
    t_p = float(tost.pvalue) if np.isfinite(tost.pvalue) else (0.0 if abs(diff) < equivalence_margin
                                                                else 1.0)
    return {
        "mode": "summary",
        "approximate": True,
        "n": int(min(n, n_b)),
        "acc_a": float(acc_a),
        "acc_b": float(acc_b),
        "diff": float(diff),
        "ci_low": float(low * POINTS),
        "ci_high": float(high * POINTS),
        "p": p,
        "p_adj": p,
        "tost_p": t_p,
        "ci_halfwidth_rho": (hw[1], hw[0]),
        "ci_low_rho": (diff - hw[0], diff - hw[1]),
        "ci_high_rho": (diff + hw[1], diff + hw[0]),
        "p_range": (p_rho[1], p_rho[0]),
        "rho_range": RHO_RANGE,
        "mcnemar_p": math.nan,
        "wilcoxon_p": math.nan,
        "sd_diff": math.nan,
        "mde": float(es) * sd_arm,
        "n_needed": float(math.ceil(n_need)) if np.isfinite(n_need) else math.nan,
        "verdict": verdict(p, t_p, diff, alpha, equivalence_margin),
        "note": _summary_note(diff, hw, p_rho),
    }


def _summary_note(diff: float, hw: Sequence[float], p_rho: Sequence[float]) -> str:
    """The approximate-mode note of comparisons.csv, with the interval and p over RHO_RANGE.

    hw, p_rho: half-width (points) and p at rho = RHO_RANGE[0] (wide) and RHO_RANGE[1] (narrow).
    """
    lo, hi = RHO_RANGE
    return (f"APPROXIMATE, summary only: independent-proportions test (conservative for paired data); "
            f"if paired with correlation {lo}-{hi}: 95% CI [{diff - hw[0]:+.1f}, {diff + hw[0]:+.1f}] to "
            f"[{diff - hw[1]:+.1f}, {diff + hw[1]:+.1f}], p {p_rho[0]:.3g} to {p_rho[1]:.3g}")


# ------------------------------------------------------------------ multiplicity
def adjust(pvalues: Sequence[float], method: Correction = "holm") -> np.ndarray:
    """Adjusted p over one family (statsmodels `multipletests`); NaN entries stay NaN.

    holm: family-wise error (Holm step-down); fdr_bh: false discovery rate (Benjamini–Hochberg).
    """
    if method not in ("holm", "fdr_bh"):
        raise KitError(f"correction={method!r} is not supported; choose 'holm' or 'fdr_bh'.")
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method=method)[1]
    return out
