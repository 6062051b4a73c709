"""Benchmark: the whole statistics suite of a run, joint tests included, against a Python loop over resamples.

Workload: a baseline and 10 checkpoints of one lineage (grpo_epoch1..10), 4 shots, n = 1,000 questions, with
the default config (exact sign-flip p, t_changed interval) and two explicit claims over every shot: 36
comparisons with the baseline and 36 epoch-vs-previous (automatic family; the last checkpoint vs the baseline
is a claim, so it is only there), the claims' 8 per-shot rows and 2 rows pooled over the shots (primary
family), then the best-epoch max-T per shot (4) and the joint max-T over all 40 (epoch, shot) columns
(`run_stats` + `best_epoch_tests`, what `icl-kit stats` runs). Again with `interval: bca` (10,000 bootstrap
resamples). Named reference, measured in the same run: a Python loop that draws one resample per iteration
(percentile bootstrap, then sign-flip permutation), on a few comparisons and extrapolated to all of them.
Also: the exact p of the 40 checkpoint-vs-baseline pairs against a 10,000-draw Monte Carlo sign flip with
integer tie counting (what the kit falls back to past the exact limit). The last two lines printed are
`speedup: <ratio>x (suite vs python loop)` and `suite: <seconds>s` (default config).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from icl_kit.core.config import StatsConfig
from icl_kit.stats.exact import exact_sign_flip_p, lattice_ints, monte_carlo_sign_flip_p
from icl_kit.stats.run import best_epoch_tests, run_stats
from icl_kit.stats.simulate import simulate_scores

N_SYSTEMS = 10  # checkpoints grpo_epoch1..10 of one lineage
SHOTS = (1, 2, 3, 4)
N_QUESTIONS = 1000
RESAMPLES = 10_000
N_LOOP_COMPARISONS = 2  # measured with the Python loop, then extrapolated
TARGET_S = 30.0


CHECKPOINTS = [f"grpo_epoch{e}" for e in range(1, N_SYSTEMS + 1)]
CLAIMS = [{"a": "random", "b": CHECKPOINTS[-1], "label": "last vs baseline"},
          {"a": CHECKPOINTS[0], "b": CHECKPOINTS[-1], "label": "last vs first"}]


def make_predictions(rng: np.random.Generator) -> pd.DataFrame:
    """Evaluator-like rows: baseline + N_SYSTEMS checkpoints (with their epoch) x shots x questions."""
    names = ["random"] + CHECKPOINTS
    shifts = np.linspace(-0.1, 0.3, len(names))
    frames = []
    for shot in SHOTS:
        s = simulate_scores(rng, 1, N_QUESTIONS, shifts)[:, 0]  # (J, n)
        for j, name in enumerate(names):
            frames.append(pd.DataFrame({"system": name, "shot": shot, "epoch": j if j else None,
                                        "question_id": np.arange(N_QUESTIONS), "acc": s[j]}))
    return pd.concat(frames, ignore_index=True)


def whole_suite(pred: pd.DataFrame, cfg: StatsConfig) -> tuple[float, pd.DataFrame, list]:
    """(seconds, comparisons, best-epoch rows) of what `icl-kit stats` computes."""
    t0 = time.perf_counter()
    df = run_stats(pred, cfg)
    best = best_epoch_tests(pred, cfg)
    return time.perf_counter() - t0, df, best


def python_loop_comparison(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """One comparison the slow way: a Python iteration per resample."""
    d = b - a
    n, obs = d.size, d.mean()
    boots = []
    for _ in range(RESAMPLES):
        boots.append(d[rng.integers(0, n, n)].mean())
    low = float(np.percentile(boots, 2.5))
    hits = 0
    for _ in range(RESAMPLES):
        hits += abs((d * rng.choice((-1.0, 1.0), n)).mean()) >= abs(obs) - 1e-12
    return low, (hits + 1) / (RESAMPLES + 1)


def per_comparison_at(n: int, rng: np.random.Generator) -> tuple[float, float]:
    """(suite, python loop) seconds for one comparison at n questions, same resample counts."""
    from icl_kit.stats.paired import compare_paired

    s = simulate_scores(rng, 1, n, [0.0, 0.2])[:, 0]
    t0 = time.perf_counter()
    compare_paired(s[0], s[1])
    t1 = time.perf_counter()
    python_loop_comparison(s[0], s[1], rng)
    return t1 - t0, time.perf_counter() - t1


def exact_vs_monte_carlo(pred: pd.DataFrame) -> tuple[float, float, float]:
    """(exact seconds, Monte Carlo seconds, largest |p difference|) over the 40 comparisons."""
    base = {k: g.acc.to_numpy() for k, g in pred[pred.system == "random"].groupby("shot")}
    diffs = [lattice_ints(g.acc.to_numpy()) - lattice_ints(base[shot])
             for (_, shot), g in pred[pred.system != "random"].groupby(["system", "shot"])]
    t0 = time.perf_counter()
    exact = [exact_sign_flip_p(k) for k in diffs]
    t1 = time.perf_counter()
    rng = np.random.default_rng(1)
    mc = [monte_carlo_sign_flip_p(k, RESAMPLES, rng) for k in diffs]
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, float(np.max(np.abs(np.array(exact) - np.array(mc))))


def main() -> None:
    rng = np.random.default_rng(0)
    pred = make_predictions(rng)
    cfg = StatsConfig(comparisons=CLAIMS)
    suite, df, best = whole_suite(pred, cfg)
    n_comp = len(df)
    assert n_comp == 36 + 36 + 8 + 2, df.groupby(["family", "kind"]).size()  # the claim vs baseline: primary only
    assert [b["scope"] for b in best] == ["shot"] * len(SHOTS) + ["joint"] and best[-1]["n_columns"] == 40
    suite_bca, _, _ = whole_suite(pred, StatsConfig(comparisons=CLAIMS, interval="bca", n_boot=RESAMPLES))

    base = pred[(pred.system == "random") & (pred.shot == 1)].acc.to_numpy()
    t0 = time.perf_counter()
    for j in range(N_LOOP_COMPARISONS):
        other = pred[(pred.system == CHECKPOINTS[j]) & (pred.shot == 1)].acc.to_numpy()
        python_loop_comparison(base, other, rng)
    loop_each = (time.perf_counter() - t0) / N_LOOP_COMPARISONS
    loop_total = loop_each * n_comp
    t_exact, t_mc, gap = exact_vs_monte_carlo(pred)
    joint = best[-1]

    print(f"workload: {n_comp} comparisons ({N_SYSTEMS} checkpoints x {len(SHOTS)} shots vs the baseline, epoch vs "
          f"previous, {len(CLAIMS)} claims per shot and pooled), n={N_QUESTIONS}; best-epoch max-T per shot and "
          f"joint over {joint['n_columns']} (epoch, shot) columns; default config (exact p, {cfg.interval} interval)")
    print(f"verdicts: {df.verdict.value_counts().to_dict()}; p methods: {df.p_method.value_counts().to_dict()}")
    print(f"joint max-T: {joint['method']}, p {joint['maxT_p']:.4g} (best epoch {joint['best_epoch']} at shot "
          f"{joint['best_shot']})")
    print(f"suite per comparison: {suite / n_comp:.3f}s (exact p + intervals + sign test/Wilcoxon/TOST/power at α/m; "
          "max-T included)")
    print(f"suite with interval=bca ({RESAMPLES} resamples): {suite_bca:.2f}s")
    print(f"exact p of the 40 checkpoint-vs-baseline pairs: {t_exact:.3f}s; Monte Carlo ({RESAMPLES} integer sign "
          f"flips): {t_mc:.3f}s; ratio MC/exact {t_mc / t_exact:.1f}x; largest |p_exact - p_MC| {gap:.4f}")
    print(f"python loop per comparison: {loop_each:.2f}s (measured on {N_LOOP_COMPARISONS}, "
          f"extrapolated to {n_comp}: {loop_total:.1f}s)")
    small_suite, small_loop = per_comparison_at(100, rng)
    print(f"context, one comparison at n=100: suite {small_suite:.3f}s, python loop {small_loop:.3f}s, "
          f"speed-up {small_loop / small_suite:.2f}x")
    print(f"target < {TARGET_S:.0f}s: {'met' if suite < TARGET_S and suite_bca < TARGET_S else 'MISSED'}")
    print(f"speedup: {loop_total / suite:.2f}x (suite vs python loop)")
    print(f"suite: {suite:.2f}s")


if __name__ == "__main__":
    main()
