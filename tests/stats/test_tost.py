"""TOST with few changed questions, rounded scores, degenerate intervals, the retired `exact` interval.

Each test asserts a known answer: a closed form (binomial, Wilson-type ends), full enumeration of the sign
vectors or of the tilted null's outcomes, statsmodels for the paired t the kit used before, or a simulation
with the true difference on the margin.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from scipy import stats as st
from statsmodels.stats.weightstats import ttost_paired

from icl_kit.core.config import StatsConfig, load_params
from icl_kit.core.errors import KitError
from icl_kit.stats.diff_intervals import t_interval
from icl_kit.stats.exact import sign_flip_p
from icl_kit.stats.paired import adjust, compare_paired, snap_pair, verdict
from icl_kit.stats.run import run_stats
from icl_kit.stats.simulate import simulate_vqa_pair, true_vqa_diff
from icl_kit.stats.tost import tost_p

ALPHA = 0.05


def _enumerated_p(k: np.ndarray) -> float:
    """Two-sided sign-flip p over all 2^len(k) sign vectors (integers: exact ties)."""
    signs = np.array(list(itertools.product([-1, 1], repeat=len(k))), dtype=np.int64)
    return float(np.mean(np.abs(signs @ k) >= abs(int(k.sum()))))


def _tost_by_enumeration(k: list[int], margin: float) -> float:
    """TOST p as docs/statistics.md defines it, by listing every outcome of n draws from each tilted null
    (its support: the observed differences and +-30), with their probabilities."""
    n, total, ps = len(k), sum(k), []
    for side in (1, -1):
        mu0, mean = side * 0.3 * margin, total / n
        if side * (mean - mu0) >= 0:
            ps.append(1.0)
            continue
        w = (mu0 - mean) / (side * 30 - mean)
        law: dict[int, float] = {}
        for x in k:
            law[x] = law.get(x, 0.0) + (1 - w) / n
        law[side * 30] = law.get(side * 30, 0.0) + w
        tail = 0.0
        for draw in itertools.product(law, repeat=n):
            if (sum(draw) <= total) if side > 0 else (sum(draw) >= total):
                tail += math.prod(law[x] for x in draw)
        ps.append(tail)
    return max(ps)


# ------------------------------------------------------------------ 1. TOST with few changed questions
def test_one_gain_among_300_reproduces_the_audit_and_gives_the_exact_chance():
    """One +1.0 among n = 300: the paired t TOST the kit reported gave 0.023 (statsmodels, the old path); the
    chance of seeing at most one change when a share δ = 1% changed by +1.0 is P(Bin(300, 0.01) <= 1) = 0.198,
    and that is the new TOST p."""
    a = np.zeros(300)
    b = a.copy()
    b[0] = 1.0
    old = ttost_paired(b, a, -0.01, 0.01)[0]
    assert old == pytest.approx(0.0232, abs=1e-4)
    exact_chance = st.binom.cdf(1, 300, 0.01)
    assert exact_chance == pytest.approx(0.1976, abs=1e-4)
    r = compare_paired(a, b)
    assert r["tost_p"] == pytest.approx(exact_chance, rel=1e-9) and r["tost_p"] != pytest.approx(old, abs=0.1)
    assert r["verdict"] == "inconclusive"


@pytest.mark.parametrize("c", range(0, 5))
def test_c_gains_of_one_point_give_the_binomial_tail(c):
    """c questions +1.0 among 300: p = P(Bin(300, δ) <= c) (scipy); c = 0 is the no-change bound 0.99^300.
    From c = 3 the mean (c/300) is at or beyond the margin: p = 1."""
    b = np.zeros(300)
    b[:c] = 1.0
    p, note = tost_p(np.zeros(300), b, 1.0)
    assert p == (pytest.approx(st.binom.cdf(c, 300, 0.01), rel=1e-9) if c < 3 else 1.0) and note == ""
    if c == 0:
        assert p == pytest.approx(0.99**300, rel=1e-9)


def test_tost_equals_enumeration_of_the_tilted_nulls():
    """Small random lattice cases (n <= 5), margins 1, 5 and 30 points: the FFT equals listing every outcome."""
    rng = np.random.default_rng(40)
    checked = 0
    for n in range(2, 6):
        for _ in range(4):
            a = rng.integers(0, 31, n) / 30
            b = np.where(rng.uniform(size=n) < 0.6, rng.integers(0, 31, n) / 30, a)
            k = (np.rint(b * 30) - np.rint(a * 30)).astype(int).tolist()
            for margin in (1.0, 5.0, 30.0):
                ref = _tost_by_enumeration(k, margin)
                assert tost_p(a, b, margin)[0] == pytest.approx(ref, abs=1e-12), (k, margin)
                checked += ref < 1
    assert checked > 5  # some cases test a real tail, not only the "mean beyond the margin" 1


def test_worst_case_declares_equivalence_at_most_alpha_by_enumeration():
    """True difference on the margin carried by the fewest changes possible: a share δ = 1% of 300 questions
    changes by +1.0. The number changed C ~ Bin(300, 0.01); compare_paired's verdict depends only on C, so the
    chance of declaring equivalence is the sum over C of its probability: 0.99^300 = 0.049 (only C = 0).
    With the paired t TOST p (the old path) C <= 1 passed TOST: 0.198, the audit's number."""
    declared = old_tost = 0.0
    for c in range(0, 16):
        b = np.zeros(300)
        b[:c] = 1.0
        r = compare_paired(np.zeros(300), b)
        prob = st.binom.pmf(c, 300, 0.01)
        declared += prob * r["verdict"].startswith("equivalent")
        old = 0.99**300 if c == 0 else ttost_paired(b, np.zeros(300), -0.01, 0.01)[0]
        old_tost += prob * (old < ALPHA)
    assert declared == pytest.approx(0.99**300) and declared <= ALPHA
    assert old_tost == pytest.approx(st.binom.cdf(1, 300, 0.01), rel=1e-6)


