"""Report stage: exact table cells, verdict wording, arrows, zh/en number parity, rules, html, errors."""

from __future__ import annotations

import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from icl_kit.core.config import StatsConfig, dump_yaml, load_params
from icl_kit.core.errors import KitError
from icl_kit.core.runs import append_jsonl, atomic_write_json, atomic_write_text
from icl_kit.report.build import load_inputs, write_report
from icl_kit.report.phrases import EN, ZH
from icl_kit.report.rules import (
    WEAK_ADV_STD,
    Facts,
    find_maxt,
    find_n_small,
    find_significant,
    find_subsets,
    find_val_disagree,
    find_weak_signal,
    rec_honest,
    rec_more_n,
    rec_val_reward,
)
from icl_kit.report.sections import build_markdown
from icl_kit.report.text import GROUP_SEP, MINUS, Text, approx_n, ci, p_is, pct, pts, pval
from icl_kit.stats.run import summarise
from icl_kit.stats.schema import COLUMNS

# The numbers a reader sees in a report's text (a test helper: zh and en must print the same ones).
NUMBER_RE = re.compile(rf"[+{MINUS}-]?\d{{1,3}}(?:{GROUP_SEP}\d{{3}})+(?:\.\d+)?|[+{MINUS}-]?\d+(?:\.\d+)?")


def numbers_in(text: str) -> list[float]:
    """Every number in `text` as a float (signs, minus signs and digit grouping undone)."""
    out = []
    for m in NUMBER_RE.finditer(text):
        token = m.group().replace(GROUP_SEP, "").replace(MINUS, "-")
        out.append(float(token))
    return out


BASE = dict(sign_p=0.5, n_improved=12, n_worsened=8, mode="paired", sd_diff=30.0, mde=8.5, n_needed_observed=5000.0,
            family="automatic", family_size=3, p_method="exact", label="")
# (subset, n, A, B, kind, shot, acc_a, acc_b, diff, lo, hi, p, p_adj, tost_p, verdict, n_needed)
ROWS = [
    ("first100", 100, "random", "grpo_epoch2", "vs_baseline", 1, 60.0, 61.0, 1.0, -3.9, 5.8, 0.7, 0.91, 0.6,
     "inconclusive", 2873.0),
    ("first100", 100, "random", "grpo_epoch2", "vs_baseline", 2, 58.0, 64.0, 6.0, 2.1, 9.9, 0.002, 0.008, 0.9,
     "better", 2873.0),
    ("first100", 100, "grpo_epoch1", "grpo_epoch2", "epoch_vs_previous", 1, 63.5, 61.0, -2.5, -6.0, 1.0, 0.2,
     0.4, 0.7, "inconclusive", 2873.0),
    ("all", 1000, "random", "grpo_epoch2", "vs_baseline", 1, 60.2, 61.1, 0.9, 0.3, 1.5, 0.004, 0.012, 0.3,
     "better", 2873.0),
    ("all", 1000, "random", "grpo_epoch2", "vs_baseline", 2, 58.4, 58.6, 0.2, -0.5, 0.9, 0.6, 1.0, 0.01,
     "equivalent (±1.0)", 2873.0),
    ("all", 1000, "grpo_epoch1", "grpo_epoch2", "epoch_vs_previous", 1, 63.6, 61.1, -2.5, -4.0, -1.0, 0.001,
     0.003, 0.9, "worse", 2873.0),
]
COLS = ["subset", "n", "system_a", "system_b", "kind", "shot", "acc_a", "acc_b", "diff", "ci_low", "ci_high", "p",
        "p_adj", "tost_p", "verdict", "n_needed"]


# The rest of comparisons.csv's columns (icl_kit.stats.schema), as the stats stage writes them for such rows.
SCHEMA_REST = {c: np.nan for c in COLUMNS} | dict(interval="t_changed", note="", p_ci_disagree=False)


def comparisons_df() -> pd.DataFrame:
    """The rows above, a whole comparisons.csv; the 90% TOST interval is the 95% one narrowed by 0.6 points at
    each end."""
    df = pd.DataFrame([SCHEMA_REST | dict(zip(COLS, r, strict=True)) | BASE for r in ROWS])
    df = df.assign(tost_low=(df.ci_low + 0.6).round(1), tost_high=(df.ci_high - 0.6).round(1),
                   shots=df.shot.astype(str))
    return df[COLUMNS]


