"""Significance testing: closed forms, library references, calibration by simulation.

Simulations are vectorised (one array op over all simulated data sets); run
`pytest -s tests/stats/test_stats.py` to see the simulated rates printed.
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
from icl_kit.stats import exact
from icl_kit.stats.best_epoch import max_t_best_epoch
from icl_kit.stats.diff_intervals import score_interval
from icl_kit.stats.exact import exact_sign_flip_p, sign_flip_p
from icl_kit.stats.paired import adjust, align_scores, compare_paired, compare_summary, sign_test, verdict
from icl_kit.stats.power import mde_paired, n_needed_paired, power_curve
from icl_kit.stats.run import (
    honest_number,
    read_comparisons,
    read_stats_summary,
    run_stats,
    summarise,
    write_outputs,
)
from icl_kit.stats.simulate import simulate_scores, simulate_vqa_pair

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
def _enumerated_p(k: np.ndarray) -> float:
    """Two-sided sign-flip p by brute force over all 2^len(k) sign vectors (integers: exact ties)."""
    signs = np.array(list(itertools.product([-1, 1], repeat=len(k))), dtype=np.int64)
    return float(np.mean(np.abs(signs @ k) >= abs(int(k.sum()))))


def test_constant_differences_exact():
    """n=8, every b - a = 1/3: exact sign-flip p = 2 * (1/2)^8. The interval is not the point: the Wilson-type
    ends of a two-point distribution on {1/3, -+1}, (n c -+ q^2) / (n + q^2), q = t_{0.975, 7} = 2.3646:
    [-21.52, +60.76] points (hand: (8/3 - 5.5914) / 13.5914 = -0.21519, (8/3 + 5.5914) / 13.5914 = 0.60760)."""
    a, b = np.zeros(8), np.full(8, 1 / 3)
    r = compare_paired(a, b, n_boot=1000)
    assert r["diff"] == pytest.approx(100 / 3) and r["p_method"] == "exact"
    q2 = st.t.ppf(0.975, 7) ** 2
    assert q2 == pytest.approx(5.5914, abs=1e-4)
    assert r["ci_low"] == pytest.approx(100 * (8 / 3 - q2) / (8 + q2), abs=1e-9) == pytest.approx(-21.519, abs=1e-3)
    assert r["ci_high"] == pytest.approx(100 * (8 / 3 + q2) / (8 + q2), abs=1e-9) == pytest.approx(60.760, abs=1e-3)
    assert "identical" in r["note"]
    assert r["p"] == pytest.approx(2 / 2**8)
    assert r["sign_p"] == pytest.approx(2 * 0.5**8) and (r["n_improved"], r["n_worsened"]) == (8, 0)
    assert r["sd_diff"] == 0 and math.isnan(r["n_needed"])
    assert r["verdict"] == "better"


def test_constant_differences_no_floor():
    """n=100 constant: the exact p is 2 / 2^100, not a Monte Carlo floor 2 / (n_perm + 1)."""
    a = np.full(N, 1 / 3)
    r = compare_paired(a, a + 1 / 3, n_perm=999, n_boot=200)
    assert r["p"] == pytest.approx(2.0**-99, rel=1e-9) and r["p_method"] == "exact"


@pytest.mark.parametrize("k", range(1, 11))
def test_equal_differences_give_two_over_two_to_the_k(k):
    """k questions 0.3 -> 1.0 among n = 1000, the rest unchanged: p = 2 / 2^k exactly."""
    a = np.full(1000, 0.3)
    b = a.copy()
    b[:k] = 1.0
    r = compare_paired(a, b, n_boot=200)
    assert r["p"] == pytest.approx(min(1.0, 2 / 2**k), rel=1e-12)
    if k == 5:
        assert r["p"] == pytest.approx(0.0625) and r["verdict"] != "better"


def test_exact_p_equals_full_enumeration():
    """Random lattice differences, k = 1..12 non-zero: the convolution equals all 2^k sign vectors."""
    rng = np.random.default_rng(3)
    for k in range(1, 13):
        for _ in range(5):
            d = rng.integers(-30, 31, k)
            assert exact_sign_flip_p(d) == pytest.approx(_enumerated_p(d), abs=1e-12), d
    # through compare_paired: VQA levels (multiples of 0.1 and 1/3 both sit on the 1/30 lattice)
    a = rng.choice([0, 0.3, 0.6, 0.9, 1.0, 1 / 3, 2 / 3], 12)
    b = rng.choice([0, 0.3, 0.6, 0.9, 1.0, 1 / 3, 2 / 3], 12)
    k = np.rint(b * 30).astype(int) - np.rint(a * 30).astype(int)
    assert compare_paired(a, b, n_boot=200)["p"] == pytest.approx(_enumerated_p(k), abs=1e-12)


def test_exact_one_sided_equals_enumeration():
    d = np.array([3, -1, 2, 2, 0, 5, -4])
    signs = np.array(list(itertools.product([-1, 1], repeat=len(d))))
    assert exact_sign_flip_p(d, "greater") == pytest.approx(np.mean(signs @ d >= d.sum()))


def test_monte_carlo_fallbacks_count_ties():
    """Off the lattice (quarters) and past the exact size limit: Monte Carlo, close to enumeration."""
    a = np.full(200, 0.25)
    b = a.copy()
    b[:5] = 0.75
    p, method = sign_flip_p(a, b, 20000, 0)
    assert method == "monte_carlo_off_lattice" and p == pytest.approx(0.0625, abs=0.006)
    a, b = np.full(200, 0.3), np.full(200, 0.3)
    b[:6] = 1.0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exact, "EXACT_MAX_SPAN", 1)
        p, method = sign_flip_p(a, b, 20000, 0)
    assert method == "monte_carlo" and p == pytest.approx(2 / 2**6, abs=0.005)


@pytest.mark.parametrize("n,expected", [(2, "inconclusive"), (20, "inconclusive"), (100, "inconclusive"),
                                        (5000, "equivalent (±1.0)")])
def test_no_change_rows(n, expected):
    """No question changed: TOST p = (1 - δ/100)^n, interval ±100 (1 - (α/2)^(1/n)).

    n = 2, 20, 100 cannot rule out a 1-point change (0.99^100 = 0.37); n = 5000 can (0.99^5000 = 1.5e-22,
    the 90% interval is ±0.06 points): equivalent. The crossing is n = 299 (0.99^299 = 0.0495)."""
    a = np.random.default_rng(0).integers(0, 4, n) / 3
    r = compare_paired(a, a.copy(), n_boot=200)
    assert r["diff"] == 0 and r["p"] == 1.0 and math.isnan(r["sign_p"]) and math.isnan(r["wilcoxon_p"])
    assert r["tost_p"] == pytest.approx(0.99**n)
    assert r["ci_high"] == pytest.approx(100 * (1 - 0.025 ** (1 / n))) == -r["ci_low"]
    assert r["tost_high"] == pytest.approx(100 * (1 - 0.05 ** (1 / n)))
    assert r["verdict"] == expected


def test_no_change_crossing():
    assert compare_paired(np.zeros(299), np.zeros(299))["verdict"] == "equivalent (±1.0)"
    assert compare_paired(np.zeros(298), np.zeros(298))["verdict"] == "inconclusive"


def test_sign_test_against_binomial_sum():
    """2 worsened, 8 improved, 10 unchanged: p = 2 * sum_{k<=2} C(10,k) / 2^10 = 112/1024 (binomtest)."""
    a = np.array([1] * 5 + [1] * 2 + [0] * 8 + [0] * 5, float)
    b = np.array([1] * 5 + [0.3] * 2 + [1 / 3] * 8 + [0] * 5, float)
    hand = 2 * sum(math.comb(10, k) for k in range(3)) / 2**10
    assert hand == 112 / 1024
    p, up, down = sign_test(a, b)
    assert (up, down) == (8, 2) and p == pytest.approx(hand) == pytest.approx(st.binomtest(8, 10).pvalue)


def test_bca_interval_close_to_t_interval():
    """For n=400 the BCa interval of a mean difference is close to mean +- t * sd / sqrt(n)."""
    s = simulate_scores(np.random.default_rng(1), 1, 400, [0.0, 0.3])
    a, b = s[0, 0], s[1, 0]
    r = compare_paired(a, b, n_boot=4000, interval="bca")
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
    r = compare_summary(0.50, 0.60, 100)
    z = 0.1 / 0.07
    assert r["diff"] == pytest.approx(10.0)
    assert r["p"] == pytest.approx(math.erfc(z / math.sqrt(2)))  # = 0.15313
    assert r["p"] == pytest.approx(0.15313, abs=1e-5) and r["verdict"] == "inconclusive"
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
    assert (f"correlation 0.3-0.8: CI [{r['ci_low_rho'][0]:+.1f}, {r['ci_high_rho'][1]:+.1f}] to "
            f"[{r['ci_low_rho'][1]:+.1f}, {r['ci_high_rho'][0]:+.1f}], p {r['p_range'][1]:.3g} to "
            f"{r['p_range'][0]:.3g}, n needed for 1 point") in r["note"]
    # paired n needed: rho = 0.8 needs fewer questions than rho = 0.3, both fewer than independent arms
    few, many = r["n_needed_rho"]
    assert few < many < r["n_needed"]
    sd08 = math.sqrt(0.25 + 0.24 - 2 * 0.8 * math.sqrt(0.25 * 0.24)) * 100
    assert few == n_needed_paired(sd08, 1.0, 0.05, 0.8)


def test_compare_summary_takes_fractions_as_compare_paired_does():
    with pytest.raises(KitError, match=r"look like percentages; pass fractions in 0..1, as compare_paired takes its "
                                       r"scores \(0.642 and 0.66\)"):
        compare_summary(64.2, 66.0, 100)
    with pytest.raises(KitError, match="fractions in 0..1"):
        compare_summary(-0.1, 0.5, 100)
    r = compare_summary(0.0, 0.642, 100)
    assert r["mode"] == "summary" and r["acc_b"] == pytest.approx(64.2) and r["diff"] == pytest.approx(64.2)


# ------------------------------------------------------------------ multiplicity, verdict
def test_adjust_hand_values_and_nan():
    p = [0.01, 0.04, np.nan, 0.03]
    np.testing.assert_allclose(adjust(p, "holm"), [0.03, 0.06, np.nan, 0.06])
    np.testing.assert_allclose(adjust(p, "fdr_bh"), [0.03, 0.04, np.nan, 0.04])
    q = np.random.default_rng(0).uniform(size=12)
    np.testing.assert_allclose(adjust(q, "holm"), multipletests(q, method="holm")[1])
    with pytest.raises(KitError, match="holm"):
        adjust(q, "bonferoni")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "p_adj,tost,diff,expected",
    [(0.01, 0.5, 2.0, "better"), (0.01, 0.5, -2.0, "worse"), (0.2, 0.01, 0.3, "equivalent (±1.0)"),
     (0.2, 0.2, 0.6, "inconclusive"), (math.nan, 0.2, 0.6, "inconclusive")],
)
def test_verdict_table(p_adj, tost, diff, expected):
    assert verdict(p_adj, tost, diff, ALPHA, 1.0, diff - 0.5, diff + 0.5) == expected


def test_equivalence_needs_the_tost_interval_inside_the_margin():
    """+0.1 [−0.9, +1.1]: TOST p below α alone does not make it equivalent."""
    assert verdict(0.8, 0.01, 0.1, ALPHA, 1.0, -0.9, 1.1) == "inconclusive"
    assert verdict(0.8, 0.01, 0.1, ALPHA, 1.0, -0.7, 0.9) == "equivalent (±1.0)"
    assert verdict(0.8, 0.2, 0.1, ALPHA, 1.0, -0.7, 0.9) == "inconclusive"


# ------------------------------------------------------------------ calibration
LINKED = 100  # simulated pairs per setting that also go through compare_paired end to end


def _rejection_rate(n_sims: int, n: int, changed: float, seed: int) -> tuple[float, float]:
    """(share of compare_paired p < α, mean number of differing questions) over a true null.

    Each pair's p is computed by `sign_flip_p` with compare_paired's defaults, the function compare_paired takes its
    `p` from; the first LINKED pairs also go through compare_paired, which must report exactly that p. (The rest of
    compare_paired's work, intervals, power and the secondary tests, costs ~5x the p and is not asserted here.)"""
    a, b = simulate_vqa_pair(np.random.default_rng(seed), n_sims, n, changed=changed)
    cfg = StatsConfig()
    p = np.array([sign_flip_p(a[i], b[i], cfg.n_perm, cfg.seed)[0] for i in range(n_sims)])
    assert [compare_paired(a[i], b[i], n_boot=100, interval="t")["p"] for i in range(LINKED)] == p[:LINKED].tolist()
    return float(np.mean(p < ALPHA)), float(np.mean(a != b) * n)


@pytest.mark.slow
def test_type_one_error_sparse_and_dense_nulls():
    """compare_paired's exact p rejects 5% ± 2% of true nulls, sparse (~17 of 200 questions differ) and
    dense (~70 of 200); with ~6 of 1000 differing (where scipy's tie tolerance gave 11-18%) at most 5%:
    the exact test is conservative there because its smallest p values are 2/2^k."""
    sparse, k_sparse = _rejection_rate(800, 200, 0.15, 20)
    dense, k_dense = _rejection_rate(800, 200, 0.6, 21)
    tiny, k_tiny = _rejection_rate(300, 1000, 0.01, 22)
    print(f"\ntype I at alpha=0.05: sparse ({k_sparse:.1f} differ) {sparse:.4f}, dense ({k_dense:.1f}) {dense:.4f}, "
          f"very sparse ({k_tiny:.1f} of 1000) {tiny:.4f}")
    assert 10 < k_sparse < 25 and k_dense > 50 and 3 < k_tiny < 9
    assert 0.03 <= sparse <= 0.07 and 0.03 <= dense <= 0.07
    assert tiny <= ALPHA


def test_sign_flip_helper_matches_exact():
    """The vectorised sign-flip helper used by the power test agrees with the exact p (n=10)."""
    rng = np.random.default_rng(4)
    d = rng.integers(0, 4, (5, 10)) - rng.integers(0, 4, (5, 10))
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=10)))
    ref = [exact_sign_flip_p(row) for row in d]
    np.testing.assert_allclose(_sign_flip_pvalues(d / 3, signs, exact=True), ref)


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


