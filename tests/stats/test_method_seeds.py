"""Method claims over training seeds (icl_kit.stats.seeds): the mean squares against statsmodels' ANOVA, the
degenerate cases against scipy's paired t, the null rate against the tests of one checkpoint, and the rows
run_stats makes of a run with train.seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from null_rate import ALPHA, rate_bound
from scipy import stats as st

from icl_kit.core.config import StatsConfig
from icl_kit.core.errors import KitError
from icl_kit.stats.paired import compare_paired
from icl_kit.stats.run import run_stats
from icl_kit.stats.seeds import compare_seeds, grand_mean_variance, mean_squares, seed_methods


def test_mean_squares_equal_statsmodels_two_way_anova():
    d = np.random.default_rng(0).normal(size=(4, 30)) + np.arange(4)[:, None] * 0.3
    frame = pd.DataFrame([(s, q, d[s, q]) for s in range(4) for q in range(30)], columns=["seed", "q", "d"])
    table = sm.stats.anova_lm(smf.ols("d ~ C(seed) + C(q)", frame).fit())
    assert mean_squares(d) == pytest.approx(tuple(table["mean_sq"]), rel=1e-12)


def test_identical_seeds_give_the_paired_t_of_the_questions():
    """Seeds that agree on every question leave only the questions: the one-sample t of the differences."""
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 4, 80) / 3, rng.integers(0, 4, 80) / 3
    res = compare_seeds(a, np.stack([b, b, b]))
    assert res["p"] == pytest.approx(st.ttest_1samp(b - a, 0).pvalue, rel=1e-10)
    assert res["dof"] == pytest.approx(79)
    half = st.t.ppf(0.975, 79) * (b - a).std(ddof=1) / np.sqrt(80) * 100
    assert (res["ci_low"], res["ci_high"]) == pytest.approx(((b - a).mean() * 100 - half, (b - a).mean() * 100 + half))


def test_seed_shifts_alone_give_the_t_of_the_seed_means():
    """Every question moved by its seed's shift only: the variance is the seeds' (S - 1 df), by hand."""
    shifts = np.array([0.01, 0.03, -0.01])
    d = np.repeat(shifts[:, None], 50, axis=1)
    d[:, 0] += 1e-9 * np.array([1, -1, 0])  # a hair of residual keeps every mean square finite
    var, dof, comp = grand_mean_variance(d)
    assert dof == pytest.approx(2, rel=1e-6)
    assert var == pytest.approx(shifts.var(ddof=1) / 3, rel=1e-6)
    assert comp["seed"] == pytest.approx(shifts.var(ddof=1), rel=1e-6)


def _method_world(rng: np.random.Generator, n: int, seeds: int, seed_sd: float) -> tuple[np.ndarray, np.ndarray]:
    """A baseline A and a method B that is, over its seeds, exactly as good: question q is answered with chance
    p_q, each training seed shifts every chance of B by its own N(0, seed_sd) (a run that happens to be better
    or worse), so the method's mean difference is 0 while each checkpoint's is not. As real checkpoints do, B
    answers most questions as A does: 80% of its draws reuse A's."""
    p = rng.uniform(0.2, 0.8, n)
    shift = rng.normal(0, seed_sd, seeds)
    u = rng.random(n)
    a = (u < p).astype(float)
    ub = np.where(rng.random((seeds, n)) < 0.8, u, rng.random((seeds, n)))
    b = (ub < np.clip(p + shift[:, None], 0, 1)).astype(float)
    return a, b


def test_method_null_rate_holds_where_checkpoint_tests_do_not():
    """Seeds that differ by about 3 points: the method test rejects a true method null at most alpha; the test of
    one checkpoint, read as a method claim, and the seeds pooled as if they were more questions, reject far more
    (each calling the kit's own compare_paired)."""
    rng = np.random.default_rng(7)
    n_sims, method, one, pooled = 200, 0, 0, 0
    for _ in range(n_sims):
        a, b = _method_world(rng, 400, 3, 0.03)
        method += compare_seeds(a, b)["p"] < ALPHA
        one += compare_paired(a, b[0], n_boot=0, n_perm=0)["p"] < ALPHA
        pooled += compare_paired(np.tile(a, 3), b.ravel(), n_boot=0, n_perm=0)["p"] < ALPHA
    assert method / n_sims <= rate_bound(n_sims)
    assert one / n_sims > 0.2 and pooled / n_sims > 0.2