def train_rows(adv_std: float = 0.001) -> list[dict]:
    steps = [{"kind": "step", "phase": "grpo", "epoch": e, "step": s, "train/loss": 0.1, "train/reward_mean": 0.5,
              "train/adv_std": adv_std, "train/kl": 0.01, "train/frac_reward_zero_std": 0.75}
             for e in (1, 2) for s in range(3)]
    # loss is lowest at epoch 1, reward highest at epoch 2: they disagree
    epochs = [{"kind": "epoch", "phase": "grpo", "epoch": 1, "val/rce_loss": 1.2, "val/reward@2": 0.40,
               "epoch_time_s": 12.0},
              {"kind": "epoch", "phase": "grpo", "epoch": 2, "val/rce_loss": 1.3, "val/reward@2": 0.45,
               "epoch_time_s": 11.0}]
    return steps + epochs


def make_run(root: Path, *, smoke: bool = True, with_log: bool = True) -> Path:
    """A hand-built run folder with known numbers (no model, no stats computation)."""
    params = load_params(None, [f"report.smoke={str(smoke).lower()}", "lvlm.backend=simulated", "data.demo=true",
                                "stats.subsets=[100]", "eval.n=1000"])
    atomic_write_text(root / "params.yaml", dump_yaml(params))
    summary = pd.DataFrame([{"system": s, "epoch": e, "shot": k, "n": 1000, "accuracy": a}
                            for s, e, a in (("random", None, 60.2), ("grpo_epoch1", 1, 63.6),
                                            ("grpo_epoch2", 2, 61.1)) for k in (1, 2)])
    (root / "eval").mkdir(parents=True)
    summary.to_csv(root / "eval" / "summary.csv", index=False)
    (root / "stats").mkdir()
    comparisons_df().to_csv(root / "stats" / "comparisons.csv", index=False)
    write_summary(root, params.stats, {
        "best_epoch": [{"lineage": "grpo_epoch", "shot": 1, "best_epoch": 1, "best_system": "grpo_epoch1",
                        "best_diff": 3.4, "naive_p": 0.03, "maxT_p": 0.09, "n_epochs": 2}],
        "honest_number": {"grpo_epoch": {"best_val_epoch": 2, "system": "grpo_epoch2", "val_reward": 0.45,
                                         "on_test": [{"shot": 1, "system_b": "grpo_epoch2", "diff": 0.9,
                                                      "ci_low": 0.3, "ci_high": 1.5, "p_adj": 0.012,
                                                      "verdict": "better"}],
                                         "best_on_test": [{"shot": 1, "system_b": "grpo_epoch1", "diff": 3.4}]}}})
    if with_log:
        append_jsonl(root / "train_log.jsonl", train_rows())
    return root


def write_summary(root: Path, cfg: StatsConfig, blocks: dict) -> None:
    """stats/summary.json as the stats stage writes it (icl_kit.stats.schema), with these best-epoch and
    honest-number blocks."""
    df = comparisons_df()
    atomic_write_json(root / "stats" / "summary.json", summarise(df, cfg, blocks["best_epoch"],
                                                                 blocks["honest_number"]).to_json())


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run")


def md(run: Path, language: str) -> str:
    inputs = load_inputs(run)
    cfg = inputs.params.report
    cfg.language = language
    return build_markdown(inputs, cfg)[0]


# ------------------------------------------------------------------ formats
def test_number_formats():
    assert pct(60.04) == "60.0%"
    assert pts(6.0) == "+6.0" and pts(-3.94) == "\u22123.9" and pts(-0.01) == "0.0"
    assert ci(-3.9, 5.8) == "[\u22123.9, +5.8]"
    assert [pval(x) for x in (0.912, 0.0081, 0.0004, float("nan"))] == ["0.91", "0.008", "<0.001", "—"]
    assert [p_is(x) for x in (0.912, 0.0004, float("nan"))] == ["= 0.91", "< 0.001", "—"]
    assert approx_n(2873) == "2\u202f900" and approx_n(412) == "420" and approx_n(87) == "87"
    assert numbers_in("[\u22123.9, +5.8] n≈2\u202f900") == [-3.9, 5.8, 2900.0]