def test_effect_at_is_the_positive_root_and_falls_back_at_tiny_n():
    """effect_at solves power(es) = 0.8 on es > 0 (n = 79, α = 0.005 used to send statsmodels' unbounded search out to
    es = -1e4); at n = 2 scipy's noncentral t returns NaN near the root and the unbounded search still finds 11.5499
    (the root by numerical integration of the noncentral t)."""
    from statsmodels.stats.power import TTestPower

    from icl_kit.stats.power import effect_at

    for n, alpha in ((79, 0.005), (30, 0.05), (1000, 0.0125)):
        es = effect_at(n, alpha, 0.8)
        assert es > 0 and TTestPower().power(es, n, alpha, alternative="two-sided") == pytest.approx(0.8, abs=1e-9)
    assert effect_at(2, 0.05, 0.8) == pytest.approx(11.5499, abs=1e-4)


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
    with pytest.raises(KitError, match="fractions in 0..1"):
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
    # all and first20: the 4 paired systems vs baseline x 2 shots + 2 epoch steps x 2 shots; the imported
    # old_v2 is of another world (the study's reported numbers), so it is never compared with this run's systems
    assert len(df[df.subset == "all"]) == 12 and len(df[df.subset == "first20"]) == 12
    assert set(df.subset) == {"all", "first20"}  # 500 >= 60 questions: same as "all", skipped
    assert (df[df.subset == "first20"].n == 20).all() and "old_v2" not in set(df.system_b)
    with pytest.raises(KitError, match=r"old_v2 vs random is refused: random is evaluated per question in this "
                                       r"run, old_v2 is the study's reported numbers on its first 60 test questions"):
        run_stats(pred, StatsConfig(comparisons=[{"a": "random", "b": "old_v2"}]), summary=summary)
    two = pd.concat([summary, summary.assign(system="old_v3", accuracy=[57.0, 55.0])])  # one world: compared
    summ = run_stats(pred, StatsConfig(n_boot=200, n_perm=200, comparisons=[{"a": "old_v2", "b": "old_v3"}]),
                     summary=two)
    summ = summ[summ.family == "primary"]
    assert (summ["mode"] == "summary").all() and set(summ.subset) == {"study_first60"}
    assert summ["diff"].tolist() == pytest.approx([2.0, -1.0]) and (summ.family_size == 2).all()
    for _, g in df.groupby("subset"):
        np.testing.assert_allclose(g.p_adj, adjust(g.p.to_numpy(), "holm"))
    assert (df.p_adj >= df.p - 1e-12).all()
    steps = df[df.kind == "epoch_vs_previous"]
    assert set(zip(steps.system_a, steps.system_b, strict=True)) == {
        ("grpo_epoch1", "grpo_epoch2"), ("grpo_epoch2", "grpo_epoch3")}
    assert df.equals(run_stats(pred, cfg, summary=summary))  # deterministic
    with pytest.raises(KitError, match="baseline"):
        run_stats(pred, StatsConfig(baseline="nope"))

    out = write_outputs(tmp_path, df, summarise(df, cfg))
    back = pd.read_csv(out / "comparisons.csv")
    assert len(back) == len(df) and list(back.columns) == list(df.columns)
    np.testing.assert_allclose(back["diff"], df["diff"])
    meta = json.loads((out / "summary.json").read_text())
    assert meta["n_comparisons"] == len(df) and meta["format"] == 2 and meta["honest_number"] == {}
    assert sorted(p.name for p in out.iterdir()) == ["comparisons.csv", "summary.json"]  # no temps
    # read back through the schema: the same table and config (icl_kit.stats.schema)
    pd.testing.assert_frame_equal(read_comparisons(tmp_path)[["diff", "p_adj"]], df[["diff", "p_adj"]],
                                  check_dtype=False)
    assert read_stats_summary(tmp_path).config == cfg


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
    assert len(df) == 4 + 4 + 4  # 4 paired x 2 shots + 2 epoch steps x 2 shots; the imported old_v2 is of
    assert "old_v2" not in set(df.system_b)  # another world, never compared with the run's own systems
    meta = json.loads((run / "stats" / "summary.json").read_text())
    assert meta["honest_number"]["grpo_epoch"]["best_val_epoch"] == 2
    assert meta["config"]["n_boot"] == 200
    assert all(b["maxT_p"] >= b["naive_p"] for b in meta["best_epoch"]) and len(meta["best_epoch"]) == 2 + 1
    assert [(b["scope"], b["shot"]) for b in meta["best_epoch"]] == [("shot", 1), ("shot", 2), ("joint", "all")]
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


