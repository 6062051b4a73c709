"""Paired tests, intervals, equivalence, multiplicity: is system B really better than A?

Inputs are per-question scores (official VQA accuracy, 0..1) aligned by question; every
number returned is in POINTS (percent units), so +0.6 means 0.6 accuracy points. At n = 100
the interval of a paired difference is typically +-4..6 points: the point of this module
is to say so.

- p: two-sided sign-flip test of mean(b - a), EXACT on the 1/30 score lattice
  (`icl_kit.stats.exact`, which says why scipy's permutation_test is not used); scores rounded
  outside the kit (0.3333) are first read back onto the lattice (`snap_to_lattice`, p_method says so)
- interval of the difference at 1 - alpha, and at 1 - 2 alpha for TOST
  (`icl_kit.stats.diff_intervals`: t_changed, the default, score, t, BCa or percentile)
- sign test: exact binomial test of improved vs worsened questions (`scipy.stats.binomtest`),
  which uses the direction, unlike McNemar on right/wrong
- Wilcoxon signed-rank (zsplit), for reference
- equivalence: TOST with margin delta, each one-sided test exact under the differences tilted to
  the margin (`icl_kit.stats.tost`; no change at all: the exact bound (1 - delta)^n); declared only
  when the 1 - 2 alpha interval also lies inside +-delta
- power: MDE at this n and n needed, at alpha / family_size (`icl_kit.stats.power`)
- multiplicity over a family of comparisons: Holm or BH (`adjust`)
- clusters (`stats.cluster: image`): whole images flip sign, intervals and power are cluster-robust
  (`icl_kit.stats.cluster`)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from icl_kit.core.config import StatsConfig
from icl_kit.core.errors import KitError
from icl_kit.stats.cluster import cluster_codes, cluster_note, clustered_tost, pseudo_values
from icl_kit.stats.diff_intervals import DEGENERATE_TOL, IntervalMethod, check_method, diff_intervals, pts
from icl_kit.stats.exact import LATTICE, LATTICE_TOL, SNAPPED, lattice_ints, sign_flip_p, snap_to_lattice
from icl_kit.stats.power import MIN_N, mde_paired, n_needed_paired, sd_paired
from icl_kit.stats.summary import compare_summary
from icl_kit.stats.tost import tost_p
from icl_kit.stats.verdict import p_ci_disagree, verdict

__all__ = ["adjust", "align_scores", "compare_paired", "compare_summary", "sign_test", "tost_p", "verdict"]

DEFAULTS = StatsConfig()  # config is the only source of a default
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


def snap_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(a, b, snapped): both read back onto the 1/30 lattice when every score of both lies within
    `exact.SNAP_TOL` of it (scores rounded outside the kit); snapped says whether any score moved."""
    sa, sb = snap_to_lattice(a), snap_to_lattice(b)
    if sa is None or sb is None:
        return a, b, False
    moved = max(np.abs(sa - a).max(), np.abs(sb - b).max()) * LATTICE > LATTICE_TOL
    return sa, sb, bool(moved)


def _int_diffs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """b - a as lattice integers when possible (exact signs), else the float differences."""
    ka, kb = lattice_ints(a), lattice_ints(b)
    return kb - ka if ka is not None and kb is not None else np.where(np.abs(b - a) <= DEGENERATE_TOL, 0.0, b - a)


