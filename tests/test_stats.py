"""Significance testing: closed forms, library references, calibration by simulation.

Simulations are vectorised (one array op over all simulated data sets); run
`pytest -s tests/test_stats.py` to see the simulated rates printed.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from icl_kit.core.config import StatsConfig
from icl_kit.core.errors import KitError
from icl_kit.stats.best_epoch import max_t_best_epoch
from icl_kit.stats.paired import (
    adjust,
    align_scores,
    compare_paired,
    compare_summary,
    mcnemar_p,
    permutation_p,
    permutation_p_floor,
    verdict,
)
from icl_kit.stats.power import mde_paired, n_needed_paired, power_curve
from icl_kit.stats.run import honest_number, run_stats, write_outputs
from icl_kit.stats.simulate import simulate_scores

ALPHA = 0.05
N_SIMS = 4000  # rate SE at 0.05 is 0.0034; at 0.8 it is 0.0063
N = 100
FAST = {"n_boot": 500, "n_perm": 500}


def _sign_flip_pvalues(d: np.ndarray, signs: np.ndarray, exact: bool = False) -> np.ndarray:
    """Two-sided sign-flip p for each row of d (S, n) with shared flips (P, n), as scipy counts.

    Random flips: p = min(1, 2 * min(#{T* >= T} + 1, #{T* <= T} + 1) / (P + 1)), T = mean(d);
    all 2^n flips (exact): the same without the +1s.
    """
    obs = d.mean(axis=1)  # (S,)
    null = signs @ d.T / d.shape[1]  # (P, S)
    tol = 1e-9
    extra = 0 if exact else 1
    ge = (null >= obs - tol).sum(axis=0) + extra
    le = (null <= obs + tol).sum(axis=0) + extra
    return np.minimum(1.0, 2 * np.minimum(ge, le) / (signs.shape[0] + extra))


# ------------------------------------------------------------------ closed forms
def test_constant_differences_exact():
    """n=8, every b - a = 1/3: exact sign-flip p = 2 * (1/2)^8; the interval is the point."""
    a, b = np.zeros(8), np.full(8, 1 / 3)
    r = compare_paired(a, b, n_perm=1000, n_boot=1000)  # 2^8 = 256 <= 1000: exact enumeration
    assert r["diff"] == pytest.approx(100 / 3)
    assert r["ci_low"] == r["ci_high"] == pytest.approx(100 / 3)
    assert "identical" in r["note"]
    assert r["p"] == pytest.approx(2 / 2**8)
    assert r["mcnemar_p"] == pytest.approx(2 * 0.5**8)  # 8 discordant, all one way
    assert r["sd_diff"] == 0 and math.isnan(r["n_needed"])
    assert r["verdict"] == "better"


def test_constant_differences_randomised():
    """n=100 constant: no random flip reaches the observed mean, p = 2 / (n_perm + 1)."""
    a = np.full(N, 1 / 3)
    r = compare_paired(a, a + 1 / 3, n_perm=999, n_boot=200)
    assert r["p"] == pytest.approx(2 / 1000)
    assert r["ci_low"] == r["ci_high"] == pytest.approx(r["diff"])


def test_all_zero_differences():
    a = np.random.default_rng(0).integers(0, 4, N) / 3
    r = compare_paired(a, a.copy(), **FAST)
    assert r["diff"] == 0 and r["ci_low"] == 0 and r["ci_high"] == 0
    assert r["p"] == 1.0 and r["mcnemar_p"] == 1.0 and math.isnan(r["wilcoxon_p"])
    assert r["tost_p"] == 0.0 and r["verdict"] == "equivalent (±1.0)"


def test_mcnemar_against_binomial_sum():
    """b = 2 (A right only), c = 8 (B right only): p = 2 * sum_{k<=2} C(10,k) / 2^10 = 112/1024."""
    a = np.array([1] * 5 + [1] * 2 + [0] * 8 + [0] * 5, float)
    b = np.array([1] * 5 + [0] * 2 + [1 / 3] * 8 + [0] * 5, float)
    hand = 2 * sum(math.comb(10, k) for k in range(3)) / 2**10
    assert hand == 112 / 1024
    assert mcnemar_p(a, b) == pytest.approx(hand)
    assert mcnemar_p(a, b) == pytest.approx(st.binomtest(2, 10).pvalue)


def test_permutation_p_equals_full_enumeration():
    """n=10: scipy enumerates all 2^10 flips; so does the hand count here."""
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 4, 10) / 3, rng.integers(0, 4, 10) / 3
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=10)))  # (1024, 10)
    obs = np.mean(b - a)
    null = signs @ (b - a) / 10
    hand = min(1.0, 2 * min(np.mean(null >= obs - 1e-12), np.mean(null <= obs + 1e-12)))
    assert permutation_p(a, b, n_perm=5000, seed=0) == pytest.approx(hand)


def test_permutation_p_floor_is_the_smallest_random_p():
    """n=200 clear gain: no random flip reaches it, so p sits exactly at 2 / (n_perm + 1)."""
    a, b = np.zeros(200), np.r_[np.ones(150), np.zeros(50)]
    assert permutation_p(a, b, n_perm=999, seed=0) == pytest.approx(permutation_p_floor(999)) == 0.002


def test_bca_interval_close_to_t_interval():
    """For n=400 the BCa interval of a mean difference is close to mean +- t * sd / sqrt(n)."""
    s = simulate_scores(np.random.default_rng(1), 1, 400, [0.0, 0.3])
    a, b = s[0, 0], s[1, 0]
    r = compare_paired(a, b, n_boot=4000, n_perm=200)
    half = st.t.ppf(0.975, 399) * r["sd_diff"] / math.sqrt(400)
    assert r["ci_low"] < r["diff"] < r["ci_high"]
    assert (r["ci_high"] - r["ci_low"]) / 2 == pytest.approx(half, rel=0.1)


def test_tost_paired_known_direction():
    """Tiny noisy differences with a wide margin are equivalent; a large shift is not."""
    s = simulate_scores(np.random.default_rng(2), 1, 2000, [0.0, 0.0])
    r = compare_paired(s[0, 0], s[1, 0], equivalence_margin=5.0, **FAST)
    assert r["tost_p"] < ALPHA and r["verdict"] == "equivalent (±5.0)"
    assert compare_paired(s[0, 0], s[1, 0], equivalence_margin=0.0, **FAST)["tost_p"] > 0.4


def test_compare_summary_hand_z():
    """50% vs 60% at n=100: se = sqrt(.25/100 + .24/100) = 0.07, z = 0.1/0.07."""
    r = compare_summary(50.0, 60.0, 100)
    z = 0.1 / 0.07
    assert r["diff"] == pytest.approx(10.0)
    assert r["p"] == pytest.approx(math.erfc(z / math.sqrt(2)))  # = 0.15313
    assert r["p"] == pytest.approx(0.15313, abs=1e-5)
    assert r["ci_low"] == pytest.approx(10 - 1.959964 * 7, abs=1e-4)
    assert r["ci_high"] == pytest.approx(10 + 1.959964 * 7, abs=1e-4)
    # correlated arms: Var = v1 + v2 - 2 rho sqrt(v1 v2), v1 = .0025, v2 = .0024
    for rho, hw in zip((0.8, 0.3), r["ci_halfwidth_rho"], strict=True):
        se = math.sqrt(0.0049 - 2 * rho * math.sqrt(0.0025 * 0.0024))
        assert hw == pytest.approx(1.959964 * se * 100, abs=1e-4)
    assert r["p_range"][0] < r["p_range"][1] < r["p"]  # pairing only helps
    assert r["ci_low_rho"][0] > r["ci_low"] and r["approximate"] and r["mode"] == "summary"
    # comparisons.csv keeps only scalar columns: the rho range travels in the note
    assert r["note"].startswith("APPROXIMATE, summary only")
    assert (f"correlation 0.3-0.8: 95% CI [{r['ci_low_rho'][0]:+.1f}, {r['ci_high_rho'][1]:+.1f}] to "
            f"[{r['ci_low_rho'][1]:+.1f}, {r['ci_high_rho'][0]:+.1f}], p {r['p_range'][1]:.3g} to "
            f"{r['p_range'][0]:.3g}") in r["note"]


# ------------------------------------------------------------------ multiplicity, verdict
def test_adjust_hand_values_and_nan():
    p = [0.01, 0.04, np.nan, 0.03]
    np.testing.assert_allclose(adjust(p, "holm"), [0.03, 0.06, np.nan, 0.06])
    np.testing.assert_allclose(adjust(p, "fdr_bh"), [0.03, 0.04, np.nan, 0.04])
    q = np.random.default_rng(0).uniform(size=12)
    np.testing.assert_allclose(adjust(q, "holm"), multipletests(q, method="holm")[1])
    with pytest.raises(KitError, match="holm"):
        adjust(q, "bonferoni")  # type: ignore[arg-type]


def test_mcnemar_published_example():
    """Fagerland, Lydersen & Laake (2013), BMC Med Res Methodol 13:91, Table 1 (airway hyper-responsiveness
    before/after, n = 21: 1 yes/yes, 1 yes/no, 7 no/yes, 12 no/no): exact conditional McNemar p = 0.070."""
    before = np.array([1] * 1 + [1] * 1 + [0] * 7 + [0] * 12, float)
    after = np.array([1] * 1 + [0] * 1 + [1] * 7 + [0] * 12, float)
    assert mcnemar_p(before, after) == pytest.approx(0.070, abs=5e-4)  # = 18 / 256


@pytest.mark.parametrize(
    "p_adj,tost,diff,expected",
    [(0.01, 0.5, 2.0, "better"), (0.01, 0.5, -2.0, "worse"), (0.2, 0.01, 0.3, "equivalent (±1.0)"),
     (0.2, 0.2, 0.6, "inconclusive"), (math.nan, 0.2, 0.6, "inconclusive")],
)
def test_verdict_table(p_adj, tost, diff, expected):
    assert verdict(p_adj, tost, diff, ALPHA, 1.0) == expected


# ------------------------------------------------------------------ calibration
def test_type_one_error_realistic_null():
    """Exchangeable systems (correlated, scores in thirds): t and sign-flip reject ~5%."""
    rng = np.random.default_rng(10)
    s = simulate_scores(rng, N_SIMS, N, [0.0, 0.0])
    d = s[1] - s[0]  # (S, n)
    t_rate = np.mean(st.ttest_1samp(d, 0.0, axis=1).pvalue < ALPHA)
    signs = rng.integers(0, 2, size=(1000, N)) * 2.0 - 1
    perm_rate = np.mean(_sign_flip_pvalues(d, signs) < ALPHA)
    print(f"\ntype I at alpha=0.05 over {N_SIMS} nulls: paired t {t_rate:.4f}, sign-flip {perm_rate:.4f}")
    assert 0.03 <= t_rate <= 0.07
    assert 0.03 <= perm_rate <= 0.07


def test_sign_flip_helper_matches_scipy():
    """The vectorised sign-flip used above agrees with scipy's exact test (n=10)."""
    rng = np.random.default_rng(4)
    d = (rng.integers(0, 4, (5, 10)) - rng.integers(0, 4, (5, 10))) / 3
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=10)))
    ref = [permutation_p(np.zeros(10), row, n_perm=5000, seed=0) for row in d]
    np.testing.assert_allclose(_sign_flip_pvalues(d, signs, exact=True), ref)