def test_p_near_alpha_and_interval_ends_near_zero_read_on_their_side():
    """p 0.0496 and 0.0504 lie on either side of α = 0.05 and had both printed as 0.050 (3 decimals); in
    0.01..0.1 p now has 3 significant figures. An interval end that rounds to 0.0 shows its sign (−0.03, not 0.0)."""
    assert f"{0.0496:.3f}" == f"{0.0504:.3f}" == "0.050"  # the old format
    assert (pval(0.0496), pval(0.0504), pval(0.05), pval(0.0123)) == ("0.0496", "0.0504", "0.0500", "0.0123")
    assert (pval(0.0099), pval(0.1), pval(0.0999)) == ("0.010", "0.10", "0.0999")
    assert p_is(0.0496) == "= 0.0496"
    assert ci(-0.03, 1.23) == "[\u22120.03, +1.2]" and ci(0.004, 2.0) == "[+0.004, +2.0]"
    assert ci(0.0, 0.5) == "[0.0, +0.5]" and ci(-0.06, 0.049) == "[\u22120.1, +0.05]"
    assert ci(1e-12, 1.0) == "[0.0, +1.0]"


def test_observed_size_n_is_labelled_exploratory(run):
    """n_needed_observed (an observed-power estimate) is printed only with the word exploratory."""
    for language, word in (("en", "exploratory"), ("zh", "探索性")):
        lines = [ln for ln in md(run, language).splitlines() if f"5{GROUP_SEP}000" in ln]
        assert lines and all(word in ln for ln in lines), lines


def test_phrase_tables_match():
    assert set(ZH) == set(EN)
    for key in ZH:
        fields = [set(re.findall(r"{(\w+)}", table[key])) for table in (ZH, EN)]
        assert fields[0] == fields[1], key
        assert Counter(re.findall(r"\d", re.sub(r"{\w+}", "", ZH[key]))) == \
            Counter(re.findall(r"\d", re.sub(r"{\w+}", "", EN[key]))), key


# ------------------------------------------------------------------ tables
def test_table_cells_exact(run):
    zh, en = md(run, "zh"), md(run, "en")
    assert ("| grpo_epoch2 | random | 2 | 58.0% | 64.0% | **+6.0** ⬆️ | [+2.1, +9.9] | [+2.7, +9.3] | 0.008 | "
            "显著提升 |") in zh
    assert ("| grpo_epoch2 | random | 1 | 60.0% | 61.0% | +1.0 | [\u22123.9, +5.8] | [\u22123.3, +5.2] | 0.91 | "
            "无可检测差异（检出 1.0 点需 n≈2\u202f900） |") in zh
    assert ("| grpo_epoch2 | random | 2 | 58.4% | 58.6% | +0.2 | [\u22120.5, +0.9] | [+0.1, +0.3] | 1.00 | "
            "等价（±1.0） |") in zh
    assert ("| grpo_epoch2 | grpo_epoch1 | 1 | 63.6% | 61.1% | **\u22122.5** ⬇️ | [\u22124.0, \u22121.0] | "
            "[\u22123.4, \u22121.6] | 0.003 | 显著下降 |") in zh
    assert "| **+6.0** ⬆️ | [+2.1, +9.9] | [+2.7, +9.3] | 0.008 | significant gain |" in en
    assert "| 0.91 | no detectable difference (to detect 1.0 points: n ≈ 2\u202f900) |" in en
    assert "| 1.00 | equivalent (±1.0) |" in en
    assert "| 95% interval | 90% interval (TOST) | Adjusted p |" in en


def test_arrows_only_on_significant_rows(run):
    text = md(run, "en")
    rows = [line for line in text.splitlines() if re.match(r"\| grpo_epoch2 \| (random|grpo_epoch1) \|", line)]
    assert len(rows) == len(ROWS)
    for line in rows:
        significant = "significant" in line
        assert (("⬆️" in line) or ("⬇️" in line)) == significant, line
        assert ("**" in line) == significant, line
    assert text.count("⬆️") + text.count("⬇️") == 2 * 3  # 3 significant rows: tables + detailed analysis


def test_layout_sections_and_labels(run):
    zh = md(run, "zh")
    heads = [h for h in zh.splitlines() if h.startswith("## ")]
    assert heads == ["## 一、核心结论", "## 二、测试配置", "## 三、结果对比", "## 四、详细分析",
                     "## 五、关键发现", "## 六、建议", "## 七、总结"]
    assert zh.startswith("# ICD 选择器评估（演示世界，模拟 LVLM）：grpo_epoch2 vs random\n")
    assert "冒烟测试（smoke run）" in zh.split("## ")[0]  # prominent: before the first section
    assert zh.count("模拟 LVLM") >= 3  # header, config, banner, conclusion: wherever the model appears
    assert "Qwen" not in zh
    assert "### 3.1" in zh and "### 3.2" in zh and "### 4.1 grpo_epoch2 vs random" in zh
    answer = zh.split("## 一、核心结论")[1].split("## 二")[0]  # the answer first, as the conclusion says it
    assert answer.strip() in zh.split("## 七、总结")[1]