def test_imported_only_runs_have_tables_and_no_power_curve():
    """Two imported systems of one world: the stage and notebook 03's figures work without per-question data."""
    from icl_kit.stats.plots import comparison_table, run_power_plot

    summary = pd.DataFrame({"system": ["a", "a", "b", "b"], "shot": [1, 2, 1, 2], "n": [100] * 4,
                            "accuracy": [64.2, 64.8, 63.8, 65.8], "world": ["study_first100"] * 4})
    cfg = StatsConfig(automatic=False, comparisons=[{"a": "a", "b": "b"}])
    df = run_stats(pd.DataFrame(), cfg, summary=summary)
    assert len(df) == 2 and set(df.subset) == {"study_first100"} and (df["mode"] == "summary").all()
    assert len(comparison_table(df)) == 2 and run_power_plot(df, cfg) is None
    with pytest.raises(KitError, match=r"stats.baseline='random' has no results; .*stats.automatic: false"):
        run_stats(pd.DataFrame(), StatsConfig(), summary=summary)


def test_notebook_tables_from_the_stats_summary():
    from icl_kit.stats.plots import best_epoch_table, honest_table

    pred = _predictions(np.random.default_rng(14), shots=(1,))
    cfg = StatsConfig(n_boot=200, n_perm=200)
    df = run_stats(pred, cfg)
    h = honest_number({1: 0.5, 2: 0.4, 3: 0.4}, df, {1: "grpo_epoch1", 2: "grpo_epoch2", 3: "grpo_epoch3"},
                      "random")
    table = honest_table(summarise(df, cfg, honest={"grpo_epoch": h}))
    assert table.loc[0, "val_best"] == "grpo_epoch1"
    assert table.loc[0, "diff"] == pytest.approx(h["on_test"][0]["diff"], abs=0.005)
    assert best_epoch_table(summarise(df, cfg)).empty and honest_table(summarise(df, cfg)).empty


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