def _alternative_diffs(rng, n_sims, n, mean, sd):
    """Differences in {0, ±1/3, ±2/3, ±1} with the given mean and SD (0..1 units)."""
    mags, probs = np.array([1 / 3, 2 / 3, 1.0]), np.array([0.5, 0.3, 0.2])
    ev, ev2 = probs @ mags, probs @ mags**2
    w = (sd**2 + mean**2) / ev2  # P(d != 0)
    t = mean / (w * ev)  # sign bias
    assert 0 < w <= 1 and abs(t) <= 1
    nonzero = rng.uniform(size=(n_sims, n)) < w
    sign = np.where(rng.uniform(size=(n_sims, n)) < (1 + t) / 2, 1.0, -1.0)
    return nonzero * sign * rng.choice(mags, p=probs, size=(n_sims, n))


def test_power_at_mde_is_nominal():
    """A true difference equal to the MDE (80%, n=100) is detected 80% +- 5% of the time."""
    sd = 0.30
    mde = mde_paired(sd * 100, N, ALPHA, 0.8) / 100
    rng = np.random.default_rng(11)
    d = _alternative_diffs(rng, N_SIMS, N, mde, sd)
    assert d.mean() == pytest.approx(mde, abs=0.005) and d.std() == pytest.approx(sd, abs=0.005)
    t_power = np.mean(st.ttest_1samp(d, 0.0, axis=1).pvalue < ALPHA)
    signs = rng.integers(0, 2, size=(1000, N)) * 2.0 - 1
    perm_power = np.mean(_sign_flip_pvalues(d, signs) < ALPHA)
    print(f"\npower at MDE={mde * 100:.2f} pts (sd {sd * 100:.0f}, n={N}): "
          f"paired t {t_power:.4f}, sign-flip {perm_power:.4f}")
    assert 0.75 <= t_power <= 0.85
    assert 0.75 <= perm_power <= 0.85