def test_zh_and_en_have_the_same_numbers(run):
    zh, en = md(run, "zh"), md(run, "en")
    assert Counter(numbers_in(zh)) == Counter(numbers_in(en))
    assert len(numbers_in(zh)) > 100


def test_featured_limits_details_and_rejects_unknown(run):
    inputs = load_inputs(run)
    inputs.params.report.featured = ["grpo_epoch1"]
    text = build_markdown(inputs)[0]
    assert "### 4.1 grpo_epoch2 vs grpo_epoch1" in text and "### 4.2 Training" not in text
    assert "grpo_epoch2 vs random" not in text.split("详细分析")[1].split("### 4.2")[0]
    inputs.params.report.featured = ["nope"]
    with pytest.raises(KitError, match="report.featured"):
        build_markdown(inputs)


# ------------------------------------------------------------------ rules
def facts(**kw) -> Facts:
    f = Facts(comparisons_df())
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def test_rule_val_disagreement():
    rows = pd.DataFrame(train_rows())
    epochs = rows[rows.kind == "epoch"]
    t = Text("en")
    text = find_val_disagree(facts(epochs=epochs), t)
    # logged epochs 1 and 2 are 0-based: the files grpo_epoch2.pt and grpo_epoch3.pt, named 1-based
    assert "grpo epoch 2 (1.200)" in text and "grpo epoch 3 (0.450)" in text
    assert rec_val_reward(facts(epochs=epochs), t).startswith("Choose checkpoints by validation reward")
    agree = epochs.assign(**{"val/reward@2": [0.5, 0.4]})
    assert find_val_disagree(facts(epochs=agree), t) is None and rec_val_reward(facts(epochs=agree), t) is None


def test_rule_weak_signal():
    t = Text("en")
    weak = pd.DataFrame(train_rows(adv_std=0.001))
    text = find_weak_signal(facts(steps=weak[weak.kind == "step"]), t)
    assert "0.0010" in text and "75.0%" in text
    strong = pd.DataFrame(train_rows(adv_std=2 * WEAK_ADV_STD))
    assert find_weak_signal(facts(steps=strong[strong.kind == "step"]), t) is None


def test_rule_maxt():
    """The best-epoch sentence says what the table says of the same comparison after the family's correction."""
    t = Text("en")
    lost = find_maxt(facts(best_epoch=[{"lineage": "grpo_epoch", "shot": 1, "best_epoch": 3, "best_diff": 3.4,
                                        "naive_p": 0.03, "maxT_p": 0.09}]), t)
    assert lost == ["grpo at shot 1: the best epoch on test, 3 (+3.4 points), has naive p = 0.0300 but "
                    "max-T p = 0.0900 once picking the best epoch is accounted for: not significant."]
    entry = {"lineage": "grpo_epoch", "best_system": "grpo_epoch2", "naive_p": 0.001, "maxT_p": 0.004, "epochs": [1, 2]}
    kept = find_maxt(facts(best_epoch=[entry | {"shot": 1, "best_diff": 0.9}], baseline="random"), t)
    assert kept == ["grpo at shot 1: the best checkpoint on test, grpo_epoch2 (+0.9 points), stays significant both "
                    "after picking it among 2 epochs (max-T p = 0.004) and after the family's correction (m = 3, "
                    "adjusted p = 0.0120)."]
    f = facts(best_epoch=[entry | {"shot": 2, "best_diff": 0.2}], baseline="random")
    assert find_maxt(f, t) == ["grpo at shot 2: the best checkpoint on test, grpo_epoch2 (+0.2 points), has max-T p "
                               "= 0.004, which accounts only for picking it among 2 epochs; corrected for its family "
                               "of 3 comparisons it has adjusted p = 1.00: equivalent (±1.0)."]
    assert find_maxt(facts(best_epoch=[{"naive_p": 0.3, "maxT_p": 0.6}]), t) is None


