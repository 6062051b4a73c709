"""The default interval of a paired difference (`stats.interval: t_changed`), measured by simulation.

The audit's scenarios: VQA-like pairs (`icl_kit.stats.simulate.simulate_vqa_pair`: shared difficulty, levels
0/0.3/0.6/0.9/1) with few (15% of questions redrawn, ~9 of 100 changed) and many (60%, ~34 of 100) changed
questions, n = 100 and 1,000, true differences 0, 1 and 3 points (the exact population means, by quadrature).
Criteria (issue 22): coverage >= 94% everywhere, mean width <= 1.3x the Student t interval at n = 100 and
<= 1.15x at n = 1,000. The kit's own interval function (`diff_intervals`, vectorised as `t_changed_ends`) is
measured; the t reference is scipy's t quantile on n - 1 df. Before the fix: the default `score` was wider
than the criteria allow, and the t under-covers with few changed questions. Run
`pytest -s tests/stats/test_interval.py` to see the numbers (also in docs/statistics.md).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from icl_kit.core.config import StatsConfig, dump_yaml, load_params
from icl_kit.evaluation.io import write_summary
from icl_kit.stats.diff_intervals import DEGENERATE_TOL, diff_intervals, score_interval, t_changed_ends
from icl_kit.stats.exact import sign_flip_p
from icl_kit.stats.paired import compare_paired
from icl_kit.stats.simulate import shift_for_diff, simulate_vqa_pair, true_vqa_diff
from icl_kit.stats.tost import tost_p
from icl_kit.stats.verdict import p_ci_disagree

LEVEL = 0.95
SIMS = {100: 4000, 1000: 3000}  # coverage SE about 0.0035 / 0.004
CHANGED = {"few": 0.15, "many": 0.6}
DIFFS = (0, 1, 3)  # true differences, points
SCENARIOS = [(n, label, diff) for n in SIMS for label in CHANGED for diff in DIFFS]
MAX_WIDTH = {100: 1.3, 1000: 1.15}
MIN_COVERAGE = 0.94
SCORE_ROWS = 200  # the score interval bisects per row: measured on the first rows of each scenario
LINKED = 3  # rows checked end to end through compare_paired
EQUIVALENCE_SCENARIO = (1000, "few", 0)  # where the audit measured equivalence power (55.5% score, 74.9% t)


def _scenario(i: int, n: int, label: str, diff: int) -> tuple[np.ndarray, np.ndarray, float]:
    shift = shift_for_diff(CHANGED[label], diff / 100)
    truth = true_vqa_diff(CHANGED[label], shift) * 100
    assert abs(truth - diff) < 1e-6
    a, b = simulate_vqa_pair(np.random.default_rng(220 + i), SIMS[n], n, changed=CHANGED[label], shift=shift)
    return a, b, truth


def _kit_intervals(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The default interval of every row (points) as `diff_intervals` gives it: vectorised `t_changed_ends` for
    rows with a spread, `diff_intervals` itself for the rows without (no change, or every difference equal)."""
    d = b - a
    low, high = (x * 100 for x in t_changed_ends(d, LEVEL))
    for i in np.flatnonzero(np.ptp(d, axis=1) <= DEGENERATE_TOL):
        (low[i], high[i]), = diff_intervals(a[i], b[i], "t_changed", (LEVEL,), 100, 0)[0]
    return low, high