def _margin_shift(changed: float, margin: float) -> float:
    return optimize.brentq(lambda s: true_vqa_diff(changed, s) - margin, -5, 5)


def _at_the_margin(rng, n_sims: int, n: int, changed: float) -> dict[str, float]:
    """Rates over simulated VQA-like pairs whose true difference is on the margin (+1 point for half the
    simulations, -1 point for the other half): compare_paired's verdict 'equivalent', its TOST p < α, and the
    paired t TOST p (statsmodels, the old path) < α; and the share of questions that changed."""
    counts = {"declared": 0, "tost": 0, "old_t": 0}
    differ = []
    for sign in (1, -1):
        a, b = simulate_vqa_pair(rng, n_sims // 2, n, changed=changed, shift=_margin_shift(changed, sign * 0.01))
        differ.append(np.mean(a != b))
        for i in range(len(a)):
            r = compare_paired(a[i], b[i])
            counts["declared"] += r["verdict"].startswith("equivalent")
            counts["tost"] += r["tost_p"] < ALPHA
            counts["old_t"] += ttost_paired(b[i], a[i], -0.01, 0.01)[0] < ALPHA
    return {k: float(v / n_sims) for k, v in counts.items()} | {"changed": float(np.mean(differ))}


def _monte_carlo_bound(n_sims: int) -> float:
    return ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / n_sims)  # α plus two Monte Carlo SEs


def test_equivalence_at_the_margin_few_changed():
    """~5% of 300 questions changed, true difference on ±1 point: equivalence is declared, and the TOST p is
    below α, at most α of the time (up to two Monte Carlo SEs). The paired t TOST p was below α far more often
    (about 8%), the error the audit found."""
    sims = 600
    rates = _at_the_margin(np.random.default_rng(41), sims, 300, 0.09)
    print(f"\nfew changed, n = 300, at the margin: {rates}")
    assert 0.04 < rates["changed"] < 0.065
    assert rates["declared"] <= _monte_carlo_bound(sims) and rates["tost"] <= _monte_carlo_bound(sims)
    assert rates["old_t"] > ALPHA