def test_rule_n_needed_is_the_tables_own():
    """The n needed that findings and advice quote is the tables' (their median over inconclusive rows)."""
    f = facts()
    assert find_n_small(f, Text("en")) is None  # main subset "all" has no inconclusive row: the rule does not fire
    f.comparisons.loc[f.comparisons.subset == "all", "verdict"] = "inconclusive"
    f.comparisons.loc[f.comparisons.subset == "all", "n_needed"] = [1500.0, 2873.0, 9999.0]
    f.comparisons["mde"] = 2.0
    assert find_n_small(f, Text("en")) == (
        "At n = 1\u202f000, 3 of 3 comparisons are inconclusive: the smallest difference this run detects with power "
        "80% is about ±2.0 points, and detecting ±1.0 points would need about n ≈ 2\u202f900 questions (the tables' "
        "median).")
    assert rec_more_n(f, Text("en")).startswith("Evaluate on n ≈ 2\u202f900 ")
    f.all_questions = True  # every test question used already: more of them is not the advice
    assert rec_more_n(f, Text("en")).startswith("This run already uses every test question (n = 1\u202f000); "
                                                "detecting ±1.0 points needs about n ≈ 2\u202f900")
    f.all_questions = False
    f.comparisons.loc[f.comparisons.subset == "all", "n_needed"] = 50_000.0  # beyond 10 x n: record as not detected
    assert "would need n ≈ 50\u202f000 questions: record them as not detected" in rec_more_n(f, Text("en"))


def test_rule_significant_and_subsets():
    t = Text("en")
    sig = find_significant(facts(), t)
    assert sig == ["grpo_epoch2 vs grpo_epoch1 at shot 1: a drop of \u22122.5 points (95% interval [\u22124.0, "
                   "\u22121.0], adjusted p = 0.003, n = 1\u202f000).",
                   "grpo_epoch2 vs random at shot 1: a gain of +0.9 points (95% interval [+0.3, +1.5], adjusted "
                   "p = 0.0120, n = 1\u202f000)."]
    sub = find_subsets(facts(), t)
    # first100: 2 of 3 inconclusive, half-widths 4.85, 3.9, 3.5 -> median 3.9; all: 0 of 3, 0.6, 0.7, 1.5 -> 0.7
    assert "at n = 100, 2 of 3" in sub and "at n = 1\u202f000, only 0 of 3" in sub and "2 of them are settled" in sub
    assert "(median half-width ±3.9 points)" in sub and "(±0.7 points)" in sub
    unsettled = find_subsets(facts(comparisons=comparisons_df().assign(verdict="inconclusive")), t)
    assert unsettled.startswith("From n = 100 to n = 1\u202f000") and "(3 of 3 and 3 of 3 inconclusive)" in unsettled
    one = facts(comparisons=comparisons_df().query("subset == 'all'"))
    assert find_subsets(one, t) is None


def test_findings_in_report(run):
    en = md(run, "en")
    findings = en.split("## V. Key findings")[1].split("## VI.")[0]
    assert "smoke run" in findings and "pick different best epochs" in findings
    assert "training signal was weak" in findings and "max-T p = 0.0900" in findings
    assert "The number of questions decides" in findings
    advice = en.split("## VI. Recommendations")[1].split("## VII.")[0]
    assert "validation reward" in advice and "Strengthen the training signal" in advice


def test_no_train_log_skips_training(tmp_path):
    run = make_run(tmp_path / "r", with_log=False, smoke=False)
    en = md(run, "en")
    assert "No training log" in en and "pick different best epochs" not in en
    assert "SMOKE RUN" not in en


# ------------------------------------------------------------------ outputs
class _Srcs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag, attrs):
        self.tables += tag == "table"
        self.srcs += [v for k, v in attrs if k in ("src", "href")]


def test_write_report_files_and_html(run):
    out = write_report(run)
    assert out["md"] == run / "report" / "report.md" and out["md"].read_text().startswith("# ")
    names = sorted(p.name for p in out["figures"])
    assert names == ["accuracy_by_epoch.png", "forest_all.png", "forest_first100.png", "power_curve.png",
                     "training_curves.png"]
    for p in out["figures"]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = _Srcs()
    html = out["html"].read_text()
    page.feed(html)
    assert html.count('<blockquote class="warn">') == 2  # smoke run and simulated LVLM banners
    assert len(page.srcs) == len(names) and all(s.startswith("data:image/png;base64,") for s in page.srcs)
    assert page.tables >= 8
    assert not list((run / "report").glob(".*tmp"))


def test_missing_inputs_name_file_and_stage(tmp_path):
    with pytest.raises(KitError, match=r"params\.yaml is missing; run `icl-kit run PARAMS`"):
        write_report(tmp_path)
    run = make_run(tmp_path / "r")
    (run / "stats" / "comparisons.csv").unlink()
    with pytest.raises(KitError, match=r"stats/comparisons\.csv is missing; run `icl-kit run PARAMS --stages stats`"):
        write_report(run)