def test_mde_and_n_needed_round_trip():
    sd = 30.0
    # normal approximation (z_.975 + z_.8) * sd / sqrt(n), slightly widened by t
    assert mde_paired(sd, 400) == pytest.approx(2.8016 * sd / 20, rel=0.01)
    n = n_needed_paired(sd, 1.0)
    assert mde_paired(sd, int(n)) <= 1.0 < mde_paired(sd, int(n) - 1)
    curve = power_curve(sd, [50, 100, 200])
    assert list(curve.columns) == ["n", "mde"] and curve["mde"].is_monotonic_decreasing
    assert curve["mde"].iloc[1] == pytest.approx(mde_paired(sd, 100))
    assert math.isnan(n_needed_paired(0.0, 1.0))


# ------------------------------------------------------------------ best epoch
def test_max_t_never_below_naive_and_single_epoch_equal():
    rng = np.random.default_rng(5)
    for _ in range(20):
        s = simulate_scores(rng, 1, 50, rng.normal(0, 0.3, size=5))[:, 0]  # (5, n)
        r = max_t_best_epoch(s[1:], s[0], n_perm=300, seed=1)
        assert r["maxT_p"] >= r["naive_p"]
    one = max_t_best_epoch(s[1:2], s[0], n_perm=300, seed=1)
    assert one["maxT_p"] == one["naive_p"]


