"""Method claims: B vs A over the training seeds of `train.seeds`, questions paired, seeds as replicates.

A *checkpoint* claim ("grpo_epoch5_seed0 beats similarity") is about one trained file: the only chance in it
is which questions were asked, and the per-question tests (`icl_kit.stats.paired`) answer it. A *method*
claim ("GRPO after SFT beats SFT": the same params, trained with any seed) has a second source of chance, the
training run itself (identical RL runs are known to differ by about a point), and one checkpoint cannot
answer it however many questions it is tested on.

With S seeds and the same n questions for each, d[s, q] = B_s(q) - A_s(q) (A_s = A when A is not seeded, e.g.
a baseline; both seeded: paired by seed, as GRPO seed s continues SFT seed s). The model is two crossed
random effects, d[s, q] = mu + seed_s + question_q + e[s, q], and the estimate of mu is the grand mean. Its
variance var_seed / S + var_question / n + var_e / (S n) comes from the two-way ANOVA mean squares
(MS_seed on S - 1, MS_question on n - 1, MS_residual on (S - 1)(n - 1) degrees of freedom) with each variance
component floored at 0, and t = mean / sqrt(variance) is referred to Student's t on Satterthwaite's degrees of
freedom for that combination of mean squares: the quasi-F of Clark (1973), "The language-as-fixed-effect
fallacy", for items crossed with subjects. When the seeds do not differ beyond what the questions explain,
the test is the paired t on the seed-averaged differences; when they do, the degrees of freedom fall towards
S - 1 and the interval widens: three seeds that disagree by a point cannot make a half-point claim.

The seed component is what the per-question tests leave out: pooling every seed's answers as if they were
more questions (or testing one seed) rejects a true null far more often than alpha when seeds differ
(tests/stats/test_method_seeds.py builds that case). Units: scores in 0..1, differences returned in points.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy import stats as sps

from icl_kit.core.errors import KitError
from icl_kit.core.names import POINTS, method_of, seed_of
from icl_kit.stats.power import MIN_N

METHOD_P = "seeds_quasi_t"  # comparisons.csv p_method / interval of a method row
SEEDS_MODE = "seeds"  # comparisons.csv mode of a method row (others: paired, summary)
MIN_SEEDS = 2


def seed_methods(systems: Iterable[str]) -> dict[str, dict[int, str]]:
    """{method: {seed: system}} of the methods two or more seeds were trained for ('grpo_epoch5' ->
    {0: 'grpo_epoch5_seed0', 1: 'grpo_epoch5_seed1', ...}), seeds in order."""
    out: dict[str, dict[int, str]] = {}
    for s in systems:
        seed = seed_of(s)
        if seed is not None:
            out.setdefault(method_of(s), {})[seed] = str(s)
    return {m: dict(sorted(by.items())) for m, by in sorted(out.items()) if len(by) >= MIN_SEEDS}


def mean_squares(d: np.ndarray) -> tuple[float, float, float]:
    """(MS_seed, MS_question, MS_residual) of the two-way layout d[seed, question] (one value per cell)."""
    S, n = d.shape
    grand, by_seed, by_q = d.mean(), d.mean(axis=1), d.mean(axis=0)
    ms_seed = n * float(((by_seed - grand) ** 2).sum()) / (S - 1)
    ms_q = S * float(((by_q - grand) ** 2).sum()) / (n - 1)
    resid = d - by_seed[:, None] - by_q[None, :] + grand
    ms_e = float((resid ** 2).sum()) / ((S - 1) * (n - 1))
    return ms_seed, ms_q, ms_e


def grand_mean_variance(d: np.ndarray) -> tuple[float, float, dict[str, float]]:
    """(variance of d's grand mean, Satterthwaite degrees of freedom, the variance components) under crossed
    random seed and question effects, each component floored at 0 (module doc)."""
    S, n = d.shape
    ms_seed, ms_q, ms_e = mean_squares(d)
    seed_var, q_var = max(0.0, (ms_seed - ms_e) / n), max(0.0, (ms_q - ms_e) / S)
    # variance * S * n as a combination of mean squares: the terms of the components kept
    coef = np.array([seed_var > 0, q_var > 0, 0.0], float)
    coef[2] = 1.0 - coef[0] - coef[1]  # MS_e's own term: +1, 0 or -1
    ms, df = np.array([ms_seed, ms_q, ms_e]), np.array([S - 1, n - 1, (S - 1) * (n - 1)], float)
    total = float(coef @ ms)
    terms = (coef * ms) ** 2 / df
    dof = total ** 2 / float(terms.sum()) if total > 0 else float("nan")
    return total / (S * n), dof, {"seed": seed_var, "question": q_var, "residual": ms_e}


def compare_seeds(scores_a: Any, scores_b: Any, *, alpha: float = 0.05, power: float = 0.8,
                  family_size: int = 1) -> dict[str, Any]:
    """B vs A as methods: `scores_b` (S seeds, n questions) against `scores_a` of the same shape (paired by
    seed) or of one row / shape (n,) (A not seeded); a question's score may be its mean over shots (the pooled
    row of a claim over every shot). Two-sided quasi-t p and 1 - alpha interval in points (and the interval at
    alpha / family_size);
    `mde` the difference detected with `power` at alpha / family_size on the same degrees of freedom (more
    questions do not shrink the seeds' share of the variance: only more seeds do)."""
    A, B = np.atleast_2d(np.asarray(scores_a, float)), np.atleast_2d(np.asarray(scores_b, float))
    if A.shape[0] == 1:
        A = np.repeat(A, B.shape[0], axis=0)  # A not seeded: the same scores against every seed of B
    if A.shape != B.shape or B.shape[0] < MIN_SEEDS or B.shape[1] < MIN_N:
        raise KitError(f"A method comparison needs at least {MIN_SEEDS} seeds and {MIN_N} questions with scores "
                       f"for both sides; got A {np.shape(scores_a)} and B {np.shape(scores_b)}.")
    d = B - A
    S, n = d.shape
    mean = float(d.mean())
    var, dof, comp = grand_mean_variance(d)
    if var > 0:
        se = var ** 0.5
        half = float(sps.t.ppf(1 - alpha / 2, dof)) * se
        p = float(2 * sps.t.sf(abs(mean) / se, dof))
        family_half = float(sps.t.ppf(1 - alpha / (2 * family_size), dof)) * se  # Bonferroni, as the others
        mde = (family_half / se + float(sps.t.ppf(power, dof))) * se * POINTS
    else:  # every difference equal: nothing varies, nothing to test against
        half, family_half, p, mde = 0.0, 0.0, 1.0 if mean == 0 else 0.0, float("nan")
    per_seed = d.mean(axis=1) * POINTS
    return {
        "n": n, "n_seeds": S, "acc_a": float(A.mean()) * POINTS, "acc_b": float(B.mean()) * POINTS,
        "diff": mean * POINTS, "ci_low": (mean - half) * POINTS, "ci_high": (mean + half) * POINTS, "p": p,
        "ci_low_family": (mean - family_half) * POINTS, "ci_high_family": (mean + family_half) * POINTS,
        "p_method": METHOD_P, "interval": METHOD_P, "mode": SEEDS_MODE, "sd_diff": float(d.std(ddof=1)) * POINTS,
        "dof": dof, "seed_sd": comp["seed"] ** 0.5 * POINTS, "mde": mde, "alpha_power": alpha / family_size,
        "per_seed": per_seed.tolist(),
        "n_improved": int((d.mean(axis=0) > 0).sum()), "n_worsened": int((d.mean(axis=0) < 0).sum()),
        "note": f"{S} seeds x {n} questions; per-seed differences "
                f"{', '.join(f'{x:+.1f}' for x in per_seed)} points; seed SD {comp['seed'] ** 0.5 * POINTS:.2f}, "
                f"{dof:.1f} df",
    }


def method_scores(name: str, methods: Mapping[str, Mapping[int, str]], seeds: Iterable[int]) -> list[str]:
    """The systems standing for `name` at each seed of `seeds`: its seeds' checkpoints for a method, the name
    itself (the same every seed) otherwise."""
    return [methods[name][s] for s in seeds] if name in methods else [name] * len(list(seeds))