def test_cli_report(run, capsys):
    from icl_kit.cli import main

    assert main(["report", str(run), "-p", "report.language=en"]) == 0
    assert "## II. Test configuration" in (run / "report" / "report.md").read_text()
    assert main(["report", str(run.parent / "absent")]) == 2
    assert "params.yaml is missing" in capsys.readouterr().err


def test_real_stats_output_renders(tmp_path):
    """stats.run's own files (paired, two subsets, best-epoch max-T) go through the report unchanged."""
    from icl_kit.stats.run import stats_for_run

    run = make_run(tmp_path / "r", smoke=False)
    rng = np.random.default_rng(0)
    n = 150
    base = rng.integers(0, 4, n) / 3
    preds = [{"system": s, "checkpoint": None, "epoch": e, "shot": k, "question_id": q, "acc": float(acc)}
             for s, e, shift in (("random", None, 0), ("grpo_epoch1", 1, 1), ("grpo_epoch2", 2, 2))
             for k in (1, 2) for q, acc in enumerate(np.clip(base + shift * rng.integers(0, 2, n) / 3, 0, 1))]
    append_jsonl(run / "eval" / "predictions.jsonl", preds)
    params = load_params(run / "params.yaml", ["stats.n_boot=200", "stats.n_perm=200"])
    stats_for_run(run, params.stats, progress=False)
    out = write_report(run)
    text = out["md"].read_text()
    assert "## 七、总结" in text and "max-T" in text
    assert json.loads((run / "stats" / "summary.json").read_text())["best_epoch"]


def test_adjusted_p_at_the_monte_carlo_floor_reads_as_a_bound(tmp_path):
    """Only a Monte Carlo p at 1 / (n_perm + 1) is a bound ("≤", with a note); an exact p never is."""
    run = make_run(tmp_path / "r")
    df = comparisons_df()
    row = (df.subset == "all") & (df.kind == "epoch_vs_previous")
    df.loc[row, ["p", "p_adj"]] = [1 / 10001, 0.0088]  # n_perm = 10 000 (default)
    df.to_csv(run / "stats" / "comparisons.csv", index=False)
    exact_en = md(run, "en")
    assert "| [\u22123.4, \u22121.6] | 0.009 | significant drop |" in exact_en and "cannot go below" not in exact_en
    df.loc[row, "p_method"] = "monte_carlo"
    df.to_csv(run / "stats" / "comparisons.csv", index=False)
    zh, en = md(run, "zh"), md(run, "en")
    assert "| [\u22123.4, \u22121.6] | ≤0.009 | significant drop |" in en
    assert "adjusted p ≤ 0.009, n = 1\u202f000" in en  # key findings
    assert "| [+0.9, +0.9] | 0.0120 | significant gain |" in en  # not at the floor: a plain p
    assert "raw p cannot go below 0.00010" in en and "原始 p 最小只能到 0.00010" in zh
    assert Counter(numbers_in(zh)) == Counter(numbers_in(en))


def test_epochs_are_named_by_their_checkpoints(tmp_path):
    """Checkpoint files count from 1 (grpo_epoch1.pt = logged epoch 0): the report names files, not epochs."""
    run = make_run(tmp_path / "r", with_log=False)
    init = {"kind": "epoch", "phase": "init", "epoch": -1, "val/rce_loss": 0.5, "val/reward@2": 0.30}
    logged = [{"kind": "epoch", "phase": "grpo", "epoch": e, "val/rce_loss": loss, "val/reward@2": reward,
               "checkpoint": f"checkpoints/grpo_epoch{e + 1}.pt"} for e, loss, reward in ((0, 1.2, 0.40),
                                                                                           (1, 1.3, 0.45))]
    append_jsonl(run / "train_log.jsonl", [init, *logged])
    en = md(run, "en")
    # the pre-training line (lowest loss) is no checkpoint to choose
    assert ("the lowest loss is at grpo_epoch1 (1.200), the highest reward at grpo_epoch2 (0.450)") in en
    assert "| init | — | — | 0.500 | 0.300 |" in en and "| grpo | 1 | grpo_epoch1 | 1.200 | 0.400 |" in en  # 1-based
    assert "| grpo_epoch | 1 | grpo_epoch1 | +3.4 | 0.0300 | 0.0900 |" in en  # best-epoch table: the file
    assert "the best epoch on test, grpo_epoch1 (+3.4 points)" in en
    assert "The checkpoint chosen by validation reward, grpo_epoch2 (validation reward 0.450)" in en


