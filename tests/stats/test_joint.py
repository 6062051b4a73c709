"""Selection over shots: the joint best-epoch max-T over every (epoch, shot) and the comparison pooled over shots.

Known answers: full enumeration of the 2^n sign vectors written here (n <= 8 questions, or the few that differ),
and simulated nulls whose rejection rates are bounded with a binomial tolerance. Run `pytest -s` to see the rates.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from null_rate import ALPHA, rate_bound

from icl_kit.core.config import StatsConfig
from icl_kit.stats.best_epoch import max_t_best_epoch, max_t_joint, max_t_of_diffs
from icl_kit.stats.pooled import compare_pooled
from icl_kit.stats.run import best_epoch_tests, run_stats


def signs(n: int) -> np.ndarray:
    """All 2^n sign vectors, (2^n, n)."""
    return np.array(list(itertools.product([-1, 1], repeat=n)), dtype=np.int64)


# ------------------------------------------------------------------ joint max-T: enumeration
def test_joint_max_t_equals_full_enumeration():
    """8 questions, 2 epochs x 2 shots: the joint null flips question i in all four columns at once; p counted
    over the 256 sign vectors by hand, for the largest observed column (the best epoch at the best shot)."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 31, size=(2, 8)) / 30  # (shots, questions) on the 1/30 lattice
    ep = np.clip(base[:, None, :] + rng.integers(-6, 12, size=(2, 2, 8)) / 30, 0, 1)  # (shots, epochs, questions)
    r = max_t_joint(ep, base)
    d = np.rint(30 * (ep - base[:, None, :])).astype(np.int64).reshape(4, 8)  # columns (shot, epoch), shot-major
    null = signs(8) @ d.T  # (256, 4): one sign per question shared by every column
    obs = d.sum(axis=1)
    best = int(np.argmax(obs))
    assert r["method"] == "exact" and r["best_index"] == best and r["n_columns"] == 4
    assert (r["best_shot_index"], r["best_epoch_index"]) == divmod(best, 2)
    assert r["maxT_p"] == pytest.approx(np.mean(null.max(axis=1) >= obs[best]), abs=1e-12)
    assert r["naive_p"] == pytest.approx(np.mean(null[:, best] >= obs[best]), abs=1e-12)
    assert r["best_diff"] == pytest.approx(obs[best] / 30 / 8 * 100)


def test_joint_max_t_with_identical_shots_is_the_per_shot_max_t():
    """Two shots with the same scores: the joint maximum is the per-shot maximum for every sign vector, so the
    joint p equals the per-shot max-T p (and both equal the enumeration)."""
    base = np.array([0, 10, 20, 30, 10, 0, 20, 30]) / 30
    ep = np.stack([base + np.array([3, 0, -3, 0, 6, 9, 0, 0]) / 30, base + np.array([0, 3, 3, -6, 0, 3, 0, 0]) / 30])
    ep = np.clip(ep, 0, 1)
    one = max_t_best_epoch(ep, base)
    both = max_t_joint(np.stack([ep, ep]), np.stack([base, base]))
    assert both["maxT_p"] == pytest.approx(one["maxT_p"]) and both["naive_p"] == pytest.approx(one["naive_p"])
    assert both["best_shot_index"] == 0 and both["best_epoch_index"] == one["best_index"]


def test_joint_max_t_monte_carlo_matches_enumeration():
    """18 questions differ (past the 16 enumerated): Monte Carlo p within 4 binomial SE of the enumerated one."""
    rng = np.random.default_rng(11)
    base = np.full((2, 40), 10 / 30)
    ep = np.repeat(base[:, None, :], 2, axis=1).copy()
    ep[:, :, :18] += rng.choice([-9, -3, 3, 6, 9], size=(2, 2, 18)) / 30
    r = max_t_joint(ep, base, n_perm=20000, seed=5)
    d = np.rint(30 * (ep - base[:, None, :])).astype(np.int64).reshape(4, 40)[:, :18]
    obs = d.sum(axis=1)
    exact = float(np.mean((signs(18) @ d.T).max(axis=1) >= obs.max()))
    assert r["method"] == "monte_carlo" and r["n_perm"] == 20000
    assert abs(r["maxT_p"] - exact) <= 4 * np.sqrt(exact * (1 - exact) / 20000) + 1 / 20001, (r["maxT_p"], exact)