# ------------------------------------------------------------------ pieces
def sign_test(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int]:
    """(p, improved, worsened): exact two-sided binomial test that a changed question is as likely
    to improve (b > a) as to worsen (b < a); questions with b == a carry no information. nan if none changed."""
    d = _int_diffs(a, b)
    up, down = int(np.count_nonzero(d > 0)), int(np.count_nonzero(d < 0))
    p = float(st.binomtest(up, up + down, 0.5).pvalue) if up + down else math.nan
    return p, up, down


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Wilcoxon signed-rank p (zeros split between ranks); nan when every difference is 0."""
    d = b - a
    if not np.any(np.abs(d) > DEGENERATE_TOL):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "exact p unavailable with ties" notes
        return float(st.wilcoxon(d, zero_method="zsplit").pvalue)


def power_fields(sd: float, n: int, diff: float, margin: float, alpha_power: float, power: float,
                 per_unit: float = 1.0) -> dict:
    """MDE at n units of SD sd, units needed to detect `margin` and to confirm |diff|, all at alpha_power
    (= alpha / m); the units needed are returned times `per_unit` questions (clusters: the mean size), rounded up."""
    def questions(units: float) -> float:
        return float(math.ceil(round(units * per_unit, 9))) if math.isfinite(units) else units

    noisy = sd > 0
    return {"mde": mde_paired(sd, n, alpha_power, power) if noisy else math.nan,
            "n_needed": questions(n_needed_paired(sd, margin, alpha_power, power)),
            "n_needed_observed": questions(n_needed_paired(sd, abs(diff), alpha_power, power)),
            "alpha_power": alpha_power}


# ------------------------------------------------------------------ paired
def compare_paired(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
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
    """Compare system B with A on the same questions (scores 0..1, aligned by question).

    Returns a dict in points: diff = mean(b - a) * 100, its interval at 1 - alpha (`ci_*`), at
    1 - alpha / family_size (`ci_*_family`: Bonferroni, simultaneous over the family, the width at which an
    interval and the family-adjusted verdict can be read together) and at 1 - 2 alpha (`tost_*`, the TOST
    interval), the exact sign-flip p (`p_method` says
    'exact' or which Monte Carlo, with ' (snapped to 1/30)' when rounded scores were read back onto the
    lattice: then every number is computed from the snapped scores), sign test (improved vs worsened),
    Wilcoxon and TOST p (`icl_kit.stats.tost`), SD of differences, MDE, n needed for delta =
    equivalence_margin and for the observed |diff| (exploratory: an observed-power estimate), all
    at alpha / family_size. `p_adj`, `tost_p_adj` equal the raw ones and `verdict` uses them (a
    family of one); `run_stats` replaces them after adjusting within each family. `clusters` (one id per
    question, e.g. its image): p flips whole clusters, the interval, MDE, n needed and TOST are cluster-robust
    (`icl_kit.stats.cluster`), `n_clusters` says how many (NaN without clusters). `p_ci_disagree`: the exact p
    and the 1 - alpha interval say different things about 0 (`icl_kit.stats.verdict.p_ci_disagree`).
    """
    check_method(interval)
    a, b, snapped = snap_pair(*_check_pair(scores_a, scores_b))
    codes = cluster_codes(clusters, a.size)
    p, method = sign_flip_p(a, b, n_perm, seed, clusters=codes)
    return paired_fields(a, b, codes, (p, method + (SNAPPED if snapped else "")), tost_p(a, b, equivalence_margin),
                         n_boot=n_boot, seed=seed, alpha=alpha, equivalence_margin=equivalence_margin, power=power,
                         interval=interval, family_size=family_size)


def paired_fields(
    a: np.ndarray, b: np.ndarray, codes: np.ndarray | None, test: tuple[float, str], tost: tuple[float, str], *,
    n_boot: int, seed: int, alpha: float, equivalence_margin: float, power: float, interval: IntervalMethod,
    family_size: int, lead_note: str = "",
) -> dict[str, Any]:
    """The row of `compare_paired` for per-question scores a, b (0..1) given their sign-flip (p, p_method) and
    (TOST p, note): intervals, sign test, SD, power and verdict, cluster-robust when `codes` are given. Shared
    with the pooled rows (`icl_kit.stats.pooled`), which bring their own exact p and TOST."""
    n = a.size
    ua, ub = (a, b) if codes is None else (pseudo_values(a, codes), pseudo_values(b, codes))  # the units
    diff = pts((b - a).mean())
    levels = (1 - alpha, 1 - 2 * alpha, 1 - alpha / family_size)  # the last: simultaneous over the family
    changed = None if codes is None else int(np.count_nonzero(  # clusters holding a changed question
        np.bincount(codes, weights=(np.abs(b - a) > DEGENERATE_TOL).astype(float))))
    ((low, high), (t_low, t_high), (f_low, f_high)), note = diff_intervals(ua, ub, interval, levels, n_boot, seed,
                                                                          changed)
    p, method = test
    sign_p, up, down = sign_test(a, b)
    sd = 0.0 if np.ptp(b - a) <= DEGENERATE_TOL else sd_paired(a, b)
    sd_units = sd if codes is None else 0.0 if np.ptp(ub - ua) <= DEGENERATE_TOL else sd_paired(ua, ub)
    t_p, t_note = tost
    t_p = t_p if codes is None else clustered_tost(t_p, ua, ub, n, equivalence_margin)
    c_note = "" if codes is None else cluster_note(b - a, ub - ua)
    note = "; ".join(x for x in (lead_note, c_note, note, t_note) if x)
    return {
        "mode": "paired", "n": n, "acc_a": pts(a.mean()), "acc_b": pts(b.mean()), "diff": diff,
        "ci_low": low, "ci_high": high, "tost_low": t_low, "tost_high": t_high, "ci_low_family": f_low,
        "ci_high_family": f_high, "p": p, "p_adj": p, "p_method": method, "tost_p": t_p, "tost_p_adj": t_p,
        "sign_p": sign_p, "n_improved": up, "n_worsened": down, "wilcoxon_p": wilcoxon_p(a, b), "sd_diff": sd,
        **power_fields(sd_units, ua.size, diff, equivalence_margin, alpha / family_size, power, n / ua.size),
        "n_clusters": math.nan if codes is None else ua.size,
        "verdict": verdict(p, t_p, diff, alpha, equivalence_margin, t_low, t_high),
        "p_ci_disagree": p_ci_disagree(p, low, high, alpha), "interval": interval,
        "approximate": not method.startswith("exact"), "note": note,
    }


# ------------------------------------------------------------------ multiplicity
def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p of finite p values: statsmodels `multipletests(p, method="holm")[1]`, the
    same operations in the same order (so the same bits), without the full `gc.collect()` statsmodels runs
    on every Holm call (about 0.2 s in a process that has torch loaded, once per family)."""
    order = np.argsort(p)
    adjusted = np.maximum.accumulate(np.take(p, order) * np.arange(p.size, 0, -1))
    adjusted[adjusted > 1] = 1
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out


def adjust(pvalues: Sequence[float], method: Correction = DEFAULTS.correction) -> np.ndarray:
    """Adjusted p over one family (Holm as `multipletests` computes it, fdr_bh by `multipletests`); NaN
    entries stay NaN.

    holm: family-wise error (Holm step-down); fdr_bh: false discovery rate (Benjamini–Hochberg).
    """
    if method not in ("holm", "fdr_bh"):
        raise KitError(f"correction={method!r} is not supported; choose 'holm' or 'fdr_bh'.")
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = holm(p[ok]) if method == "holm" else multipletests(p[ok], method=method)[1]
    return out
