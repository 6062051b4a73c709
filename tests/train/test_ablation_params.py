"""params/ablation_demo.yaml and notebooks/ablation_grpo.ipynb agree (docs/training.md, "The GRPO ablation"): the
notebook's set-up cell, run on the params file, builds the comparison run the file describes, and every arm is the
file's GRPO with exactly its own options changed."""

import json
from pathlib import Path

from icl_kit.core.config import load_params, to_dict

ROOT = Path(__file__).resolve().parents[2]
ABLATION = "params/ablation_demo.yaml"
NOTEBOOK = ROOT / "notebooks" / "ablation_grpo.ipynb"


def notebook_setup(monkeypatch, params_path: str) -> dict:
    """The namespace of the notebook's parameters cell (params_path replaced) and set-up cell, run from the root."""
    monkeypatch.chdir(ROOT)
    cells = [c for c in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    ns: dict = {}
    exec("".join(cells[0]["source"]), ns)  # the parameters cell: plain values
    ns["params_path"] = params_path
    exec("".join(cells[1]["source"]), ns)  # loads and builds params only; trains nothing
    return ns


def test_the_notebook_builds_the_comparison_run_the_params_file_describes(monkeypatch):
    ns = notebook_setup(monkeypatch, ABLATION)
    start, file = to_dict(ns["start"]), to_dict(load_params(ROOT / ABLATION))
    assert ns["name"] == "ablation_demo" and start["train"]["grpo"]["epochs"] == 0
    start["train"]["grpo"]["epochs"] = file["train"]["grpo"]["epochs"]  # the start trains no GRPO; the arms do
    assert start == file
    assert set(file["eval"]["names"].values()) == {"start"} | {f"grpo_{arm}" for arm in ns["arms"]}


def test_each_arm_changes_only_its_own_options(monkeypatch):
    ns = notebook_setup(monkeypatch, ABLATION)
    default = to_dict(ns["runs"]["default"])
    assert default["train"]["init_checkpoint"].endswith("ablation_demo/checkpoints/rce_epoch1.pt")
    assert (default["train"]["sft"]["epochs"], default["train"]["rce"]["epochs"]) == (0, 0)
    for arm, options in ns["arms"].items():
        run = to_dict(ns["runs"][arm])
        changed = {f"train.grpo.{k}": v for k, v in run["train"]["grpo"].items() if default["train"]["grpo"][k] != v}
        assert changed == options and run["run_name"] == f"ablation_demo_{arm}"
        assert {k: v for k, v in run.items() if k not in ("train", "run_name")} == \
            {k: v for k, v in default.items() if k not in ("train", "run_name")}


def test_the_ablation_runs_the_demo_world(monkeypatch):
    """Only training sizes and the comparison differ from params/demo.yaml; on another params file (nbval's) the
    notebook names its folders after both files, so it never writes into the demo's."""
    demo, file = to_dict(load_params(ROOT / "params/demo.yaml")), to_dict(load_params(ROOT / ABLATION))
    for section in ("data", "encoder", "lvlm", "pools", "selector", "sft_data"):
        assert file[section] == demo[section], section
    assert notebook_setup(monkeypatch, "params/nbval.yaml")["name"] == "ablation_demo_nbval_demo"