# ------------------------------------------------------------------ exact max-T, families, subsets
def test_max_t_exact_enumeration_by_hand():
    """Two epochs differ from the base on 4 questions: all 16 joint sign vectors, counted by hand."""
    base = np.full(30, 0.3)
    ep = np.stack([base.copy(), base.copy()])
    ep[0, :3] = 1.0  # +21 +21 +21 (lattice units)
    ep[1, 2:4] = 0.6  # +9 on questions 2, 3
    r = max_t_best_epoch(ep, base)
    d = np.array([[21, 21, 21, 0], [0, 0, 9, 9]])
    signs = np.array(list(itertools.product([-1, 1], repeat=4)))
    null = signs @ d.T  # (16, 2)
    assert r["method"] == "exact" and r["best_index"] == 0 and r["alternative"] == "one-sided (better)"
    assert r["naive_p"] == pytest.approx(np.mean(null[:, 0] >= 63)) == pytest.approx(2 / 16)
    assert r["maxT_p"] == pytest.approx(np.mean(null.max(axis=1) >= 63))
    assert r["maxT_p"] >= r["naive_p"] and r["best_diff"] == pytest.approx(3 * 0.7 / 30 * 100)


def test_max_t_monte_carlo_never_below_exact_naive():
    rng = np.random.default_rng(15)
    s = simulate_scores(rng, 1, 200, [0.0, 0.2, 0.25, 0.1])[:, 0]
    r = max_t_best_epoch(s[1:], s[0], n_perm=500, seed=3)
    assert r["method"] == "monte_carlo"
    best = s[1 + r["best_index"]]
    k = np.rint(best * 30).astype(int) - np.rint(s[0] * 30).astype(int)
    assert r["naive_p"] == pytest.approx(exact_sign_flip_p(k, "greater"))
    assert r["maxT_p"] >= r["naive_p"]


