"""A failed command leaves everything as it was: every refusal against a finished run ends in one sentence
(exit 2), and every file under the working folder (the run, its siblings, the data) keeps its bytes.

The finished run is the tiny demo world (simulated LVLM) trained, evaluated, tested and reported in-process.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tiny_run import differences, file_bytes, tiny_params

from icl_kit.cli import main
from icl_kit.core.config import load_params
from icl_kit.data.okvqa import load_data
from icl_kit.evaluation.runner import evaluate
from icl_kit.report.build import write_report
from icl_kit.selection.checkpoints import save_v3
from icl_kit.selection.convert import convert_v3_to_v2
from icl_kit.selection.selector import PointerSelector
from icl_kit.stats.run import stats_for_run
from icl_kit.train.trainer import train

NAME = "done"
FOREIGN_DIM = 32  # input dim of a checkpoint trained elsewhere (the run's embeddings are 16-d)


def rollout_line(qid: int, pool: list[int], picks: int = 2) -> dict:
    return {"question_id": qid, "pool": pool, "candidates": [
        {"icd_ids": pool[:picks], "positions": list(range(picks)), "gen_method": "beam", "pred": "x", "acc": 0.0,
         "correct": False, "gt_prob": None}]}


def write_rollouts(folder: Path, lines: list) -> None:
    folder.mkdir(parents=True)
    (folder / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder holding a finished run (runs/done), the data, and the inputs the refusals below use."""
    base = tmp_path_factory.mktemp("refusals")
    tiny = tiny_params(base / "world", NAME, eval={"systems": ["zero_shot", "random", "checkpoints/grpo_epoch*.pt"],
                                                   "chunk": 64})
    tiny["train"].update(rce={"epochs": 1, "batch_groups": 16}, grpo={"epochs": 1, "batch_groups": 16})
    (base / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    with contextlib.chdir(base):
        params = load_params("tiny.yaml")
        train(params, progress=False)
        evaluate(params, progress=False)
        stats_for_run(params.run_dir, params.stats, progress=False)
        write_report(params.run_dir)
        pool_ids = sorted(r.question_id for r in load_data(params.data)[0])[:8]
    _inputs(base, pool_ids)
    return base


def _inputs(base: Path, known: list[int]) -> None:
    """Bad params files, foreign checkpoints, rollouts of other data, obstacles for OS errors."""
    files = {
        "empty.yaml": "", "blank.yaml": "\n\n   \n", "comments.yaml": "# nothing here\n# at all\n",
        "dup_top.yaml": "run_name: a\nseed: 1\nrun_name: b\n",
        "dup_nested.yaml": "train:\n  grpo:\n    lr: 0.1\n    epochs: 2\n    lr: 0.2\n",
        "dup_section.yaml": (base / "tiny.yaml").read_text() + "train:\n  seed: 3\n",
        "nan.yaml": "train:\n  grpo:\n    lr: .NaN\n", "inf.yaml": "stats:\n  alpha: .inf\n",
        "afile": "not a folder\n",
    }
    for name, text in files.items():
        (base / name).write_text(text)
    foreign = PointerSelector(input_dim=FOREIGN_DIM, hidden_dim=16)
    save_v3(base / "foreign.pt", foreign, epoch=0, phase="grpo", kl_beta=0.1, metrics={})
    convert_v3_to_v2(base / "foreign.pt", base / "foreign_v2format.ckpt")
    (base / "rl.json").write_text(json.dumps({str(known[0]): {"candidate_pool_ids": known[1:], "pointer_candidates": [
        {"pointer": [0, 1], "gen_method": "beam", "vqa_pred_answer": "x", "vqa_correct": 0, "vqa_acc_score": 0.0}]}}))
    (base / "results.json").write_text(json.dumps({"2024-x-test_data_num=20-y": {"shot_num=1": 0.4}}))
    runs = base / "runs"
    write_rollouts(runs / "foreign_queries", [rollout_line(10**9 + 1, known), rollout_line(known[0], known[1:])])
    write_rollouts(runs / "foreign_candidates", [rollout_line(known[0], [10**9 + 2, *known[1:]])])
    write_rollouts(runs / "short_rollouts", [rollout_line(known[0], known[1:], picks=1)])
    write_rollouts(runs / "bad_line", [{"question_id": known[0], "candidates": []}])
    (runs / "blocked").write_text("a file where a run folder would go\n")


OFFLINE = ["-p", "train.rollouts.mode=offline", "-p", "train.rollouts.beam_size=1"]
RUN = f"runs/{NAME}"
CASES = [
    # 1. refused after loading params and before writing: nothing may change (not even params.yaml)
    ("data_root_typo_train", ["train", "--params", "tiny.yaml", "-p", "data.root=nowhere", "-p", "data.demo=false"],
     r"file nowhere/\S+ is missing; check data.root"),
    ("data_root_typo_eval", ["eval", "--params", "tiny.yaml", "-p", "data.root=nowhere", "-p", "data.demo=false"],
     r"is missing; check data.root"),
    ("test_split_typo", ["eval", "--params", "tiny.yaml", "-p", "data.test_split=vall"],
     r"vall2014_questions\.json is missing; check data.root"),
    ("eval_n_above_split", ["eval", "--params", "tiny.yaml", "-p", "eval.questions=first", "-p", "eval.n=999"],
     r"Asked for n=999 questions but the split holds 20"),
    ("eval_random_n_above_split", ["eval", "--params", "tiny.yaml", "-p", "eval.questions=random", "-p", "eval.n=21"],
     r"Asked for n=21 questions but the split holds 20"),
    ("resume_refused_lr", ["train", "--params", "tiny.yaml", "-p", "train.grpo.lr=0.5"],
     r"last\.pt was saved with different training params \(train\.grpo\.lr: 0\.0001 -> 0\.5\)"),
    ("resume_refused_pools", ["train", "--params", "tiny.yaml", "-p", "pools.seed=7"], r"pools\.seed: 42 -> 7"),
    ("resume_refused_max_queries", ["train", "--params", "tiny.yaml", "-p", "train.rollouts.max_queries=1"],
     r"train\.rollouts\.max_queries: 0 -> 1"),
    ("no_training_queries_left", ["train", "--params", "tiny.yaml", "-p", "run_name=fresh", "-p",
                                  "train.rollouts.max_queries=1", "-p", "train.rollouts.val_fraction=0.9"],
     r"No training queries are left"),
    ("sft_data_missing", ["train", "--params", "tiny.yaml", "-p", "run_name=fresh", "-p", "train.sft.epochs=1",
                          "-p", "sft_data.build=false"],
     r"sft_data\.jsonl does not exist; make it with `icl-kit sft-data"),
    ("init_checkpoint_missing", ["train", "--params", "tiny.yaml", "-p", "run_name=fresh", "-p",
                                 "train.init_checkpoint=nowhere.pt"], r"nowhere\.pt"),
    ("init_checkpoint_other_shape", ["train", "--params", "tiny.yaml", "-p", "run_name=fresh", "-p",
                                     "selector.hidden_dim=32", "-p",
                                     "train.init_checkpoint=runs/done/checkpoints/grpo_epoch1.pt"],
     r"hidden_dim=16 \(params: 32\)"),
    ("eval_other_icds", ["eval", "--params", "tiny.yaml", "-p", "eval.seed=5"],
     r"holds random shot 1 question \d+ with other ICDs than it selects now"),
    ("eval_missing_checkpoint", ["eval", "--params", "tiny.yaml", "-p", "eval.systems=[random, checkpoints/no.pt]"],
     r"'checkpoints/no\.pt' is neither .* nor an existing checkpoint"),
    # 2. accepted silently before
    ("dup_top", ["train", "--params", "dup_top.yaml"], r"gives key 'run_name' twice \(lines 1 and 3\)"),
    ("dup_nested", ["eval", "--params", "dup_nested.yaml"], r"gives key 'lr' twice \(lines 3 and 5\)"),
    ("dup_section", ["train", "--params", "dup_section.yaml"], r"gives key 'train' twice \(lines \d+ and \d+\)"),
    ("nan_in_file", ["train", "--params", "nan.yaml"], r"train\.grpo\.lr=nan must be a finite number"),
    ("inf_in_file", ["stats", RUN, "--params", "inf.yaml"], r"stats\.alpha=inf must be a finite number"),
    ("nan_override", ["train", "--params", "tiny.yaml", "-p", "train.grpo.clip_eps=.nan"],
     r"train\.grpo\.clip_eps=nan must be a finite"),
    ("minus_inf_override", ["eval", "--params", "tiny.yaml", "-p", "stats.equivalence_margin=-.inf"],
     r"stats\.equivalence_margin=-inf must be a finite"),
    ("inf_in_list", ["train", "--params", "tiny.yaml", "-p", "train.rollouts.temperatures=[1.0, .inf]"],
     r"train\.rollouts\.temperatures\[1\]=inf must be a finite"),
    ("empty_run_name", ["train", "--params", "tiny.yaml", "-p", "run_name="], r"run_name='' is empty"),
    ("blank_run_name", ["eval", "--params", "tiny.yaml", "-p", "run_name='  '"], r"run_name='  ' is empty"),
    ("dot_run_name", ["train", "--params", "tiny.yaml", "-p", "run_name=.."], r"run_name='\.\.' must be one folder"),
    ("nested_run_name", ["train", "--params", "tiny.yaml", "-p", "run_name=a/b"], r"run_name='a/b' must be one folder"),
    ("empty_system_name", ["eval", "--params", "tiny.yaml", "-p", "eval.systems=[random, '']"],
     r"eval\.systems\[1\]='' is empty"),
    ("empty_stats_baseline", ["stats", RUN, "-p", "stats.baseline="], r"stats\.baseline='' is empty"),
    ("report_baseline_unknown", ["report", RUN, "-p", "report.baseline=randon"],
     r"report\.baseline='randon' is not a system of stats/comparisons\.csv.*did you mean 'random'"),
    ("report_baseline_zero_shot_typo", ["report", RUN, "-p", "report.baseline=zeroshot"], r"is not a system"),
    ("report_featured_unknown", ["report", RUN, "-p", "report.featured=[grpo_epoch9]"],
     r"report\.featured names 1 system \(grpo_epoch9\) without comparisons"),
    ("stats_baseline_unknown", ["stats", RUN, "-p", "stats.baseline=nope"], r"stats\.baseline='nope' has no results"),
    ("import_results_missing_file", ["study", "import-results", "nope.json", "--run", RUN],
     r"Results file nope\.json does not exist"),
    ("import_results_unknown_name", ["study", "import-results", "results.json", "--name", "other.json=old", "--run",
                                     RUN], r"'other\.json' names no run of the result files"),
    ("import_results_clash", ["study", "import-results", "results.json", "--name", "results.json=random", "--run", RUN],
     r"System 'random' already has per-question results"),
    ("import_results_remove_unknown", ["study", "import-results", "--remove", "nope", "--run", RUN],
     r"--remove 'nope': no imported system of that name"),
    ("retest_missing_claims", ["study", "retest", "results.json", "--run", RUN, "--claims", "nope.yaml"],
     r"Claims file nope\.yaml does not exist"),
    ("retest_one_run_only", ["study", "retest", "results.json", "--run", RUN],
     r"hold no two runs of one world"),
    ("rollouts_foreign_queries", ["train", "--params", "tiny.yaml", "-p", "run_name=foreign_queries", *OFFLINE],
     r"holds 1 query \(1000000001\) outside the demonstration split"),
    ("rollouts_foreign_candidates", ["train", "--params", "tiny.yaml", "-p", "run_name=foreign_candidates", *OFFLINE],
     r"holds 1 candidate \(1000000002\) outside the demonstration split"),
    ("rollouts_wrong_length", ["train", "--params", "tiny.yaml", "-p", "run_name=short_rollouts", *OFFLINE],
     r"has sequences of 1 ICDs, but train\.reward\.shots needs 2"),
    ("rollouts_bad_line", ["train", "--params", "tiny.yaml", "-p", "run_name=bad_line", *OFFLINE],
     r"line 1 is not a rollouts line"),
    ("topk_below_shots", ["eval", "--params", "tiny.yaml", "-p", "eval.pool=similarity_top1"],
     r"eval\.pool='similarity_top1' gives each checkpoint 1 candidates; K must be between max\(eval\.shots\)=2 "
     r"and pools\.size=8"),
    ("topk_above_pool", ["eval", "--params", "tiny.yaml", "-p", "eval.pool=similarity_top9"],
     r"eval\.pool='similarity_top9' gives each checkpoint 9 candidates"),
    ("topk_zero", ["eval", "--params", "tiny.yaml", "-p", "eval.pool=similarity_top0"], r"K must be between"),
    # 3. OS errors about a path
    ("runs_dir_is_a_file", ["train", "--params", "tiny.yaml", "-p", "runs_dir=afile"],
     r"Not a directory: afile/done; a part of the path is a file, not a folder"),
    ("runs_dir_below_a_file", ["eval", "--params", "tiny.yaml", "-p", "runs_dir=afile/deeper"],
     r"Not a directory: afile/deeper/done"),
    ("run_folder_is_a_file", ["train", "--params", "tiny.yaml", "-p", "run_name=blocked"],
     r"File exists: runs/blocked; a file is in the way"),
    ("import_rollouts_into_a_file", ["study", "import-rollouts", "rl.json", "--params", "tiny.yaml", "-p",
                                     "run_name=blocked"],
     r"File exists: runs/blocked; a file is in the way"),
    ("import_rollouts_below_a_file", ["study", "import-rollouts", "rl.json", "--params", "tiny.yaml", "-p",
                                      "runs_dir=afile"],
     r"Not a directory: afile/done; a part of the path is a file"),
    # 4. a checkpoint made for other embeddings
    ("foreign_dim_v3", ["eval", "--params", "tiny.yaml", "-p", "eval.systems=[random, {base}/foreign.pt]"],
     rf"Checkpoint \S+foreign\.pt takes {FOREIGN_DIM}-d embeddings but this run's encoder makes 16-d ones "
     rf"\(selector\.input_dim=16\); .*selector\.input_dim: {FOREIGN_DIM}"),
    ("foreign_dim_v2", ["eval", "--params", "tiny.yaml", "-p", "eval.systems=[{base}/foreign_v2format.ckpt]"],
     rf"foreign_v2format\.ckpt takes {FOREIGN_DIM}-d embeddings"),
    # 6. empty params files
    ("empty_file", ["train", "--params", "empty.yaml"], r"Params file empty\.yaml is empty"),
    ("blank_file", ["eval", "--params", "blank.yaml"], r"Params file blank\.yaml is empty"),
    ("comments_only_file", ["stats", RUN, "--params", "comments.yaml"], r"Params file comments\.yaml is empty"),
]


@pytest.mark.parametrize("argv,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refusal_is_one_sentence_and_changes_nothing(work, argv, message, capsys, monkeypatch):
    monkeypatch.chdir(work)
    before = file_bytes(work)
    code = main([a.format(base=work) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("icl-kit: error: ") and "\n" not in err and err[-1] in ".)?", err
    assert re.search(message, err), err
    assert differences(before, file_bytes(work)) == []


def test_every_class_of_the_issue_has_more_cases_than_its_examples():
    ids = [c[0] for c in CASES]
    assert sum(i.startswith("resume_refused") for i in ids) >= 2 and sum("nan" in i or "inf" in i for i in ids) >= 4
    assert sum(i.startswith("rollouts_") for i in ids) >= 3 and sum(i.startswith("topk_") for i in ids) >= 3


def test_a_stage_that_passed_its_checks_commits_the_folder(work, monkeypatch, capsys):
    """The same eval command without the bad param succeeds and rewrites nothing it did not change."""
    monkeypatch.chdir(work)
    run = work / "runs" / NAME
    before = file_bytes(run)
    assert main(["eval", "--params", "tiny.yaml"]) == 0
    assert differences(before, file_bytes(run)) == []
    capsys.readouterr()


def test_changed_params_are_archived_only_when_the_stage_runs(work, monkeypatch, tmp_path):
    monkeypatch.chdir(work)
    shutil.copytree(work / "runs" / NAME, tmp_path / NAME)
    args = ["eval", "--params", "tiny.yaml", "-p", f"runs_dir={tmp_path}", "-p", "eval.systems=[zero_shot, random]"]
    assert main(args) == 0
    old = load_params(tmp_path / NAME / "params_history" / "params.1.yaml")
    assert old.eval.systems == ["zero_shot", "random", "checkpoints/grpo_epoch*.pt"]
    assert load_params(tmp_path / NAME / "params.yaml").eval.systems == ["zero_shot", "random"]


@pytest.mark.parametrize("kind", ["mkstemp", "replace"])
def test_permission_error_names_the_output_not_the_temp_file(work, monkeypatch, capsys, kind):
    """A read-only run folder (simulated: root ignores file modes) is one sentence naming the file to write."""
    import os
    import tempfile

    monkeypatch.chdir(work)
    denied = PermissionError(13, "Permission denied", "/somewhere/.imported.csv.abcdefgh.1.tmp")
    if kind == "mkstemp":
        monkeypatch.setattr(tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(denied))
    else:
        monkeypatch.setattr(os, "replace", lambda *a, **k: (_ for _ in ()).throw(denied))
    before = file_bytes(work)
    assert main(["study", "import-results", "results.json", "--name", "results.json=old", "--run", RUN]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"icl-kit: error: Permission denied: {RUN}/eval/imported.csv; make it (and the folder it is in) "
                   "readable and writable for you, or choose another path.")
    assert differences(before, file_bytes(work)) == []


def test_unexpected_errors_are_reported_as_bugs_with_their_traceback(monkeypatch, capsys):
    import icl_kit.cli as cli

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "cmd_params", broken)
    assert main(["params"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err and "this is a bug in icl-kit" in err
    monkeypatch.setattr(cli, "cmd_params", lambda args: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    assert main(["params"]) == 1  # an OS error that names no path is not the user's to fix
    assert "this is a bug in icl-kit" in capsys.readouterr().err


def test_foreign_checkpoint_fixture_really_has_other_dims(work):
    assert torch.load(work / "foreign.pt", weights_only=True)["model_state_dict"]["input_proj.weight"].shape[1] == 32