# ------------------------------------------------------------------ rounded scores (finding 4, in the max-T)
def test_best_epoch_max_t_snaps_rounded_scores_to_the_lattice():
    """The audit's rounded thirds as a best-epoch test: base 0.3333 x 3, epoch 1 0.6667, 0.6667, 0, epoch 2 the
    base. Before, the max-T took the float differences (0.3334, 0.3334, -0.3333), whose sign vector (+, -, -)
    sums to 0.3333 < 0.3335 and loses its tie: max-T p 0.25 (`max_t_of_diffs` on the floats, the path it took).
    On the lattice the differences are 10, 10, -10 (in 1/30) and the 8 sign vectors give P(S* >= 10) = 0.5.
    Now both the per-shot and the joint test read the scores back onto the lattice and say so in `method`."""
    base, ep = np.round([1 / 3] * 3, 4), np.round([[2 / 3, 2 / 3, 0], [1 / 3] * 3], 4)
    before = max_t_of_diffs(ep - base, False, 1000, 0)
    enumerated = float(np.mean(signs(3) @ np.array([10, 10, -10]) >= 10))
    assert before["maxT_p"] == 0.25 and enumerated == 0.5
    per_shot = max_t_best_epoch(ep, base)
    joint = max_t_joint(np.stack([ep, ep]), np.stack([base, base]))
    for r in (per_shot, joint):
        assert r["maxT_p"] == r["naive_p"] == enumerated and r["method"] == "exact (snapped to 1/30)"
        assert r["best_diff"] == pytest.approx(100 / 9, abs=1e-9)
    assert max_t_best_epoch(np.round(ep * 30) / 30, np.round(base * 30) / 30)["method"] == "exact"  # unrounded


@pytest.mark.parametrize("decimals", [2, 4])
def test_rounded_max_t_equals_the_unrounded_enumeration(decimals):
    """100 small cases (2-3 epochs x 2 shots, n = 3..8, scores on the lattice with 1/3 steps), rounded to 2 or 4
    decimals: the joint and the per-shot max-T p of the rounded scores equal those of the unrounded ones, which
    equal the enumeration of every sign vector."""
    rng = np.random.default_rng(60 + decimals)
    for _ in range(100):
        n, epochs = int(rng.integers(3, 9)), int(rng.integers(2, 4))
        base = rng.integers(0, 4, size=(2, n)) / 3  # 1/3 steps: 0.3333 when rounded
        ep = np.clip(base[:, None, :] + rng.integers(-1, 2, size=(2, epochs, n)) / 3, 0, 1)
        d = np.rint(30 * (ep - base[:, None, :])).astype(np.int64).reshape(2 * epochs, n)
        null, obs = signs(n) @ d.T, d.sum(axis=1)
        expected = float(np.mean(null.max(axis=1) >= obs.max()))
        joint = max_t_joint(np.round(ep, decimals), np.round(base, decimals))
        assert joint["maxT_p"] == pytest.approx(expected, abs=1e-12)
        assert joint["method"].startswith("exact")
        one = max_t_best_epoch(np.round(ep[0], decimals), np.round(base[0], decimals))
        assert one["maxT_p"] == pytest.approx(max_t_best_epoch(ep[0], base[0])["maxT_p"], abs=1e-12)