def test_forest_caption_mentions_squares_only_with_summary_rows(run):
    assert "Squares: summary-only" not in md(run, "en")  # the hand-built run is all paired
    df = pd.read_csv(run / "stats" / "comparisons.csv")
    df.loc[df.index[0], "mode"] = "summary"
    df.to_csv(run / "stats" / "comparisons.csv", index=False)
    assert "Squares: summary-only" in md(run, "en")


def test_configuration_shows_batch_agreement(run):
    assert "one-at-a-time" not in md(run, "en")  # no lvlm_agreement.json: no row
    (run / "lvlm_agreement.json").write_text(json.dumps(
        {"fingerprint": "f", "batch_size": 16, "dtype": "bfloat16", "seed": 0, "n": 64, "agree": 63, "differ": []}))
    en, zh = md(run, "en"), md(run, "zh")
    config = en.split("## II.")[1].split("## III.")[0]
    assert "| Batch agreement | batched answers equal one-at-a-time answers on 63/64 prompts (batch 16, bfloat16) |" \
        in config
    assert "批处理答案与逐条答案在 63/64 个提示上相同（批大小 16，bfloat16）" in zh.split("## 二")[1].split("## 三")[0]


def test_levels_follow_alpha_and_power_says_its_alpha(tmp_path):
    """stats.alpha = 0.1: 90% intervals, 80% TOST intervals; MDE and n needed say "at α/3"; naive p one-sided."""
    run = make_run(tmp_path / "r")
    params = load_params(run / "params.yaml", ["stats.alpha=0.1"])
    atomic_write_text(run / "params.yaml", dump_yaml(params))
    summary = json.loads((run / "stats" / "summary.json").read_text())
    write_summary(run, params.stats, summary)  # the statistics were made at α = 0.1 (their summary says so)
    df = comparisons_df()
    df.loc[0, ["kind", "family", "label"]] = ["explicit", "primary", "new best vs baseline"]
    df.to_csv(run / "stats" / "comparisons.csv", index=False)
    en, zh = md(run, "en"), md(run, "zh")
    assert "95%" not in en and "| 90% interval | 80% interval (TOST) |" in en and "90% 置信区间" in zh
    assert "bootstrap 95%" not in en and "exact paired sign-flip test" in en
    assert "At n = 100 and α/3 (the family's level)" in en and "to confirm a difference of the observed size" in en
    assert "sign test p = 0.50: 12 questions improved, 8 worsened" in en and "McNemar" not in en
    assert "| Naive p (one-sided) | max-T p |" in en and "Both p-values are one-sided" in en
    assert "(power 80% at α/3, SD of differences" in en and "（功效 80%，α/3，" in zh
    assert "| grpo_epoch2 (new best vs baseline) | random | 1 |" in en
    assert "**Explicit comparisons (the primary family, adjusted on its own)**" in en
    assert Counter(numbers_in(zh)) == Counter(numbers_in(en))


# ------------------------------------------------------------------ selection over shots
def test_rule_maxt_speaks_of_the_joint_test_over_shots():
    """A lineage with a joint best-epoch test (one max-T over every epoch and shot): its sentence quotes the joint
    p, names the shot it picked and says what was picked among; the per-shot tests make no sentence of their own."""
    t = Text("en")
    per_shot = [{"lineage": "grpo_epoch", "scope": "shot", "shot": k, "best_system": "grpo_epoch2", "best_diff": d,
                 "naive_p": 0.001, "maxT_p": 0.004, "epochs": [1, 2]} for k, d in ((1, 0.9), (2, 0.2))]
    joint = {"lineage": "grpo_epoch", "scope": "joint", "shot": "all", "shots": [1, 2], "best_shot": 1,
             "best_system": "grpo_epoch2", "best_diff": 0.9, "naive_p": 0.001, "maxT_p": 0.007, "epochs": [1, 2],
             "n_epochs": 2, "n_shots": 2}
    kept = find_maxt(facts(best_epoch=per_shot + [joint], baseline="random"), t)
    assert kept == ["grpo at shot 1: the best checkpoint on test, grpo_epoch2 (+0.9 points), stays significant both "
                    "after picking it among 2 epochs × 2 shots (max-T p = 0.007) and after the family's correction "
                    "(m = 3, adjusted p = 0.0120)."]
    lost = find_maxt(facts(best_epoch=per_shot + [joint | {"maxT_p": 0.08}], baseline="random"), t)
    assert lost == ["grpo at shot 1: the best epoch on test, grpo_epoch2 (+0.9 points), has naive p = 0.001 but "
                    "max-T p = 0.0800 once picking the best epoch and shot is accounted for: not significant."]
    assert rec_honest(facts(best_epoch=per_shot + [joint | {"maxT_p": 0.08}]), t)  # the joint test lost it
    assert rec_honest(facts(best_epoch=per_shot + [joint]), t) is None  # the per-shot rows are not read alone