def test_method_detects_a_gain_every_seed_shares():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.2, 0.7, 1000)
    a = (rng.random(1000) < p).astype(float)
    b = (rng.random((3, 1000)) < p + 0.1).astype(float)
    res = compare_seeds(a, b)
    assert res["p"] < 0.01 and res["ci_low"] > 0 and res["n_seeds"] == 3


def test_one_seed_is_no_method():
    with pytest.raises(KitError, match="at least 2 seeds"):
        compare_seeds(np.zeros(50), np.ones((1, 50)))


# ------------------------------------------------------------------ the run's rows
def _seeded_predictions(rng: np.random.Generator, n: int = 60) -> pd.DataFrame:
    names = ["random", "similarity"] + [f"{m}_seed{s}" for m in ("sft_epoch1", "grpo_epoch1", "grpo_epoch2")
                                        for s in range(3)]
    rows = []
    for shot in (1, 2):
        acc = rng.integers(0, 4, size=(len(names), n)) / 3
        rows += [{"system": s, "epoch": int(s.split("_seed")[0][-1]) - 1 if "epoch" in s else None, "shot": shot,
                  "question_id": i, "acc": float(acc[j, i])} for j, s in enumerate(names) for i in range(n)]
    return pd.DataFrame(rows)


def test_seed_methods_need_two_seeds():
    assert seed_methods(["a_seed0", "a_seed1", "b_seed0", "random"]) == {"a": {0: "a_seed0", 1: "a_seed1"}}


def test_run_tests_named_methods_over_the_seeds_and_each_checkpoint_alone():
    pred = _seeded_predictions(np.random.default_rng(5))
    cfg = StatsConfig(n_boot=100, n_perm=200, baseline="similarity",
                      comparisons=[{"a": "sft_epoch1", "b": "grpo_epoch2", "label": "GRPO after SFT"}])
    df = run_stats(pred, cfg)
    claim = df[df.label == "GRPO after SFT"]
    assert list(claim.kind) == ["method"] * 3 and (claim["mode"] == "seeds").all() and list(claim.shot) == [1, 2, -1]
    assert (claim.n_seeds == 3).all() and (claim.family == "primary").all()
    pooled = claim[claim.shot == -1].iloc[0]  # over every shot: each (seed, question) averaged over the shots
    assert pooled.shots == "1,2" and pooled["diff"] == pytest.approx(claim[claim.shot > 0]["diff"].mean())
    assert pooled.ci_low_family < pooled.ci_low < pooled.ci_high < pooled.ci_high_family  # Bonferroni over m = 3
    shot1 = claim[claim.shot == 1].iloc[0]
    scores = pred[pred.shot == 1].pivot(index="question_id", columns="system", values="acc")
    a = scores[[f"sft_epoch1_seed{s}" for s in range(3)]].to_numpy().T  # paired by seed
    b = scores[[f"grpo_epoch2_seed{s}" for s in range(3)]].to_numpy().T
    assert shot1["p"] == pytest.approx(compare_seeds(a, b)["p"])
    methods = df[df.family == "method"]
    assert set(methods.system_b) == {"sft_epoch1", "grpo_epoch1", "grpo_epoch2"} and (methods.kind ==
                                                                                      "method_vs_baseline").all()
    checkpoints = df[(df.kind == "vs_baseline")]
    assert "grpo_epoch2_seed1" in set(checkpoints.system_b) and (checkpoints["mode"] == "paired").all()
    with pytest.raises(KitError, match="no results"):
        run_stats(pred, StatsConfig(comparisons=[{"a": "similarity", "b": "rce_epoch1"}]))