def test_equivalence_at_the_margin_many_changed():
    """~40% of questions changed, true difference on ±1 point, n = 2000 (where a TOST at ±1 point can pass; at
    n = 300 the interval alone is wider than ±1): declared at most α of the time, up to two Monte Carlo SEs."""
    sims = 200
    rates = _at_the_margin(np.random.default_rng(42), sims, 2000, 0.72)
    print(f"\nmany changed, n = 2000, at the margin: {rates}")
    assert 0.35 < rates["changed"] < 0.45
    assert rates["declared"] <= _monte_carlo_bound(sims) and rates["tost"] <= _monte_carlo_bound(sims)


@pytest.mark.parametrize("m,needed", [(1, 299), (4, 437), (12, 546), (56, 699)])
def test_no_change_family_needs_alpha_over_m(m, needed):
    """m comparisons that changed no question: Holm's first step is α/m, so equivalence needs
    0.99^n < 0.05 / m, n >= ln(0.05 / m) / ln(0.99): 299, 437, 546, 699."""
    assert needed == math.ceil(math.log(ALPHA / m) / math.log(0.99))
    for n, expected in ((needed - 1, "inconclusive"), (needed, "equivalent (±1.0)")):
        r = compare_paired(np.zeros(n), np.zeros(n))
        tost_adj = adjust([r["tost_p"]] * m, "holm")
        assert [verdict(r["p"], t, 0.0, ALPHA, 1.0, r["tost_low"], r["tost_high"]) for t in tost_adj] == [expected] * m


def test_no_change_family_of_four_through_run_stats():
    """Four systems identical to the baseline, one shot: the automatic family has 4 rows; n = 436 is
    inconclusive, 437 equivalent (the α/m bound above, end to end)."""
    for n, expected in ((436, "inconclusive"), (437, "equivalent (±1.0)")):
        acc = np.random.default_rng(42).integers(0, 4, n) / 3
        rows = [{"system": s, "checkpoint": None, "epoch": None, "shot": 1, "question_id": i, "acc": float(acc[i])}
                for s in ("random", "s1", "s2", "s3", "s4") for i in range(n)]
        df = run_stats(pd.DataFrame(rows), StatsConfig(n_boot=200))
        assert (df.family_size == 4).all() and df.verdict.tolist() == [expected] * 4


# ------------------------------------------------------------------ 3. rounded scores
def test_rounded_thirds_snap_back_to_the_lattice():
    """The audit's case: 0.3333 vs 0.6667, 0.6667, 0 gave p = 0.497 (Monte Carlo off the lattice, the rounding
    breaking the ties); on the lattice the differences are 1/3, 1/3, -1/3 and every sign vector is as extreme:
    p = 1 (enumeration)."""
    a, b = np.round([1 / 3] * 3, 4), np.round([2 / 3, 2 / 3, 0], 4)
    old, method = sign_flip_p(a, b, 10000, 0)  # the path compare_paired took before: off the lattice
    assert method == "monte_carlo_off_lattice" and old < 0.6
    assert _enumerated_p(np.array([10, 10, -10])) == 1.0
    r = compare_paired(a, b)
    assert r["p"] == 1.0 and r["p_method"] == "exact (snapped to 1/30)" and not r["approximate"]
    assert r["diff"] == pytest.approx(100 / 9, abs=1e-9)


