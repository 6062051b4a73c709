"""`icl-kit study retest`: the study's claims from its result files alone (both result layouts, no model, no data,
no demo world), and with its checkpoints re-measured per question in a small demo world (simulated LVLM)."""

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from study_fixtures import baseline_json, metrics_json, study_convert, study_state_dict, write_v3_pt

from icl_kit.cli import main
from icl_kit.core.config import load_params
from icl_kit.core.errors import KitError
from icl_kit.evaluation.io import read_imported
from icl_kit.study.retest import retest

ROOT = Path(__file__).resolve().parents[2]
SEED = {"baseline": {1: 0.642, 2: 0.648, 3: 0.628, 4: 0.614}, "grpo_epoch1": {1: 0.638, 2: 0.658, 3: 0.622, 4: 0.618},
        "grpo_epoch50": {1: 0.648, 2: 0.638, 3: 0.632, 4: 0.618}}  # the seed table, n = 100
Z = 1.959963984540054


def seed_files(d: Path, flat_baseline: bool) -> list[Path]:
    """The seed table as the study's two result files: the baseline alone (its own metrics file, or the random
    baseline's flat layout), the two GRPO runs merged into one metrics.json (dated 2025-12-20 and -21)."""
    d.mkdir(parents=True, exist_ok=True)
    grpo = metrics_json(d / "metrics.json", {"LeverLMRetriever#1": SEED["grpo_epoch1"],
                                             "LeverLMRetriever#2": SEED["grpo_epoch50"]})
    if flat_baseline:
        base = baseline_json(d / "Qwen_RandomRetriever_baseline_metrics.json", SEED["baseline"])
    else:
        base = d / "v2_metrics.json"
        base.write_text(json.dumps({"2025-12-19 08:00:00.000001-test_data_num=100-LeverLMRetriever":
                                    {f"shot_num={k}": v for k, v in SEED["baseline"].items()}}))
    return [base, grpo]


def first_section(md: str) -> str:
    return md.split("\n## ")[1]


@pytest.mark.parametrize("flat_baseline", [False, True])
def test_the_seed_table_from_its_result_files_alone(tmp_path, monkeypatch, capsys, flat_baseline) -> None:
    monkeypatch.chdir(tmp_path)
    base, grpo = seed_files(tmp_path / "study", flat_baseline)
    names = [f"{base.name}=baseline", "2025-12-20=grpo_epoch1", "2025-12-21=grpo_epoch50"]
    args = ["study", "retest", "study", *[a for n in names for a in ("--name", n)], "-p", "report.language=en"]
    assert main(args + (["--n", "100"] if flat_baseline else [])) == 0
    assert "0 of 12 claims survive" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "study"]  # no data set, no demo world
    run = tmp_path / "runs" / "study_retest"
    comps = pd.read_csv(run / "stats" / "comparisons.csv")
    assert len(comps) == 12 and set(comps["mode"]) == {"summary"} and set(comps["subset"]) == {"study_first100"}
    assert set(zip(comps.system_a, comps.system_b, strict=True)) == {  # the study's direction: older -> newer
        ("baseline", "grpo_epoch1"), ("baseline", "grpo_epoch50"), ("grpo_epoch1", "grpo_epoch50")}
    row = comps[(comps.system_b == "grpo_epoch1") & (comps.system_a == "baseline") & (comps.shot == 2)].iloc[0]
    p1, p2 = SEED["baseline"][2], SEED["grpo_epoch1"][2]  # two independent proportions, Wald, by hand
    half = Z * math.sqrt(p1 * (1 - p1) / 100 + p2 * (1 - p2) / 100) * 100
    assert row["diff"] == pytest.approx(1.0) and row["claimed"] == pytest.approx(1.0)
    assert [row.ci_low, row.ci_high] == pytest.approx([1.0 - half, 1.0 + half])
    assert (comps.family_size == 12).all() and (comps.verdict == "inconclusive").all()
    md = (run / "report" / "report.md").read_text()
    answer = first_section(md)
    assert answer.startswith("I. The study's claims, re-tested")
    claim_rows = [line for line in answer.splitlines() if re.match(r"\| grpo_epoch(1|50) vs ", line)]
    assert len(claim_rows) == 12
    for line in claim_rows:
        assert line.endswith("| cannot be told from noise |") and "the study's numbers, n = 100 †" in line
        cells = r"\[[−+]\d+\.\d, [−+]\d+\.\d\] \| 1\.00 \| ±2\d\.\d \| \d+\u202f\d{3}–\d+\u202f\d{3} \|"
        assert re.search(cells, line), line
    headline = ("None of the 12 claims holds from the study's summary numbers at n = 100: each interval is about "
                "±13.3 points wide")
    assert headline in answer and "cannot be told from noise" in answer
    findings = md.split("## V. Key findings")[1].split("## VI.")[0]
    conclusion = md.split("## VII. Conclusion")[1]
    assert headline in findings and headline in conclusion
    assert "(n = 100)" in md and "all test questions" not in md  # the rows say their own n, never "all"
    audit = (run / "report" / "audit.md").read_text()
    assert "## `study/metrics.json`" in audit and "defect 17" in audit and "defect 20" in audit
    zh = retest(["study"], names=names, n=100 if flat_baseline else None, run_dir=tmp_path / "zh")
    zh_md = (zh.run_dir / "report" / "report.md").read_text()
    assert "## 一、研究主张的复检" in zh_md and zh_md.count("| 无法与噪声区分 |") == 12
    assert "仅凭研究的汇总数（n = 100），12 项主张没有一项成立" in zh_md