def test_rows_pooled_over_shots_read_all_shots(run):
    """A claim over every shot has a row pooled over the shots (shot -1 in comparisons.csv): the tables, the answer
    and the details show it as "1–2 (all shots)", after the claim's per-shot rows; the best-epoch table shows the
    joint row the same way, with the shot its best checkpoint was picked at."""
    df = comparisons_df()
    df["shots"] = df["shot"].astype(str)
    claim = df[(df.subset == "all") & (df.system_b == "grpo_epoch2") & (df.kind == "vs_baseline")].index
    df.loc[claim, ["kind", "family", "label"]] = ["explicit", "primary", "GRPO over shots"]
    pooled = df.loc[[claim[0]]].assign(shot=-1, shots="1,2", diff=0.55, ci_low=0.1, ci_high=1.0, p_adj=0.03,
                                       verdict="better")
    pd.concat([df, pooled], ignore_index=True).to_csv(run / "stats" / "comparisons.csv", index=False)
    summary = json.loads((run / "stats" / "summary.json").read_text())
    summary["best_epoch"].append({"lineage": "grpo_epoch", "scope": "joint", "shot": "all", "shots": [1, 2],
                                  "best_shot": 1, "best_system": "grpo_epoch1", "best_diff": 3.4, "naive_p": 0.03,
                                  "maxT_p": 0.2, "n_epochs": 2, "n_shots": 2})
    atomic_write_json(run / "stats" / "summary.json", summary)
    en, zh = md(run, "en"), md(run, "zh")
    table = [ln for ln in en.splitlines() if ln.startswith("| grpo_epoch2 (GRPO over shots) | random |")]
    assert [ln.split(" | ")[2] for ln in table] == ["1", "2", "1–2 (all shots)"]  # the pooled row last
    assert f"| GRPO over shots | 1–2 (all shots) | per question, all test questions, n = 1{GROUP_SEP}000 | +0.6 " \
           "[+0.1, +1.0]" in en
    assert "  - Shot 1–2 (all shots): grpo_epoch2 " in en and "  - Shot 1–2（全部 shot）：grpo_epoch2 " in zh
    assert "| grpo_epoch | 1–2 (all shots) | grpo_epoch1 (shot 1) | +3.4 | 0.0300 | 0.20 |" in en
    assert "The “all shots” row is one test" in en and "“全部 shot”一行只检验一次" in zh
    assert not re.search(r"\| [−-]1 \||Shot [−-]1", en)
    assert Counter(numbers_in(zh)) == Counter(numbers_in(en))


def test_configuration_shows_the_lvlm_work_of_each_stage(run):
    """lvlm_work.json (icl_kit.lvlm.work_record) in the configuration table: a model's FLOPs at 3B size, the
    simulator's prompts only; zh and en print the same numbers."""
    from icl_kit.lvlm.work import QWEN2_5_VL_3B, Work, flops
    from icl_kit.lvlm.work_record import add_work

    assert "LVLM work" not in md(run, "en")  # nothing recorded: no row
    measured = Work(prompts=1200, images=3000, images_encoded=800, vision_patches=800 * 1024,
                    prefill_tokens=900_000, decode_tokens=12_000, logit_tokens=13_200)
    add_work(run / "lvlm_work.json", "eval", measured)
    add_work(run / "lvlm_work.json", "train", Work(prompts=64, images=192, label="simulated: no model ran"))
    en, zh = md(run, "en"), md(run, "zh")
    tflop = flops(measured, QWEN2_5_VL_3B)["total"] / 1e12
    row = next(ln for ln in en.splitlines() if ln.startswith("| LVLM work |"))
    assert f"eval: 1{GROUP_SEP}200 prompts, 3{GROUP_SEP}000 images (800 encoded), 900{GROUP_SEP}000 prefill and " \
           f"12{GROUP_SEP}000 decode tokens, ≈ {tflop:.1f} TFLOP at 3B size" in row
    assert "train: 64 prompts with 192 images (simulated: no model ran, no FLOPs)" in row
    assert Counter(numbers_in(zh)) == Counter(numbers_in(en))