def test_max_t_controls_selection_under_null():
    """10 equally good epochs vs the baseline: picking the best inflates the naive rate."""
    rng = np.random.default_rng(6)
    n_sims, epochs, n_perm = 800, 10, 400
    naive = maxt = 0
    for _ in range(n_sims):
        z = rng.normal(0, 2.5, size=N)  # question difficulty shared by all
        lineage = rng.normal(0, 0.4, size=N)  # epochs of one run share more than the baseline
        base = rng.binomial(3, 1 / (1 + np.exp(-(0.3 + z + rng.normal(0, 0.4, N))))) / 3
        logit = 0.3 + z + lineage + rng.normal(0, 0.3, size=(epochs, N))
        ep = rng.binomial(3, 1 / (1 + np.exp(-logit))) / 3
        r = max_t_best_epoch(ep, base, n_perm=n_perm, seed=int(rng.integers(1 << 31)))
        naive += r["naive_p"] < ALPHA
        maxt += r["maxT_p"] < ALPHA
    print(f"\nbest of {epochs} null epochs, {n_sims} sims: naive rejects {naive / n_sims:.3f}, "
          f"max-T rejects {maxt / n_sims:.3f}")
    assert naive / n_sims > 0.12
    assert maxt / n_sims <= 0.08


# ------------------------------------------------------------------ determinism, errors
def test_same_seed_same_numbers():
    s = simulate_scores(np.random.default_rng(7), 1, 80, [0.0, 0.2])[:, 0]
    r1, r2 = compare_paired(s[0], s[1], **FAST, seed=3), compare_paired(s[0], s[1], **FAST, seed=3)
    assert json.dumps(r1, sort_keys=True) == json.dumps(r2, sort_keys=True)
    m1 = max_t_best_epoch(np.stack([s[1], s[0]]), s[0], n_perm=200, seed=2)
    assert m1 == max_t_best_epoch(np.stack([s[1], s[0]]), s[0], n_perm=200, seed=2)