@pytest.mark.parametrize("decimals", [2, 4])
def test_rounding_sweep_agrees_with_enumeration_on_the_unrounded_scores(decimals):
    """400 small random cases (n = 2..10) on the lattice, VQA levels and 1/3 steps included, rounded to 2 or 4
    decimals: the p equals the p of all 2^n sign flips of the unrounded lattice differences. The first 40 go
    through compare_paired end to end; the rest through the two steps it takes its p from (snap_pair, then
    sign_flip_p), which the first 40 pin to compare_paired's p. Before, the rounded scores went unsnapped to the
    Monte Carlo off the lattice (`sign_flip_p` on them): its worst error over these cases is 0.14 (2 decimals)
    and 0.27 (4 decimals) (the audit's own cases: 0.45 and 0.50)."""
    rng = np.random.default_rng(43 + decimals)
    levels = np.array([0, 1 / 30, 0.1, 0.3, 1 / 3, 11 / 30, 0.6, 2 / 3, 0.9, 29 / 30, 1.0])
    snapped, worst_before = 0, 0.0
    for case in range(400):
        n = int(rng.integers(2, 11))
        a = rng.choice(levels, n)
        b = np.where(rng.uniform(size=n) < 0.7, rng.choice(levels, n), a)
        k = (np.rint(b * 30) - np.rint(a * 30)).astype(np.int64)
        ra, rb = np.round(a, decimals), np.round(b, decimals)
        sa, sb, moved = snap_pair(ra, rb)
        p, method = sign_flip_p(sa, sb, 10000, 0)
        assert p == pytest.approx(_enumerated_p(k), abs=1e-12) and method == "exact", (a, b)
        worst_before = max(worst_before, abs(sign_flip_p(ra, rb, 2000, 0)[0] - p))
        if case < 40:
            r = compare_paired(ra, rb, n_boot=100)
            assert r["p"] == p and r["p_method"] == ("exact (snapped to 1/30)" if moved else "exact")
        snapped += moved
    assert snapped > 300
    assert worst_before > 0.1


def test_scores_farther_off_stay_monte_carlo_with_ties_at_their_precision():
    """0.05-steps are not a rounded 1/30 lattice (0.05 lies 1/60 from both neighbours): Monte Carlo, with the
    sums counted in hundredths, so five equal +0.1 differences tie exactly: p = 2 / 2^5 (enumeration)."""
    a = np.array([0.05, 0.25, 0.45, 0.65, 0.85, 0.5, 0.5])
    b = np.array([0.15, 0.35, 0.55, 0.75, 0.95, 0.5, 0.5])
    r = compare_paired(a, b, n_perm=20000)
    assert r["p_method"] == "monte_carlo_off_lattice" and r["approximate"]
    assert _enumerated_p(np.array([10] * 5)) == 2 / 32
    assert r["p"] == pytest.approx(2 / 32, abs=0.006)


# ------------------------------------------------------------------ 4. every difference equal
def test_constant_difference_of_two_questions_is_not_certain():
    """0, 0 -> 1, 1: the interval was [100, 100]. Now the score interval tilted to -1: its lower end solves
    (1 - mu)^2 = q^2 (1 - mu)(mu + 1) / n, mu = (n - q^2) / (n + q^2) with q = t_{0.975, 1} = 12.706:
    (2 - 161.448) / 163.448 = -0.97553; the upper end stays at the largest possible 100."""
    assert t_interval(np.array([1.0, 1.0]), 0.95) == (100.0, 100.0)  # the zero-width interval the audit saw
    r = compare_paired([0.0, 0.0], [1.0, 1.0])
    q2 = st.t.ppf(0.975, 1) ** 2
    assert q2 == pytest.approx(161.448, abs=1e-3)
    assert r["ci_low"] == pytest.approx(100 * (2 - q2) / (2 + q2), abs=1e-9) == pytest.approx(-97.553, abs=1e-3)
    assert r["ci_high"] == 100.0 and r["ci_low"] < r["ci_high"]
    q2 = st.t.ppf(0.95, 1) ** 2  # the 90% TOST interval
    assert r["tost_low"] == pytest.approx(100 * (2 - q2) / (2 + q2), abs=1e-9)
    assert r["p"] == 0.5 and r["verdict"] == "inconclusive" and "identical" in r["note"]


# ------------------------------------------------------------------ 2. the exact interval is refused
def test_exact_interval_is_refused_with_its_reason():
    for call in (lambda: load_params(None, {"stats.interval": "exact"}),
                 lambda: compare_paired([0, 1, 1 / 3], [1, 1, 0], interval="exact")):
        with pytest.raises(KitError) as err:
            call()
        text = str(err.value)
        assert "stats.interval='exact'" in text and "'score'" in text and "'t'" in text and "symmetric" in text
        assert text.count(". ") == 0  # one sentence
    with pytest.raises(KitError, match="choose one of"):
        compare_paired([0, 1, 1 / 3], [1, 1, 0], interval="wald")