def test_explicit_comparisons_form_their_own_family():
    pred = _predictions(np.random.default_rng(16))
    cfg = StatsConfig(n_boot=200, comparisons=[{"a": "random", "b": "grpo_epoch3", "label": "new best vs baseline"},
                                               {"a": "grpo_epoch1", "b": "grpo_epoch3", "label": "vs previous best"}],
                      subsets=["first:20", "random:30:7"])
    df = run_stats(pred, cfg)
    prim = df[df.family == "primary"]
    assert set(prim.label) == {"new best vs baseline", "vs previous best"} and (prim.kind == "explicit").all()
    assert set(df.subset) == {"all", "first20", "random30_seed7"}
    ids = sorted(pred.question_id.unique())
    pick = {ids[i] for i in np.random.default_rng(7).choice(len(ids), 30, replace=False)}
    row = df[(df.subset == "random30_seed7") & (df.family == "primary")].iloc[0]
    a = pred[(pred.system == row.system_a) & (pred.shot == row.shot) & pred.question_id.isin(pick)].sort_values(
        "question_id").acc.to_numpy()
    b = pred[(pred.system == row.system_b) & (pred.shot == row.shot) & pred.question_id.isin(pick)].sort_values(
        "question_id").acc.to_numpy()
    assert row.n == 30 and row["diff"] == pytest.approx((b - a).mean() * 100)
    for (_, _), g in df.groupby(["subset", "family"]):
        np.testing.assert_allclose(g.p_adj, adjust(g.p.to_numpy(), "holm"))
        np.testing.assert_allclose(g.tost_p_adj, adjust(g.tost_p.to_numpy(), "holm"))
        assert (g.family_size == len(g)).all()
        paired = g[g["mode"] == "paired"]
        np.testing.assert_allclose(paired.mde, [mde_paired(sd, n, ALPHA / len(g)) for sd, n in
                                                zip(paired.sd_diff, paired.n, strict=True)])
        np.testing.assert_allclose(paired.alpha_power, ALPHA / len(g))
    # a pair that is both explicit and automatic is one question: one row, in the primary family
    both = df[(df.subset == "all") & (df.system_a == "random") & (df.system_b == "grpo_epoch3") & (df.shot == 1)]
    assert both.family.tolist() == ["primary"]
    # before, the automatic family kept it too: the same comparison and p, adjusted in a family of another size
    # (the audit saw two different adjusted p); the automatic-only run still holds that second row
    auto = run_stats(pred, StatsConfig(n_boot=200, subsets=["first:20", "random:30:7"]))
    old = auto[(auto.subset == "all") & (auto.system_a == "random") & (auto.system_b == "grpo_epoch3")
               & (auto.shot == 1)]
    assert old.family.tolist() == ["automatic"] and old.p.iloc[0] == both.p.iloc[0]
    assert old.family_size.iloc[0] != both.family_size.iloc[0]
    assert len(df[(df.subset == "all") & (df.family == "automatic")]) == (4 - 1) * 2 + 2 * 2
    with pytest.raises(KitError, match="stats.comparisons names"):
        run_stats(pred, StatsConfig(comparisons=[{"a": "random", "b": "nope"}]))