def test_align_and_input_errors():
    ids, a, b = align_scores({3: 1.0, 1: 0.0, 2: 1 / 3}, {2: 1.0, 3: 0.0, 9: 1.0})
    assert ids == [2, 3] and a.tolist() == [1 / 3, 1.0] and b.tolist() == [1.0, 0.0]
    with pytest.raises(KitError, match="share no question"):
        align_scores({1: 1.0}, {2: 1.0})
    with pytest.raises(KitError, match="equal length"):
        compare_paired([0, 1, 1], [0, 1])
    with pytest.raises(KitError, match="percent"):
        compare_paired([0, 50, 100], [0, 100, 100])
    with pytest.raises(KitError, match="0..100"):
        compare_summary(150.0, 60.0, 100)


# ------------------------------------------------------------------ run level
def _predictions(rng, n=60, shots=(1, 2)):
    """Baseline, a better system, and three epochs of one lineage, as evaluator JSONL rows."""
    names = ["random", "similarity", "grpo_epoch1", "grpo_epoch2", "grpo_epoch3"]
    shifts = [0.0, 0.6, 0.0, 0.1, 0.2]
    rows = []
    for shot in shots:
        s = simulate_scores(rng, 1, n, shifts)[:, 0]
        for j, name in enumerate(names):
            epoch = int(name[-1]) if "epoch" in name else None
            rows += [{"system": name, "checkpoint": None, "epoch": epoch, "shot": shot,
                      "question_id": 1000 + i, "icd_ids": [], "raw": "", "pred": "",
                      "acc": float(s[j, i])} for i in range(n)]
    return pd.DataFrame(rows)


def test_run_stats_family_and_modes(tmp_path):
    pred = _predictions(np.random.default_rng(8))
    summary = pd.DataFrame({"system": ["old_v2"] * 2, "shot": [1, 2], "n": [60, 60],
                            "accuracy": [55.0, 56.0]})
    cfg = StatsConfig(n_boot=200, n_perm=200, subsets=[20, 500])
    df = run_stats(pred, cfg, summary=summary)
    # all: 5 vs baseline x 2 shots + 2 epoch steps x 2 shots; first20: the 4 paired x 2 + 2 x 2
    assert len(df[df.subset == "all"]) == 14 and len(df[df.subset == "first20"]) == 12
    assert set(df.subset) == {"all", "first20"}  # 500 >= 60 questions: same as "all", skipped
    assert (df[df.subset == "first20"].n == 20).all()
    summ = df[df.system_b == "old_v2"]
    assert (summ["mode"] == "summary").all() and (summ.subset == "all").all()
    for _, g in df.groupby("subset"):
        np.testing.assert_allclose(g.p_adj, adjust(g.p.to_numpy(), "holm"))
    assert (df.p_adj >= df.p - 1e-12).all()
    steps = df[df.kind == "epoch_vs_previous"]
    assert set(zip(steps.system_a, steps.system_b, strict=True)) == {
        ("grpo_epoch1", "grpo_epoch2"), ("grpo_epoch2", "grpo_epoch3")}
    assert df.equals(run_stats(pred, cfg, summary=summary))  # deterministic
    with pytest.raises(KitError, match="baseline"):
        run_stats(pred, StatsConfig(baseline="nope"))

    out = write_outputs(tmp_path, df, {"note": "x"})
    back = pd.read_csv(out / "comparisons.csv")
    assert len(back) == len(df) and list(back.columns) == list(df.columns)
    np.testing.assert_allclose(back["diff"], df["diff"])
    meta = json.loads((out / "summary.json").read_text())
    assert meta["n_comparisons"] == len(df) and meta["note"] == "x"
    assert sorted(p.name for p in out.iterdir()) == ["comparisons.csv", "summary.json"]  # no temps


