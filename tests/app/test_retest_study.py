"""params/retest_study.yaml end to end in a small demo world: study files -> audit, import, eval, stats, report."""

from pathlib import Path

import pandas as pd
from study_fixtures import metrics_json, study_convert, study_state_dict, write_v3_pt

from icl_kit.cli import main
from icl_kit.core.config import load_params
from icl_kit.selection.pools import load_pools_meta

PARAMS = Path(__file__).resolve().parents[2] / "params" / "retest_study.yaml"


def test_retest_study_from_its_files(tmp_path, capsys) -> None:
    overrides = [f"data.root={tmp_path / 'demo'}", "data.demo_train=60", "data.demo_test=30",
                 f"runs_dir={tmp_path / 'runs'}", "encoder.dim=24", "selector.input_dim=24",
                 "selector.hidden_dim=16", "pools.size=8", "pools.anchors=10", "eval.shots=[1, 2]",
                 "train.reward.shots=[2]", "train.val_shots=[2]", "stats.subsets=[10]", "stats.n_boot=200",
                 "stats.n_perm=200", "report.language=en"]
    args = ["--params", str(PARAMS), *[a for o in overrides for a in ("-p", o)]]
    run = load_params(PARAMS, overrides).run_dir
    study = run / "study"
    study.mkdir(parents=True)
    write_v3_pt(study / "grpo_epoch1.pt", study_state_dict(24, 16, 1, seed=1))  # seed-era, no gate
    write_v3_pt(study / "rce_epoch2.pt", study_state_dict(24, 16, 3, gate=True, seed=2), phase="rce")
    study_convert(study / "grpo_epoch1.pt")  # the renamed v2 file the study evaluated
    metrics_json(study / "metrics.json", {"LeverLMRetriever": {1: 0.6, 2: 0.62}}, n=100)

    assert main(["audit", *map(str, sorted(study.iterdir())), *args]) == 0
    audit = (run / "report" / "audit.md").read_text()
    assert "`grpo_epoch1_v2format.ckpt`: 6 keys renamed" in audit and "1 findings" in capsys.readouterr().out
    assert main(["import-results", str(study / "metrics.json"), *args]) == 0
    assert main(["eval", *args]) == 0
    summary = pd.read_csv(run / "eval" / "summary.csv")
    acc = {s: g.sort_values("shot")["accuracy"].tolist() for s, g in summary.groupby("system")}
    assert set(acc) == {"zero_shot", "random", "grpo_epoch1", "rce_epoch2", "grpo_epoch1_v2format"}
    assert acc["grpo_epoch1_v2format"] == acc["grpo_epoch1"]  # mapped back: the same selector, the same answers
    assert set(summary["n"]) == {30} and load_pools_meta(run / "pools.json")["sampler"] == "study_rand"
    imported = pd.read_csv(run / "eval" / "imported.csv")
    assert imported[["system", "shot", "n", "accuracy"]].values.tolist() == [["LeverLMRetriever", 1, 100, 60.0],
                                                                             ["LeverLMRetriever", 2, 100, 62.0]]
    assert main(["stats", str(run), *args]) == 0
    comps = pd.read_csv(run / "stats" / "comparisons.csv")
    same = comps[(comps["system_b"] == "grpo_epoch1_v2format") & (comps["system_a"] == "random")]
    assert len(same) and set(comps["n"]) >= {10, 30}
    explicit = comps[comps["family"] == "primary"]  # params/retest_study.yaml's stats.comparisons
    assert set(zip(explicit.system_a, explicit.system_b, strict=True)) == {("random", "grpo_epoch1"),
                                                                           ("rce_epoch2", "grpo_epoch1")}
    assert explicit.label.str.contains("clear gain").any()
    assert main(["report", str(run), *args]) == 0
    assert (run / "report" / "report.md").is_file()
