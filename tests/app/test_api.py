"""The public Python API: `icl_kit.train` stays the trainer whatever was imported first; `load_run` reads a run's
results and `select_icds` replays a checkpoint's selection, both without writing a byte into the run.

The finished run is the tiny demo world (simulated LVLM) trained (one RCE and one GRPO epoch), evaluated with
both checkpoints and the baselines at shots 1 and 2, and its statistics made, in-process, in a scratch folder
with relative runs_dir and data.root; the tests call from other folders.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_run import differences, file_bytes, tiny_params

import icl_kit
from icl_kit.core.config import load_params
from icl_kit.core.errors import KitError
from icl_kit.core.runs import RunPaths
from icl_kit.evaluation.runner import evaluate
from icl_kit.stats.run import stats_for_run
from icl_kit.stats.schema import TEXT_COLUMNS
from icl_kit.train.trainer import train

ROOT = Path(__file__).resolve().parents[2]
NAME = "api"
SHOT = 2
pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ icl_kit.train: no shadowing
def python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


FORWARDS = ("import icl_kit.train.trainer as t; t.train = lambda *a, **k: ('trainer', a, k); "
            "assert icl_kit.train(1, x=2) == ('trainer', (1,), {'x': 2}), icl_kit.train; ")
ORDERS = {
    "submodule_first": "import icl_kit.train.trainer; import icl_kit; assert callable(icl_kit.train); " + FORWARDS,
    "package_first": "import icl_kit; f = icl_kit.train; import sys; assert 'torch' not in sys.modules; "
                     "import icl_kit.train.rewards, icl_kit.train.trainer; assert icl_kit.train is f; "
                     "assert icl_kit.train.trainer.train.__module__ == 'icl_kit.train.trainer'; " + FORWARDS,
    "from_import": "import icl_kit.train; from icl_kit import train; import icl_kit.train.steps; "
                   "assert callable(train) and train is icl_kit.train; " + FORWARDS,
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_train_is_the_trainer_whatever_was_imported_first(order, tmp_path):
    done = python(ORDERS[order], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]


def test_train_calls_the_real_trainer_which_refuses_bad_params(tmp_path):
    """A real call, after the trainer's module was imported: the trainer's own one-sentence refusal, no folder."""
    code = ("import icl_kit.train.trainer, icl_kit\nfrom icl_kit.core.errors import KitError\n"
            "p = icl_kit.load_params(None, ['data.root=nowhere', 'data.demo=false', 'lvlm.backend=simulated'])\n"
            "try:\n    icl_kit.train(p, progress=False)\nexcept KitError as e:\n    print(e)\n"
            "else:\n    raise SystemExit('no refusal')\n")
    done = python(code, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "nowhere" in done.stdout and "data.root" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_no_public_name_is_shadowed_by_a_subpackage():
    """A public name that is also a subpackage must be the callable package itself (icl_kit/train/__init__.py)."""
    pkg = ROOT / "icl_kit"
    shared = {n for n in icl_kit._API if (pkg / n).is_dir() or (pkg / f"{n}.py").is_file()}
    assert shared == icl_kit._CALLABLE_PACKAGES == {"train"}
    assert callable(icl_kit.train) and icl_kit.train.__name__ == "icl_kit.train"


# ------------------------------------------------------------------ a finished run
@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread) -> Path:
    base = tmp_path_factory.mktemp("api")
    tiny = tiny_params(base / "world", NAME, eval={"systems": ["zero_shot", "random", "checkpoints/*_epoch*.pt"],
                                                   "chunk": 64})
    tiny["train"].update(rce={"epochs": 1, "batch_groups": 16}, grpo={"epochs": 1, "batch_groups": 16})
    tiny["data"]["root"] = "world"  # relative, as runs_dir: both mean what they meant where the run was made
    (base / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    with contextlib.chdir(base):  # runs_dir is relative: the tests below call from elsewhere
        params = load_params("tiny.yaml")
        train(params, progress=False)
        evaluate(params, progress=False)
        stats_for_run(params.run_dir, params.stats, progress=False)
    return base / "runs" / NAME


def test_load_run_reads_every_result_as_pandas_does_and_writes_nothing(run):
    before = file_bytes(run)
    res = icl_kit.load_run(run)
    paths = RunPaths(run)
    assert res.run_dir == run and res.params == load_params(paths.params)
    raw = pd.read_csv(paths.comparisons)  # the schema (icl_kit.stats.schema) reads empty text cells as ""
    text = list(TEXT_COLUMNS)
    pd.testing.assert_frame_equal(res.comparisons.drop(columns=text), raw.drop(columns=text), check_dtype=False)
    assert res.comparisons[text].equals(raw[text].astype(object).where(raw[text].notna(), "").astype(str))
    pd.testing.assert_frame_equal(res.accuracy, pd.read_csv(paths.summary))
    pd.testing.assert_frame_equal(res.predictions, pd.read_json(paths.predictions, lines=True, dtype=False))
    assert res.summary.to_json() == json.loads((paths.stats_dir / "summary.json").read_text())
    assert len(res.predictions) == 4 * 2 * 20 and "icd_ids" in res.predictions.columns
    assert f"predictions={len(res.predictions)} rows" in repr(res)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.accuracy = None
    assert differences(before, file_bytes(run)) == []


def test_load_run_gives_none_for_results_not_made_yet(run, tmp_path):
    early = tmp_path / "early"
    shutil.copytree(run, early)
    shutil.rmtree(early / "stats")
    (early / "eval" / "summary.csv").unlink()
    res = icl_kit.load_run(str(early))
    assert res.comparisons is None and res.summary is None and res.accuracy is None
    assert res.predictions is not None and len(res.predictions) == 160
    (early / "eval" / "predictions.jsonl").unlink()
    assert icl_kit.load_run(early).predictions is None


def test_load_run_refuses_a_folder_that_is_not_a_run(run, tmp_path):
    for folder in (tmp_path, tmp_path / "missing", run / "eval"):
        with pytest.raises(KitError) as err:
            icl_kit.load_run(folder)
        message = str(err.value)
        assert "\n" not in message and str(folder) in message and "`icl-kit run <params>`" in message


# ------------------------------------------------------------------ select_icds
def recorded(run: Path) -> pd.DataFrame:
    rows = [json.loads(line) for line in (run / "eval" / "predictions.jsonl").read_text().splitlines()]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("checkpoint", ["grpo_epoch1", "checkpoints/rce_epoch1.pt"])
@pytest.mark.parametrize("shot", [1, SHOT])
def test_select_icds_picks_what_the_evaluation_recorded(run, checkpoint, shot, tmp_path, monkeypatch):
    """Called from an empty folder: the run's relative data.root is found where the run was made (a demo world
    looked for here would be built here)."""
    preds = recorded(run)
    stem = Path(checkpoint).stem
    mine = preds[(preds.system == stem) & (preds["shot"] == shot)].set_index("question_id")
    qids = [int(q) for q in mine.index[[0, 3, 7, 11, 19]]]
    before = file_bytes(run)
    monkeypatch.chdir(tmp_path)
    picked = icl_kit.select_icds(run, qids[::-1], shot, checkpoint=checkpoint)
    assert differences(before, file_bytes(run)) == [] and list(tmp_path.iterdir()) == []
    assert Path.cwd() == tmp_path
    assert [p["question_id"] for p in picked] == qids[::-1]
    assert {p["question_id"]: p["icd_ids"] for p in picked} == {q: list(mine.at[q, "icd_ids"]) for q in qids}
    assert all(p["shot"] == shot and p["system"] == stem and p["checkpoint"] == f"checkpoints/{stem}.pt"
               for p in picked)


def test_select_icds_takes_a_run_results_one_id_and_an_absolute_checkpoint(run):
    preds = recorded(run)
    row = preds[(preds.system == "grpo_epoch1") & (preds["shot"] == SHOT)].iloc[0]
    picked = icl_kit.select_icds(icl_kit.load_run(run), row.question_id, SHOT,  # one id, a numpy int
                                 checkpoint=run / "checkpoints" / "grpo_epoch1.pt")
    assert picked == [{"question_id": row.question_id, "icd_ids": list(row.icd_ids), "shot": SHOT,
                       "system": "grpo_epoch1", "checkpoint": "checkpoints/grpo_epoch1.pt"}]
    assert type(picked[0]["question_id"]) is int


def test_select_icds_knows_a_checkpoint_by_its_eval_names_name(run, tmp_path):
    """eval.names gives the checkpoint its system name: select_icds takes and returns that name."""
    from icl_kit.core.config import dump_yaml

    renamed = tmp_path / "runs" / NAME
    shutil.copytree(run, renamed)
    params = load_params(renamed / "params.yaml", ["eval.names={grpo_epoch1.pt: ours}",
                                                   f"data.root={run.parents[1] / 'world'}"])
    (renamed / "params.yaml").write_text(dump_yaml(params))
    preds = recorded(run)
    row = preds[(preds.system == "grpo_epoch1") & (preds["shot"] == SHOT)].iloc[-1]
    picked = icl_kit.select_icds(renamed, [int(row.question_id)], SHOT, checkpoint="ours")
    assert picked[0]["system"] == "ours" and picked[0]["icd_ids"] == list(row.icd_ids)
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]  # the data was read where it lies


@pytest.mark.parametrize("kwargs,message", [
    ({"question_ids": [10**9]}, r"Question id 1000000000 is not a test question of run .* such as \d+, \d+"),
    ({"question_ids": ["1"]}, r"Question id '1' is not a test question"),
    ({"question_ids": "12"}, r"Question id '12' is not a test question"),
    ({"k": 0}, r"k=0 must be the number of demonstrations"),
    ({"checkpoint": None}, r"has 2 selector checkpoints \(grpo_epoch1, rce_epoch1\); pass checkpoint= one of"),
    ({"checkpoint": "grpo_epoch9"}, r"'grpo_epoch9' is neither a file nor a checkpoint of run .* \(its "
                                    r"checkpoints/ holds grpo_epoch1, rce_epoch1\); pass one of those names"),
])
def test_select_icds_refuses_in_one_sentence_and_writes_nothing(run, kwargs, message):
    test_id = int(recorded(run).question_id.iloc[0])
    args = {"question_ids": [test_id], "k": SHOT, "checkpoint": "grpo_epoch1", **kwargs}
    before = file_bytes(run)
    with pytest.raises(KitError, match=message) as err:
        icl_kit.select_icds(run, **args)
    assert "\n" not in str(err.value)
    assert differences(before, file_bytes(run)) == []


def test_select_icds_refuses_a_pool_question(run):
    """A demonstration (pool) question has a candidate pool too, but the evaluation never selects for it."""
    from icl_kit.data.okvqa import load_data

    with contextlib.chdir(run.parents[1]):  # data.root is relative to the folder the run was made from
        pool_id = load_data(load_params(run / "params.yaml").data)[0][0].question_id
    with pytest.raises(KitError, match=rf"Question id {pool_id} is not a test question"):
        icl_kit.select_icds(run, [pool_id], SHOT, checkpoint="grpo_epoch1")
