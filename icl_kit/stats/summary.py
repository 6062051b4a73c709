"""Two systems known only by accuracy (percent) and n: an APPROXIMATE comparison.

Without per-question scores the pairing is unknown, so the difference is tested as two
independent proportions (Wald z, unpooled; statsmodels `test_proportions_2indep` /
`confint_proportions_2indep` / `tost_proportions_2indep`). Two things make this conservative
for real runs: (1) both systems answer the SAME questions, whose scores correlate (rho about
0.3-0.8), which shrinks Var(diff) = v_a + v_b - 2 rho sqrt(v_a v_b); (2) VQA accuracy takes
values in 0..1 whose variance is at most the binomial p(1 - p) used here. The `*_rho` keys
show what the interval, p and n needed would be for rho in RHO_RANGE (normal approximation);
the truth is unknowable from summaries.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as st
from statsmodels.stats import proportion as smp
from statsmodels.stats.power import NormalIndPower

from icl_kit.core.config.params import ALPHA, POWER
from icl_kit.core.errors import KitError
from icl_kit.core.names import POINTS
from icl_kit.stats.power import MIN_N, n_needed_paired
from icl_kit.stats.verdict import p_ci_disagree, verdict

RHO_RANGE = (0.3, 0.8)  # paired correlations typical of two prompts on the same questions


def _se_diff(p1: float, p2: float, n1: int, n2: int, rho: float) -> float:
    """SE of p2 - p1 (0..1) for binomial-variance arms with correlation rho between them."""
    v1, v2 = p1 * (1 - p1) / n1, p2 * (1 - p2) / n2
    return math.sqrt(max(v1 + v2 - 2 * rho * math.sqrt(v1 * v2), 0.0))


def _check_summary(acc_a: float, acc_b: float, n_a: int, n_b: int) -> None:
    if 1 < max(acc_a, acc_b) <= POINTS and min(acc_a, acc_b) >= 0:
        raise KitError(f"Summary accuracies {acc_a} and {acc_b} look like percentages; pass fractions in 0..1, as "
                       f"compare_paired takes its scores ({acc_a / POINTS:g} and {acc_b / POINTS:g}).")
    if not (0 <= acc_a <= 1 and 0 <= acc_b <= 1):
        raise KitError(f"Summary accuracies must be fractions in 0..1; got {acc_a} and {acc_b}.")
    if min(n_a, n_b) < MIN_N:
        raise KitError(f"Summary n must be at least {MIN_N} questions; got {n_a} and {n_b}.")


def _n_needed_rho(p1: float, p2: float, delta: float, alpha: float, power: float) -> tuple[float, float]:
    """Questions needed for a PAIRED test of delta points at rho = 0.8 (fewest) and 0.3 (most)."""
    sd = [_se_diff(p1, p2, 1, 1, rho) * POINTS for rho in reversed(RHO_RANGE)]  # per-question SD of b - a
    return n_needed_paired(sd[0], delta, alpha, power), n_needed_paired(sd[1], delta, alpha, power)


def compare_summary(
    acc_a: float,
    acc_b: float,
    n: int,
    *,
    n_b: int | None = None,
    alpha: float = ALPHA,
    power: float = POWER,
    equivalence_margin: float = 1.0,
    family_size: int = 1,
) -> dict[str, Any]:
    """Compare two systems known only by accuracy (a FRACTION in 0..1, e.g. 0.642, the unit of `compare_paired`'s
    scores) and n: APPROXIMATE.

    Returns the keys of `compare_paired` in points, with `mode='summary'`, the interval, p and
    n needed over RHO_RANGE (`ci_*_rho`, `p_range`, `n_needed_rho`) and a note quoting them.
    MDE and `n_needed` use the independent-arms normal power (the conservative design) at
    alpha / family_size, the level the family's smallest p must reach.
    """
    n_b = n if n_b is None else n_b
    _check_summary(acc_a, acc_b, n, n_b)
    p1, p2 = float(acc_a), float(acc_b)
    diff = (p2 - p1) * POINTS
    counts = (p2 * n_b, n_b, p1 * n)  # group 1 = B, group 2 = A, so statsmodels' "diff" is B - A
    test, (low, high), (t_low, t_high), (f_low, f_high), tost = _wald_tests(
        counts, n, alpha, family_size, equivalence_margin)
    z = st.norm.isf(alpha / 2)
    se_rho = [_se_diff(p1, p2, n, n_b, rho) for rho in RHO_RANGE]  # wide (0.3) then narrow (0.8)
    hw = [float(z * se * POINTS) for se in se_rho]
    p_rho = [float(2 * st.norm.sf(abs(p2 - p1) / se)) if se > 0 else math.nan for se in se_rho]
    sd_arm = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2) * POINTS  # per-arm SD, points
    a_pow = alpha / family_size
    es = NormalIndPower().solve_power(effect_size=None, nobs1=min(n, n_b), alpha=a_pow, power=power)
    n_need = (NormalIndPower().solve_power(effect_size=equivalence_margin / sd_arm, nobs1=None, alpha=a_pow,
                                           power=power) if sd_arm > 0 and equivalence_margin > 0 else math.nan)
    n_rho = _n_needed_rho(p1, p2, equivalence_margin, a_pow, power)
    # arms at 0 or 100 percent have no variance: the difference is then certain
    p = float(test.pvalue) if np.isfinite(test.pvalue) else float(diff == 0)
    t_p = float(tost.pvalue) if np.isfinite(tost.pvalue) else (0.0 if abs(diff) < equivalence_margin else 1.0)
    return {
        "mode": "summary", "approximate": True, "n": int(min(n, n_b)), "acc_a": p1 * POINTS, "acc_b": p2 * POINTS,
        "diff": float(diff), "ci_low": float(low * POINTS), "ci_high": float(high * POINTS),
        "tost_low": float(t_low * POINTS), "tost_high": float(t_high * POINTS), "ci_low_family": float(f_low * POINTS),
        "ci_high_family": float(f_high * POINTS), "p": p, "p_adj": p,
        "p_method": "wald_independent", "tost_p": t_p, "tost_p_adj": t_p,
        "ci_halfwidth_rho": (hw[1], hw[0]), "ci_low_rho": (diff - hw[0], diff - hw[1]),
        "ci_high_rho": (diff + hw[1], diff + hw[0]), "p_range": (p_rho[1], p_rho[0]), "rho_range": RHO_RANGE,
        "n_needed_rho": n_rho, "n_needed_lo": n_rho[0], "n_needed_hi": n_rho[1],
        "sign_p": math.nan, "n_improved": math.nan, "n_worsened": math.nan,
        "wilcoxon_p": math.nan, "sd_diff": math.nan, "mde": float(es) * sd_arm,
        "n_needed": float(math.ceil(n_need)) if np.isfinite(n_need) else math.nan, "n_needed_observed": math.nan,
        "alpha_power": a_pow, "interval": "wald",
        "verdict": verdict(p, t_p, diff, alpha, equivalence_margin, t_low * POINTS, t_high * POINTS),
        "p_ci_disagree": p_ci_disagree(p, low * POINTS, high * POINTS, alpha),
        "note": _summary_note(diff, hw, p_rho, n_rho, equivalence_margin),
    }


def _wald_tests(counts: tuple, n: int, alpha: float, family_size: int, margin: float) -> tuple:
    """statsmodels' independent-arms Wald test, intervals at alpha, 2 alpha (TOST) and alpha / family_size, and TOST.

    counts = (successes of B, n of B, successes of A); n = n of A.
    """
    def interval(level_alpha: float) -> tuple[float, float]:
        return smp.confint_proportions_2indep(*counts, n, method="wald", compare="diff", alpha=level_alpha)

    with warnings.catch_warnings():  # ratio/odds ratio of an arm at 0 %: unused here
        warnings.simplefilter("ignore", RuntimeWarning)
        test = smp.test_proportions_2indep(*counts, n, method="wald", compare="diff")
        tost = smp.tost_proportions_2indep(*counts, n, -margin / POINTS, margin / POINTS,
                                           method="wald", compare="diff")
        return test, interval(alpha), interval(2 * alpha), interval(alpha / family_size), tost


def _summary_note(diff: float, hw: Sequence[float], p_rho: Sequence[float], n_rho: Sequence[float],
                  margin: float) -> str:
    """The approximate-mode note of comparisons.csv, with the interval, p and n needed over RHO_RANGE.

    hw, p_rho: half-width (points) and p at rho = RHO_RANGE[0] (wide) and RHO_RANGE[1] (narrow);
    n_rho: n needed at RHO_RANGE[1] (fewest) and RHO_RANGE[0] (most).
    """
    lo, hi = RHO_RANGE
    return (f"APPROXIMATE, summary only: independent-proportions test (conservative for paired data); "
            f"if paired with correlation {lo}-{hi}: CI [{diff - hw[0]:+.1f}, {diff + hw[0]:+.1f}] to "
            f"[{diff - hw[1]:+.1f}, {diff + hw[1]:+.1f}], p {p_rho[0]:.3g} to {p_rho[1]:.3g}, "
            f"n needed for {margin:g} point {n_rho[0]:.0f} to {n_rho[1]:.0f}")