def test_subset_and_comparison_config_errors():
    from icl_kit.core.config import load_params

    assert load_params(None, {"stats.subsets": [100, "first:50", "random:20:3"]}).stats.subsets == [
        100, "first:50", "random:20:3"]
    for bad in (["last:5"], ["random:5"], [1]):
        with pytest.raises(KitError, match=r"stats.subsets\[0\]"):
            load_params(None, {"stats.subsets": bad})
    with pytest.raises(KitError, match=r"stats.comparisons\[0\]"):
        load_params(None, {"stats.comparisons": [{"a": "x"}]})
    with pytest.raises(KitError, match="interval"):
        load_params(None, {"stats.interval": "wald"})


# ------------------------------------------------------------------ verdicts recomputed from predictions.jsonl
def _exact_p_by_counting(k: list[int]) -> float:
    """Two-sided sign-flip p with Python integers: the count of sign vectors per sum, built one question at a time."""
    counts = {0: 1}
    for x in (v for v in k if v):
        nxt: dict[int, int] = {}
        for s, c in counts.items():
            nxt[s + x] = nxt.get(s + x, 0) + c
            nxt[s - x] = nxt.get(s - x, 0) + c
        counts = nxt
    obs = abs(sum(k))
    return sum(c for s, c in counts.items() if abs(s) >= obs) / sum(counts.values())