# ------------------------------------------------------------------ joint max-T: the audit's null
def _null_lineage(rng: np.random.Generator, n: int, shots: int, epochs: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores on the 1/3 steps (binomial(3)/3) under a global null: the baseline and every epoch have the same
    distribution at every shot. Questions have a difficulty shared by all; each system's answer to a question
    carries an effect shared across shots (the shots are correlated: the same question is easy or hard for
    it at every shot), the lineage's epochs share theirs, and each (system, shot) adds its own noise."""
    z = rng.normal(0, 1.5, size=n)
    base_q, lineage_q = rng.normal(0, 0.2, size=n), rng.normal(0, 0.2, size=n)
    base = rng.binomial(3, 1 / (1 + np.exp(-(z + base_q + rng.normal(0, 0.8, (shots, n)))))) / 3
    logit = z + lineage_q + rng.normal(0, 0.8, (shots, epochs, n))
    return rng.binomial(3, 1 / (1 + np.exp(-logit))) / 3, base


def test_joint_max_t_controls_selection_over_shots_under_the_global_null():
    """The audit's scenario: 5 null epochs at 4 correlated shots on the same 200 questions. Testing each shot
    with its own max-T and reading "some shot is significant" rejects far above alpha; one joint max-T over the
    20 columns rejects at most alpha (binomial tolerance for the simulations)."""
    rng = np.random.default_rng(2024)
    n_sims, n, shots, epochs, n_perm = 1000, 200, 4, 5, 199
    some_shot = joint = 0
    for _ in range(n_sims):
        ep, base = _null_lineage(rng, n, shots, epochs)
        seed = int(rng.integers(1 << 31))
        per_shot = [max_t_best_epoch(ep[s], base[s], n_perm=n_perm, seed=seed + s)["maxT_p"] for s in range(shots)]
        some_shot += min(per_shot) < ALPHA
        joint += max_t_joint(ep, base, n_perm=n_perm, seed=seed)["maxT_p"] < ALPHA
    print(f"\nglobal null, {epochs} epochs x {shots} shots, n={n}, {n_sims} sims: some shot significant "
          f"{some_shot / n_sims:.3f}, joint max-T {joint / n_sims:.3f} (bound {rate_bound(n_sims):.3f})")
    assert some_shot / n_sims > 0.10
    assert joint / n_sims <= rate_bound(n_sims)


# ------------------------------------------------------------------ pooled over shots
def _enumerated_two_sided(k: np.ndarray) -> float:
    k = k[k != 0]
    return float(np.mean(np.abs(signs(len(k)) @ k) >= abs(int(k.sum())))) if k.size else 1.0


@pytest.mark.parametrize("n_shots", [2, 3, 5])
def test_pooled_p_equals_enumeration(n_shots):
    """8 questions at K shots: the exact p of the mean averaged difference is the share of the 256 joint sign
    vectors whose |sum of per-question summed differences| reaches the observed one (the 1/(30 K) lattice).
    K = 5 puts averaged scores within 0.007 of the 1/30 lattice, where averaging first and testing the averages
    as scores would snap them onto it."""
    rng = np.random.default_rng(n_shots)
    a = rng.integers(0, 31, size=(n_shots, 8)) / 30
    b = np.clip(a + rng.integers(-2, 4, size=(n_shots, 8)) / 30 * (rng.random((n_shots, 8)) < 0.5), 0, 1)
    r = compare_pooled(a, b, n_boot=200)
    k = np.rint(30 * (b - a)).astype(np.int64).sum(axis=0)  # per question, summed over the shots
    assert r["p_method"] == "exact" and r["p"] == pytest.approx(_enumerated_two_sided(k), abs=1e-12)
    assert r["diff"] == pytest.approx((b - a).mean() * 100) and r["n"] == 8
    assert (r["n_improved"], r["n_worsened"]) == (int((k > 0).sum()), int((k < 0).sum()))


def test_pooled_null_rejects_at_most_alpha():
    """B = A in distribution at every shot (the two systems exchangeable per question, the shots correlated):
    the pooled test rejects at most alpha (binomial tolerance)."""
    rng = np.random.default_rng(77)
    n_sims, n, shots = 400, 120, 4
    rejected = 0
    for _ in range(n_sims):
        z, qa, qb = rng.normal(0, 1.5, n), rng.normal(0, 0.7, n), rng.normal(0, 0.7, n)
        a = rng.binomial(3, 1 / (1 + np.exp(-(z + qa + rng.normal(0, 0.8, (shots, n)))))) / 3
        b = rng.binomial(3, 1 / (1 + np.exp(-(z + qb + rng.normal(0, 0.8, (shots, n)))))) / 3
        rejected += compare_pooled(a, b, n_boot=200, interval="t")["p"] < ALPHA
    print(f"\npooled over {shots} shots, null, n={n}, {n_sims} sims: rejects {rejected / n_sims:.3f} "
          f"(bound {rate_bound(n_sims):.3f})")
    assert rejected / n_sims <= rate_bound(n_sims)


# ------------------------------------------------------------------ the run's rows
def _predictions(rng: np.random.Generator, n: int = 40, shots: tuple[int, ...] = (1, 2, 3)) -> pd.DataFrame:
    names = ["random", "similarity", "grpo_epoch1", "grpo_epoch2"]
    rows = []
    for shot in shots:
        acc = rng.integers(0, 4, size=(len(names), n)) / 3
        rows += [{"system": s, "epoch": int(s[-1]) if "epoch" in s else None, "shot": shot, "question_id": 100 + i,
                  "acc": float(acc[j, i])} for j, s in enumerate(names) for i in range(n)]
    return pd.DataFrame(rows)


def test_run_pools_explicit_pairs_only_and_in_the_primary_family():
    pred = _predictions(np.random.default_rng(4))
    plain = run_stats(pred, StatsConfig(n_boot=200, n_perm=200))
    cfg = StatsConfig(n_boot=200, n_perm=200, subsets=[20], comparisons=[
        {"a": "random", "b": "grpo_epoch2", "label": "over every shot"},
        {"a": "random", "b": "similarity", "shot": 2, "label": "at shot 2 only"}])
    df = run_stats(pred, cfg)
    pooled = df[df.shot == -1]
    assert sorted(pooled.subset) == ["all", "first20"] and set(pooled.label) == {"over every shot"}
    assert (pooled.shots == "1,2,3").all() and (pooled.family == "primary").all()
    assert (df[df.shot != -1].shots == df[df.shot != -1].shot.astype(str)).all()
    for subset, g in df[df.family == "primary"].groupby("subset"):
        assert len(g) == 3 + 1 + 1 and (g.family_size == len(g)).all(), subset  # 3 shots, pooled, one at shot 2
    auto = df[df.family == "automatic"]
    # the automatic family loses only the rows the explicit ones repeat (3 + 1); the pooled rows add none to it
    assert (auto.family_size == len(plain[plain.subset == "all"]) - 3 - 1).all()
    row = pooled[pooled.subset == "all"].iloc[0]
    per_shot = df[(df.subset == "all") & (df.label == "over every shot") & (df.shot != -1)]
    assert row["diff"] == pytest.approx(per_shot["diff"].mean()) and row.n == 40


def test_best_epoch_tests_add_one_joint_row_per_lineage():
    pred = _predictions(np.random.default_rng(6))
    rows = best_epoch_tests(pred, StatsConfig(n_perm=200))
    assert [(r["scope"], r["shot"]) for r in rows] == [("shot", 1), ("shot", 2), ("shot", 3), ("joint", "all")]
    joint = rows[-1]
    assert joint["shots"] == [1, 2, 3] and joint["n_columns"] == 6 and joint["n_epochs"] == 2
    per_shot = {r["shot"]: r for r in rows[:-1]}
    best = per_shot[joint["best_shot"]]  # the joint best is the best epoch at the shot with the largest gain
    assert joint["best_system"] == best["best_system"] and joint["best_diff"] == pytest.approx(best["best_diff"])
    assert joint["best_diff"] == pytest.approx(max(r["best_diff"] for r in rows[:-1]))
    assert joint["maxT_p"] >= max(r["naive_p"] for r in rows[:-1] if r["shot"] == joint["best_shot"]) - 1e-12