def _t_ends(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Student t interval on n - 1 df (points), straight from scipy: the width reference."""
    n = d.shape[1]
    half = st.t.ppf(0.5 + LEVEL / 2, n - 1) * d.std(axis=1, ddof=1) / math.sqrt(n)
    return (d.mean(axis=1) - half) * 100, (d.mean(axis=1) + half) * 100


def _equivalence_rates(a: np.ndarray, b: np.ndarray, margin: float = 1.0) -> dict[str, float]:
    """Share of rows declared equivalent within ±margin points (the exact TOST p < alpha and the 1 - 2 alpha
    interval inside the margin, as `verdict` asks) with each interval."""
    d = b - a
    tost = np.array([tost_p(a[j], b[j], margin)[0] for j in range(len(d))]) < 1 - LEVEL
    ends = {"t_changed": tuple(x * 100 for x in t_changed_ends(d, 2 * LEVEL - 1)),
            "t": tuple(x * 100 for x in t_changed_ends(d, 2 * LEVEL - 1, changed=d.shape[1])),
            "score": tuple(np.array([score_interval(x, 2 * LEVEL - 1) for x in d]).T)}
    return {k: float(np.mean(tost & (lo > -margin) & (hi < margin))) for k, (lo, hi) in ends.items()}


@pytest.fixture(scope="module")
def measured() -> dict:
    out = {}
    for i, (n, label, diff) in enumerate(SCENARIOS):
        a, b, truth = _scenario(i, n, label, diff)
        d = b - a
        low, high = _kit_intervals(a, b)
        t_low, t_high = _t_ends(d)
        spread = np.ptp(d, axis=1) > DEGENERATE_TOL  # the t has width 0 without: no ratio
        score = np.array([score_interval(d[j], LEVEL) for j in range(SCORE_ROWS)])
        first = spread[:SCORE_ROWS]
        p = np.array([sign_flip_p(a[j], b[j], 1000, 0)[0] for j in range(SCORE_ROWS)])
        if (n, label, diff) == EQUIVALENCE_SCENARIO:
            out["equivalence"] = _equivalence_rates(a[:SCORE_ROWS], b[:SCORE_ROWS])
        out[n, label, diff] = {
            "a": a[:LINKED], "b": b[:LINKED], "low": low[:LINKED], "high": high[:LINKED],
            "changed": float(np.mean(np.count_nonzero(d, axis=1))),
            "cover": float(np.mean((low <= truth) & (truth <= high))),
            "cover_t": float(np.mean((t_low <= truth) & (truth <= t_high))),
            "cover_score": float(np.mean((score[:, 0] <= truth) & (truth <= score[:, 1]))),
            "width": float(np.mean((high - low)[spread] / (t_high - t_low)[spread])),
            "width_score": float(np.mean((score[:, 1] - score[:, 0])[first] / (t_high - t_low)[:SCORE_ROWS][first])),
            "disagree": float(np.mean([p_ci_disagree(p[j], low[j], high[j], 1 - LEVEL) for j in range(SCORE_ROWS)])),
            "disagree_score": float(np.mean([p_ci_disagree(p[j], *score[j], 1 - LEVEL) for j in range(SCORE_ROWS)])),
            "disagree_t": float(np.mean([p_ci_disagree(p[j], t_low[j], t_high[j], 1 - LEVEL)
                                         for j in range(SCORE_ROWS)])),
        }
    print(f"\nequivalence (±1) declared at n = 1,000, ~84 changed, true 0: {out['equivalence']}")
    print("\n n    changed  diff | t_changed cover  width | t cover | score cover  width | p/CI disagree: "
          "t_changed score t")
    for n, label, diff in SCENARIOS:
        m = out[n, label, diff]
        print(f"{n:5d} {label:4s} ~{m['changed']:5.1f} {diff:+d}pt | {m['cover']:.4f} {m['width']:.3f}x | "
              f"{m['cover_t']:.4f} | {m['cover_score']:.3f} {m['width_score']:.3f}x | {m['disagree']:.3f} "
              f"{m['disagree_score']:.3f} {m['disagree_t']:.3f}")
    return out


@pytest.mark.slow
def test_default_interval_covers_and_stays_narrow(measured):
    """t_changed, the default: coverage >= 94% in all twelve scenarios, mean width <= 1.3x the t at n = 100 and
    <= 1.15x at n = 1,000."""
    assert StatsConfig().interval == "t_changed"
    for n, label, diff in SCENARIOS:
        m = measured[n, label, diff]
        assert m["cover"] >= MIN_COVERAGE, (n, label, diff, m["cover"])
        assert m["width"] <= MAX_WIDTH[n], (n, label, diff, m["width"])
    assert all(measured[n, "many", d]["width"] < 1.05 for n in SIMS for d in DIFFS)  # many changes: the t


@pytest.mark.slow
def test_the_audits_findings_on_score_and_t_are_reproduced(measured):
    """Before: the default `score` covered, but was 1.13-1.68x the t at n = 100 and 1.05-1.31x at n = 1,000 (the
    audit), past both width criteria, and disagreed with the exact p more often; the t (n - 1 df) under-covers
    where few questions change and the true difference is not 0. Both stay options."""
    assert max(measured[100, lab, d]["width_score"] for lab in CHANGED for d in DIFFS) > MAX_WIDTH[100]
    assert max(measured[1000, lab, d]["width_score"] for lab in CHANGED for d in DIFFS) > MAX_WIDTH[1000]
    assert min(measured[k]["cover_score"] for k in SCENARIOS) >= 0.94
    assert measured[100, "few", 3]["cover_t"] < MIN_COVERAGE
    assert measured[100, "few", 3]["cover"] > measured[100, "few", 3]["cover_t"] + 0.03
    # the score also disagreed with the exact p in up to 18% of rows (the audit): here up to 42%; the default
    # disagrees no more often in any scenario, and each such row is flagged (test below)
    assert max(measured[k]["disagree_score"] for k in SCENARIOS) > 0.18
    assert all(measured[k]["disagree"] <= measured[k]["disagree_score"] for k in SCENARIOS)


@pytest.mark.slow
def test_equivalence_no_longer_hangs_on_the_interval(measured):
    """The audit: equivalence power 55.5% with score against 74.9% with t at n = 1,000. With the exact TOST p
    (`icl_kit.stats.tost`) the 90% interval no longer decides: the default declares equivalence as often as the
    t does and at least as often as the score."""
    rates = measured["equivalence"]
    assert rates["t_changed"] >= rates["t"] - 0.01 and rates["t_changed"] >= rates["score"]
    assert rates["t_changed"] > 0.3


def test_compare_paired_gives_the_measured_interval(measured):
    """The interval measured above is compare_paired's default ci_low / ci_high, row for row, and its df is the
    changed questions' count - 1 (scipy's t quantile checked by hand on one row)."""
    for m in [measured[k] for k in SCENARIOS[::4]]:
        for j in range(LINKED):
            r = compare_paired(m["a"][j], m["b"][j], n_boot=100, n_perm=200)
            assert r["interval"] == "t_changed"
            assert (r["ci_low"], r["ci_high"]) == (pytest.approx(m["low"][j], abs=1e-8),
                                                   pytest.approx(m["high"][j], abs=1e-8))
    d = measured[100, "few", 0]["b"][0] - measured[100, "few", 0]["a"][0]
    k = int(np.count_nonzero(d))
    half = st.t.ppf(0.975, k - 1) * np.std(d, ddof=1) / 10
    assert measured[100, "few", 0]["high"][0] == pytest.approx((d.mean() + half) * 100, abs=1e-8)


def test_a_row_says_when_its_exact_p_and_interval_disagree():
    """Six gains of +1.0 among 100 questions, none lost: the exact p is 2/2^6 (every sign vector enumerated)
    while the t_changed interval, on 5 df, reaches below 0; comparisons' `p_ci_disagree` says so. The t on 99 df
    agrees with p there (and under-covers elsewhere); with many changed questions the two agree."""
    a, b = np.zeros(100), np.r_[np.ones(6), np.zeros(94)]
    r = compare_paired(a, b)
    signs = np.array(np.meshgrid(*[[-1, 1]] * 6)).reshape(6, -1).T  # all 64 sign vectors
    assert r["p"] == pytest.approx(np.mean(np.abs(signs.sum(axis=1)) >= 6), abs=1e-12) == 2 / 64
    half = st.t.ppf(0.975, 5) * np.std(b, ddof=1) / 10 * 100
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(6 - half), pytest.approx(6 + half))
    assert r["ci_low"] < 0 < r["ci_high"] and r["p"] < 0.05 and r["p_ci_disagree"] is True
    assert compare_paired(a, b, interval="t")["p_ci_disagree"] is False
    assert p_ci_disagree(0.2, 0.5, 3.0, 0.05) and not p_ci_disagree(0.2, -0.5, 3.0, 0.05)
    assert not p_ci_disagree(math.nan, 0.5, 3.0, 0.05)


def _write_disagreeing_run(root) -> None:
    """100 questions, one shot: `similarity` gains +1.0 on 6 questions over `random` and changes nothing else
    (the row whose exact p and interval disagree); stats.subsets first:40 adds a subset family."""
    (root / "eval").mkdir(parents=True)
    lines = []
    for system, gained in (("random", 0), ("similarity", 6)):
        for q in range(100):
            lines.append({"system": system, "checkpoint": None, "epoch": None, "shot": 1, "question_id": 9000 + q,
                          "icd_ids": [], "raw": "", "pred": "", "acc": float(q < gained)})
    (root / "eval" / "predictions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    write_summary(root / "eval" / "summary.csv", lines)
    params = load_params(None, [f"runs_dir={root.parent}", f"run_name={root.name}", "lvlm.backend=simulated",
                                "data.demo=true", "eval.shots=[1]", "eval.systems=[random,similarity]",
                                "stats.subsets=['first:40']", "stats.n_boot=200", "stats.n_perm=200"])
    (root / "params.yaml").write_text(dump_yaml(params))


def test_report_says_when_p_and_interval_disagree_and_names_subset_families(tmp_path):
    """comparisons.csv carries `p_ci_disagree`; the report's interval cell says that the exact p and the interval
    disagree about 0, and a subset's tables say they are families of their own on re-used questions (en, zh)."""
    from icl_kit.report.build import load_inputs
    from icl_kit.report.sections import build_markdown
    from icl_kit.stats.run import stats_for_run

    run = tmp_path / "r"
    _write_disagreeing_run(run)
    stats_for_run(run, load_params(run / "params.yaml").stats, progress=False)
    df = pd.read_csv(run / "stats" / "comparisons.csv")
    row = df[df.subset == "all"].iloc[0]
    assert row.p == pytest.approx(2 / 64) and row.ci_low < 0 and bool(row.p_ci_disagree) is True
    assert not df[df.subset == "first40"].p_ci_disagree.iloc[0]  # 6 of 40 changed: p 2/64, interval above 0
    inputs = load_inputs(run)
    texts = {}
    for language in ("en", "zh"):
        inputs.params.report.language = language
        texts[language] = build_markdown(inputs, inputs.params.report)[0]
    assert "(the exact p, 0.0313, and this interval disagree about 0)" in texts["en"]
    assert "（精确 p 0.0313 与此区间对 0 的判断不一致）" in texts["zh"]
    assert "*A subset of all test questions (n = 100): its comparisons are adjusted as families of their own (m = 1)" \
        in texts["en"]
    assert "*这是全部测试问题（n = 100）的子集：其比较单独组成族进行校正（m = 1）" in texts["zh"]


def test_printed_ends_and_p_show_their_side():
    """The audit: "better, [0.0, +0.4]" was printed for [-0.03, +0.39] (one decimal hid the side of 0), and p
    0.0496 and 0.0504 both printed as 0.050 with opposite verdicts. The report's formats now show both."""
    from icl_kit.report.text import MINUS, ci, pts, pval

    assert (pts(-0.03), pts(0.39)) == ("0.0", "+0.4")  # one decimal, as the ends were printed
    assert (f"{0.0496:.3f}", f"{0.0504:.3f}") == ("0.050", "0.050")  # three decimals, as p was
    assert ci(-0.03, 0.39) == f"[{MINUS}0.03, +0.4]" and ci(0.004, 0.39) == "[+0.004, +0.4]"
    assert (pval(0.0496), pval(0.0504)) == ("0.0496", "0.0504")