def _score_interval_by_grid(d: np.ndarray, level: float) -> tuple[float, float]:
    """The score interval as diff_intervals describes it, by brute force over a grid of mu (points)."""
    n, mean, m2 = d.size, d.mean(), np.mean(d * d)
    q = st.t.ppf(0.5 + level / 2, n - 1)
    ends = []
    for sign in (-1, 1):
        side = np.abs(d[d * sign > 0])
        ext = sign * (side.max() if side.size else np.abs(d).max())
        mu = np.linspace(mean, ext, 200001)[1:]
        w = (mu - mean) / (ext - mean)
        sd = np.sqrt(np.maximum((1 - w) * m2 + w * ext**2 - mu**2, 0))
        ok = np.abs(mu - mean) <= q * sd / math.sqrt(n)
        ends.append(mu[np.argmin(ok)] * 100 if not ok.all() else ext * 100)
    return ends[0], ends[1]


def _tost_by_convolution(k: list[int], margin: float, unit: int = 30) -> float:
    """TOST p as docs/statistics.md defines it, independently of icl_kit.stats.tost: for each side, the
    questions' lattice differences with mass w moved to +-30 (mean +-0.3 margin), the pmf of the sum of n draws
    by n direct np.convolve calls, and the tail at the observed sum; the larger of the two sides' p. Differences
    averaged over K shots are integers of 1/(30 K): `unit` = 30 K, the change of 1.0."""
    n, total, ps = len(k), sum(k), []
    for side in (1, -1):
        mu0, mean = side * unit / 100 * margin, total / n
        if side * (mean - mu0) >= 0:
            ps.append(1.0)
            continue
        w = (mu0 - mean) / (side * unit - mean)
        one = np.zeros(2 * unit + 1)  # values -unit..unit
        for x in k:
            one[x + unit] += (1 - w) / n
        one[side * unit + unit] += w
        pmf = np.array([1.0])
        for _ in range(n):
            pmf = np.convolve(pmf, one)
        sums = np.arange(pmf.size) - unit * n
        ps.append(float(pmf[sums <= total].sum() if side > 0 else pmf[sums >= total].sum()))
    return max(ps)


def _holm(p: list[float]) -> list[float]:
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


