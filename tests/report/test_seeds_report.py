"""A run of several training seeds: the report separates "this method" claims (tested over the seeds) from
"this checkpoint" claims (one trained file), from rows the kit's own statistics made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from icl_kit.core.config import dump_yaml, load_params
from icl_kit.core.runs import append_jsonl, atomic_write_text
from icl_kit.report.build import load_inputs
from icl_kit.report.sections import build_markdown
from icl_kit.stats.run import run_stats, summarise, write_outputs

SEEDS = (0, 1, 2)


def seeded_run(root: Path) -> Path:
    params = load_params(None, ["lvlm.backend=simulated", "data.demo=true", "stats.baseline=random",
                                "report.baseline=random", "train.seeds=[0, 1, 2]", "train.rce.epochs=0",
                                "train.sft.epochs=1", "train.grpo.epochs=1",
                                'eval.systems=["random", "checkpoints/sft_epoch*.pt", "checkpoints/grpo_epoch*.pt"]',
                                'stats.comparisons=[{"a": "sft_epoch1", "b": "grpo_epoch1", "label": "GRPO after '
                                'SFT"}, {"a": "random", "b": "grpo_epoch1_seed0", "label": "one checkpoint"}]',
                                "stats.n_perm=200", "stats.n_boot=100"])
    atomic_write_text(root / "params.yaml", dump_yaml(params))
    rng = np.random.default_rng(0)
    names = ["random"] + [f"{m}_seed{s}" for m in ("sft_epoch1", "grpo_epoch1") for s in SEEDS]
    rows = [{"system": s, "epoch": 0 if "epoch" in s else None, "shot": k, "question_id": q,
             "acc": float(rng.integers(0, 4) / 3)} for s in names for k in (1, 2) for q in range(200)]
    pred = pd.DataFrame(rows)
    (root / "eval").mkdir(parents=True)
    append_jsonl(root / "eval" / "predictions.jsonl", rows)
    pred.groupby(["system", "shot"], as_index=False)["acc"].agg(n="size", accuracy="mean").assign(
        accuracy=lambda d: d.accuracy * 100).to_csv(root / "eval" / "summary.csv", index=False)
    df = run_stats(pred, params.stats)
    write_outputs(root, df, summarise(df, params.stats))
    for s in SEEDS:
        append_jsonl(root / f"train_log_seed{s}.jsonl", [{"kind": "epoch", "phase": "init", "epoch": -1, "step": 0,
                                                          "val/reward@2": 0.4 + s / 100}])
    return root


def test_the_answer_says_which_claims_are_about_the_method_and_which_about_one_checkpoint(tmp_path):
    inputs = load_inputs(seeded_run(tmp_path / "run"))
    assert list(inputs.epochs["val/reward@2"]) == [0.4]  # the first seed's curves, not three interleaved
    for language, method, checkpoint in (("en", "this method, 3 training seeds", "this checkpoint (one training run)"),
                                         ("zh", "该方法，3 个训练种子", "该检查点（一次训练）")):
        cfg = inputs.params.report
        cfg.language = language
        text = build_markdown(inputs, cfg)[0]
        answer = text.split("## II")[0]
        claim_lines = [ln for ln in answer.splitlines() if ln.startswith("| GRPO after SFT")]
        assert len(claim_lines) == 3 and all(method in ln for ln in claim_lines), claim_lines  # 2 shots, pooled
        one = [ln for ln in answer.splitlines() if ln.startswith("| one checkpoint")]
        assert one and all(checkpoint in ln for ln in one), one
        assert "Satterthwaite" in answer
        assert ("seeds (0, 1, 2)" if language == "en" else "（0, 1, 2）") in text