def test_honest_number_picks_validation_best():
    pred = _predictions(np.random.default_rng(9), shots=(1,))
    df = run_stats(pred, StatsConfig(n_boot=200, n_perm=200))
    lineage = {1: "grpo_epoch1", 2: "grpo_epoch2", 3: "grpo_epoch3"}
    h = honest_number({1: 0.40, 2: 0.45, 3: 0.44}, df, lineage, "random")
    assert h["best_val_epoch"] == 2 and h["system"] == "grpo_epoch2"
    row = df[(df.system_b == "grpo_epoch2") & (df.kind == "vs_baseline")].iloc[0]
    assert h["on_test"][0]["diff"] == pytest.approx(row["diff"])
    best = df[df.system_b.isin(lineage.values()) & (df.kind == "vs_baseline")]["diff"].max()
    assert h["best_on_test"][0]["diff"] == pytest.approx(best)
    with pytest.raises(KitError, match="validation reward"):
        honest_number({7: 0.5}, df, lineage, "random")


# ------------------------------------------------------------------ CLI, notebook helpers
def _write_run(root, rng):
    from icl_kit.core.config import dump_yaml, load_params

    (root / "eval").mkdir(parents=True)
    df = _predictions(rng, n=40, shots=(1, 2))
    df["epoch"] = df["epoch"].astype("Int64")
    lines = [json.dumps({k: (None if pd.isna(v) else v) if not isinstance(v, list) else v
                         for k, v in r.items()}, default=int) for r in df.to_dict(orient="records")]
    (root / "eval" / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    params = load_params(None, [f"runs_dir={root.parent}", f"run_name={root.name}"])
    (root / "params.yaml").write_text(dump_yaml(params))
    (root / "train_log.jsonl").write_text(
        "".join(json.dumps({"kind": "epoch", "phase": "grpo", "epoch": e, "val/reward@2": v}) + "\n"
                for e, v in [(1, .4), (2, .45), (3, .43)]))
    (root / "eval" / "imported.csv").write_text("system,shot,n,accuracy,source\nold_v2,1,40,55.0,x\n")


def test_cli_stats_end_to_end(tmp_path, capsys):
    from icl_kit.cli import main

    run = tmp_path / "r1"
    _write_run(run, np.random.default_rng(12))
    assert main(["stats", str(run), "-p", "stats.n_boot=200", "-p", "stats.n_perm=200"]) == 0
    df = pd.read_csv(run / "stats" / "comparisons.csv")
    assert len(df) == 5 + 4 + 4  # 4 paired x 2 shots + imported at shot 1 + 2 epoch steps x 2 shots
    assert (df[df.system_b == "old_v2"]["mode"] == "summary").all()
    meta = json.loads((run / "stats" / "summary.json").read_text())
    assert meta["honest_number"]["grpo_epoch"]["best_val_epoch"] == 2
    assert meta["config"]["n_boot"] == 200
    assert all(b["maxT_p"] >= b["naive_p"] for b in meta["best_epoch"]) and len(meta["best_epoch"]) == 2
    assert main(["stats", str(tmp_path / "missing"), "--params", str(run / "params.yaml")]) == 2
    assert "missing does not exist; pass a folder such as runs/demo" in capsys.readouterr().err


def test_plots_show_the_numbers(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from icl_kit.stats.plots import (
        comparison_table,
        forest_plot,
        power_plot,
        run_sd,
        save_figure,
        verdict_kind,
    )

    df = run_stats(_predictions(np.random.default_rng(13)), StatsConfig(n_boot=200, n_perm=200))
    fig = forest_plot(df, margin=1.0)
    assert len(fig.axes) == 2  # one panel per shot
    for ax, shot in zip(fig.axes, (1, 2), strict=True):
        xs = sorted(x for line in ax.lines if line.get_marker() in ("o", "s") for x in line.get_xdata())
        np.testing.assert_allclose(xs, sorted(df[df.shot == shot]["diff"]))
    sd = run_sd(df)
    fig2 = power_plot(sd, 60, margin=1.0)
    point = [ln for ln in fig2.axes[0].lines if ln.get_marker() == "o"][0]
    assert point.get_xdata()[0] == 60 and point.get_ydata()[0] == pytest.approx(mde_paired(sd, 60))
    assert save_figure(fig2, tmp_path / "p.png").stat().st_size > 1000
    assert len(comparison_table(df)) == len(df) and verdict_kind("equivalent (±1.0)") == "equivalent"


def test_notebook_tables_from_extra():
    from icl_kit.stats.plots import best_epoch_table, honest_table

    pred = _predictions(np.random.default_rng(14), shots=(1,))
    df = run_stats(pred, StatsConfig(n_boot=200, n_perm=200))
    h = honest_number({1: 0.5, 2: 0.4, 3: 0.4}, df, {1: "grpo_epoch1", 2: "grpo_epoch2", 3: "grpo_epoch3"},
                      "random")
    table = honest_table({"honest_number": {"grpo_epoch": h}})
    assert table.loc[0, "val_best"] == "grpo_epoch1"
    assert table.loc[0, "diff"] == pytest.approx(h["on_test"][0]["diff"], abs=0.005)
    assert best_epoch_table({}).empty and honest_table({}).empty


def test_mde_is_positive_and_decreasing_in_n():
    # statsmodels' solver can return the negative root (seen at n=1521); the MDE must stay positive
    from icl_kit.stats.power import mde_paired

    values = [mde_paired(30.0, n) for n in (100, 400, 1000, 1521, 4000)]
    assert all(v > 0 for v in values)
    assert values == sorted(values, reverse=True)
    # closed form check at large n: z_{0.975} + z_{0.8} = 2.8016 -> mde ≈ 2.8016 * sd / sqrt(n)
    assert abs(mde_paired(30.0, 4000) - 2.8016 * 30 / 4000**0.5) < 0.01


def test_read_val_rewards_means_the_logged_shots(tmp_path):
    from icl_kit.core.runs import append_jsonl
    from icl_kit.stats.run import read_val_rewards

    log = tmp_path / "train_log.jsonl"
    append_jsonl(log, [
        {"kind": "epoch", "phase": "rce", "epoch": 0, "val/reward@1": 0.2, "val/reward@2": 0.4},
        {"kind": "step", "phase": "grpo", "epoch": 0, "train/loss": 1.0},
        {"kind": "epoch", "phase": "grpo", "epoch": 0, "val/reward@1": 0.5, "val/reward@2": 0.7},
        {"kind": "epoch", "phase": "grpo", "epoch": 1, "val/reward": 0.9},
    ])
    assert read_val_rewards(log, phase="grpo") == {0: pytest.approx(0.6), 1: 0.9}
    assert read_val_rewards(log, phase="rce") == {0: pytest.approx(0.3)}


def test_cli_stats_missing_run_folder_is_one_sentence(tmp_path, capsys):
    from icl_kit.cli import main

    assert main(["stats", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    expected = f"icl-kit: error: Run folder {tmp_path / 'nope'} does not exist; pass a folder such as runs/demo."
    assert err.strip() == expected