def test_run_verdicts_recomputed_from_predictions(tmp_path):
    """stats_for_run's verdicts equal an independent recomputation from the predictions.jsonl lines:
    exact p by integer counting, TOST by direct convolution of the tilted nulls ((1 - δ/100)^n with no change),
    the default t_changed interval by scipy's t quantile on (changed questions - 1) df (and the score option by
    grid search), Holm by hand within each (subset, family). The explicit pair's rows pooled over shots (shot
    -1) are recomputed the same way from each question's differences summed over the shots (integers of 1/60)."""
    from icl_kit.stats.run import stats_for_run

    run = tmp_path / "r1"
    _write_run(run, np.random.default_rng(12))
    cfg = StatsConfig(subsets=["first:25"], comparisons=[{"a": "grpo_epoch1", "b": "grpo_epoch3", "label": "x"}])
    stats_for_run(run, cfg, progress=False)
    df = pd.read_csv(run / "stats" / "comparisons.csv", keep_default_na=False, na_values=[""])
    lines = [json.loads(x) for x in (run / "eval" / "predictions.jsonl").read_text().splitlines()]
    acc = {(r["system"], r["shot"], r["question_id"]): r["acc"] for r in lines}
    first25 = sorted({r["question_id"] for r in lines})[:25]
    paired = df[df["mode"] == "paired"].copy()
    mine = []
    for r in paired.itertuples():
        shots = [int(s) for s in str(r.shots).split(",")]  # its shot, or the shots a pooled row (shot -1) averages
        assert (r.shot == -1) == (len(shots) > 1) and (len(shots) > 1 or shots == [r.shot])
        qs = [q for q in (first25 if r.subset == "first25" else sorted({x["question_id"] for x in lines}))
              if all((s, k, q) in acc for s in (r.system_a, r.system_b) for k in shots)]
        a = np.array([[acc[(r.system_a, k, q)] for q in qs] for k in shots])  # (shots, questions)
        b = np.array([[acc[(r.system_b, k, q)] for q in qs] for k in shots])
        k = [sum(round(y * 30) - round(x * 30) for x, y in zip(ca, cb, strict=True))  # integers of 1/(30 K)
             for ca, cb in zip(a.T, b.T, strict=True)]
        a, b = a.mean(axis=0), b.mean(axis=0)
        d, delta = b - a, cfg.equivalence_margin / 100
        tost = _tost_by_convolution(k, cfg.equivalence_margin, 30 * len(shots))
        if not any(k):
            assert tost == pytest.approx((1 - delta) ** len(d), rel=1e-9)
            lo, hi = -100 * (1 - 0.05 ** (1 / len(d))), 100 * (1 - 0.05 ** (1 / len(d)))
        else:  # the default t_changed: Student t on (changed questions - 1) df
            assert cfg.interval == "t_changed"
            df_changed = min(max(int(np.count_nonzero(k)) - 1, 1), len(d) - 1)
            half = st.t.ppf(1 - cfg.alpha, df_changed) * np.std(d, ddof=1) / math.sqrt(len(d)) * 100
            lo, hi = d.mean() * 100 - half, d.mean() * 100 + half
            if len(mine) < 3:  # the score option, by the grid search
                assert score_interval(d, 1 - 2 * cfg.alpha) == pytest.approx(
                    _score_interval_by_grid(d, 1 - 2 * cfg.alpha), abs=0.01)
        mine.append({"p": _exact_p_by_counting(k), "tost": tost, "lo": lo, "hi": hi, "n": len(qs)})
    paired = paired.assign(**{f"my_{c}": [m[c] for m in mine] for c in mine[0]})
    np.testing.assert_allclose(paired.p, paired.my_p, atol=1e-12)
    np.testing.assert_allclose(paired.tost_p, paired.my_tost, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(paired.tost_low, paired.my_lo, atol=0.01)
    np.testing.assert_allclose(paired.tost_high, paired.my_hi, atol=0.01)
    assert (paired.n == paired.my_n).all()
    checked = 0
    for (_, _), g in df.groupby(["subset", "family"]):
        p_adj = dict(zip(g.index, _holm(list(g.p)), strict=True))
        t_adj = dict(zip(g.index, _holm(list(g.tost_p)), strict=True))
        for i in g.index.intersection(paired.index):
            r = paired.loc[i]
            expect = ("better" if r["diff"] > 0 else "worse") if p_adj[i] < 0.05 else (
                "equivalent (±1.0)" if t_adj[i] < 0.05 and -1 < r.my_lo and r.my_hi < 1 else "inconclusive")
            assert r.verdict == expect, (r.system_a, r.system_b, r.shot, r.subset)
            checked += 1
    assert checked == len(paired) > 20 and set(df.family) == {"primary", "automatic"}
    assert sorted(df[df.shot == -1].subset) == ["all", "first25"]  # the explicit pair pooled over shots 1, 2
    assert paired.verdict.nunique() >= 2, paired.verdict.value_counts()


def test_stats_files_of_another_kit_version_are_refused_not_patched(tmp_path):
    """comparisons.csv and summary.json are read through one schema each: a file missing a column or key the
    kit writes (or holding one it does not) is refused in one sentence with the fix, never filled with defaults."""
    from icl_kit.stats.schema import COLUMNS

    df = pd.DataFrame([dict.fromkeys(COLUMNS, 0)]).assign(system_a="a", system_b="b", verdict="inconclusive")
    write_outputs(tmp_path, df, summarise(df, StatsConfig()))
    path = tmp_path / "stats" / "comparisons.csv"
    assert read_comparisons(tmp_path).shot.tolist() == [0]
    df.drop(columns=["p_ci_disagree"]).assign(val_selected=1).to_csv(path, index=False)
    with pytest.raises(KitError, match=r"comparisons\.csv was not written by this version of icl-kit \(it lacks "
                                       r"\['p_ci_disagree'\]; it has unknown \['val_selected'\]\); re-run the "
                                       r"statistics \(`icl-kit run PARAMS --stages stats`\)\."):
        read_comparisons(tmp_path)
    summary = tmp_path / "stats" / "summary.json"
    raw = json.loads(summary.read_text())
    for bad in ({k: v for k, v in raw.items() if k != "format"}, {**raw, "val_selected": {}},
                {**raw, "config": {**raw["config"], "alpha_typo": 1}}, "not json {"):
        summary.write_text(bad if isinstance(bad, str) else json.dumps(bad))
        with pytest.raises(KitError, match=r"summary\.json .*; re-run the statistics"):
            read_stats_summary(tmp_path)