def test_names_replace_and_claims_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    files = seed_files(tmp_path / "study", False)
    run = tmp_path / "r"
    first = retest(files, run_dir=run)  # default names: the retriever, numbered by date
    assert sorted(read_imported(run)["system"].unique()) == [f"LeverLMRetriever#{i}" for i in (1, 2, 3)]
    assert first.claims == 12
    claims = tmp_path / "claims.yaml"
    claims.write_text("names: {v2_metrics.json: baseline, '2025-12-20': grpo_epoch1}\n"
                      "claims:\n  - {a: baseline, b: grpo_epoch1, shot: 2, claimed: '+1.0', "
                      "label: \"a 'clear gain'\"}\n")
    again = retest(files, run_dir=run, claims_file=claims)  # the same runs renamed: replaced, never duplicated
    table = read_imported(run)
    assert sorted(table["system"].unique()) == ["LeverLMRetriever", "baseline", "grpo_epoch1"]
    assert len(table) == 12 and again.claims == 1
    md = (run / "report" / "report.md").read_text()
    assert "| a 'clear gain' | 2 | +1.0 | 研究的汇总数，n = 100 † | +1.0 [" in md
    claims.write_text("claims:\n  - {a: baseline, b: nobody}\n")
    with pytest.raises(KitError, match=r"Claim 1 \(nobody vs baseline\) names \['nobody'\], which no imported run"):
        retest(files, run_dir=run, claims_file=claims, names=["v2_metrics.json=baseline"])


def test_checkpoints_without_params_and_unmatched_checkpoints_are_refused(tmp_path) -> None:
    files = seed_files(tmp_path / "study", False)
    ckpt = write_v3_pt(tmp_path / "grpo_epoch1.pt", study_state_dict(24, 16, 1))
    with pytest.raises(KitError, match="needs the data and a model: pass --params"):
        retest([*files, ckpt], run_dir=tmp_path / "r", names=["2025-12-20=grpo_epoch1"])
    with pytest.raises(KitError, match=r"would re-measure 'grpo_epoch1', but no imported run is called that"):
        retest([*files, ckpt], run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_checkpoints_re_measured_in_the_demo_world_add_paired_rows(tmp_path, monkeypatch, capsys) -> None:
    """params/retest_study.yaml in a small demo world: each imported claim also tested per question, paired, on
    the study's first N questions and on the whole split; a comparison across worlds is refused."""
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "study"
    d.mkdir()
    metrics_json(d / "metrics.json", {"LeverLMRetriever#1": {1: 0.6, 2: 0.62}, "LeverLMRetriever#2": {1: 0.63, 2: 0.6}},
                 n=20)
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    write_v3_pt(ckpts / "rce_epoch2.pt", study_state_dict(24, 16, 1, seed=2), phase="rce")
    study_convert(write_v3_pt(ckpts / "grpo_epoch1.pt", study_state_dict(24, 16, 1, seed=1)))
    overrides = ["data.root=demo", "data.demo_train=60", "data.demo_test=30", "encoder.dim=24", "selector.input_dim=24",
                 "selector.hidden_dim=16", "pools.size=8", "pools.anchors=10", "eval.shots=[1, 2]",
                 "train.reward.shots=[2]", "train.val_shots=[2]", "report.language=en"]
    params = ROOT / "params" / "retest_study.yaml"
    args = ["study", "retest", "study", "ckpts/rce_epoch2.pt", "ckpts/grpo_epoch1_v2format.ckpt", "--params",
            str(params), "--name", "12-20=rce_epoch2", "--name", "12-21=grpo_epoch1",
            *[a for o in overrides for a in ("-p", o)]]
    assert main(args) == 0
    assert "2 checkpoints re-measured per question" in capsys.readouterr().out
    run = load_params(params, overrides).run_dir
    comps = pd.read_csv(run / "stats" / "comparisons.csv")
    assert (comps.family == "primary").all()
    by = {(m, s): g for (m, s), g in comps.groupby(["mode", "subset"])}
    assert set(by) == {("summary", "study_first20"), ("paired", "first20"), ("paired", "all")}
    assert set(by[("paired", "all")].n) == {30} and set(by[("paired", "first20")].n) == {20}
    for g in by.values():  # the same two claims (shots 1, 2) on each kind of evidence
        assert g.label.tolist() == ["grpo_epoch1 vs rce_epoch2"] * 2 and g.shot.tolist() == [1, 2]
    paired = by[("paired", "all")]
    assert set(paired.system_a) == {"rce_epoch2 (re-measured)"} and paired.sd_diff.notna().all()
    summary = pd.read_csv(run / "eval" / "summary.csv")
    assert set(summary.system) == {"rce_epoch2 (re-measured)", "grpo_epoch1 (re-measured)"}
    answer = first_section((run / "report" / "report.md").read_text())
    assert answer.count("| grpo_epoch1 vs rce_epoch2 | 1 |") == 3  # summary, first 20 and all 30, side by side
    assert "re-measured per question, first 20 questions, n = 20" in answer
    assert "re-measured per question, all test questions, n = 30" in answer
    # the study's reported numbers and the kit's re-measurement are two worlds: never compared
    before = (run / "stats" / "comparisons.csv").read_bytes()
    cross = "stats.comparisons=[{a: rce_epoch2, b: 'grpo_epoch1 (re-measured)'}]"
    assert main(["stats", str(run), "-p", cross]) == 2
    err = capsys.readouterr().err
    assert ("Comparison grpo_epoch1 (re-measured) vs rce_epoch2 is refused: rce_epoch2 is the study's reported "
            "numbers on its first 20 test questions, grpo_epoch1 (re-measured) is evaluated per question in this run"
            ) in err and err.count("\n") == 1
    assert (run / "stats" / "comparisons.csv").read_bytes() == before
