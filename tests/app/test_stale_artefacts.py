"""The artefacts a stage reuses or extends (embeddings.pt, pools.json, rollouts.jsonl, sft_data.jsonl) carry a
sidecar `<stem>.meta.json` naming the params that shaped them (icl_kit.core.artefacts): after a finished run, a
changed shaping param is refused in one sentence naming it, with every file left as it was, and the documented
fix (delete what the sentence names) rebuilds; a param that shapes nothing is no refusal.

The finished run is a tiny demo-world run (simulated LVLM) with SFT beams and offline rollouts, trained in-process.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from tiny_run import differences, file_bytes, tiny_params

from icl_kit.cli import main
from icl_kit.core.artefacts import ARTEFACTS, FINGERPRINTED, flatten, record, shaping_params
from icl_kit.core.config import load_params, to_dict
from icl_kit.core.runs import RunPaths
from icl_kit.core.sidecars import UNKNOWN, problem
from icl_kit.run_context import RunContext
from icl_kit.train.trainer import train

NAME = "done"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with the demo world, tiny.yaml and a finished run runs/done (SFT beams, offline rollouts)."""
    base = tmp_path_factory.mktemp("stale")
    tiny = tiny_params(base / "world", NAME)
    tiny["sft_data"] = {"beam_size": 2, "max_queries": 6}
    tiny["train"].update(rollouts={"mode": "offline", "beam_size": 1, "temperatures": [1.0],
                                   "samples_per_temperature": 2, "n_random": 1, "max_queries": 24},
                         sft={"epochs": 1, "batch_groups": 16}, rce={"epochs": 0},
                         grpo={"epochs": 1, "batch_groups": 16})
    (base / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    with contextlib.chdir(base):
        train(load_params("tiny.yaml"), progress=False)
    run = base / "runs" / NAME
    assert all((run / ARTEFACTS[n].path).is_file() and (run / ARTEFACTS[n].meta).is_file() for n in FINGERPRINTED)
    return base


@pytest.fixture
def copy(work, request):
    """A copy of the finished run as runs/<test name> (run_name shapes no artefact), and its params overrides."""
    name = re.sub(r"\W+", "_", request.node.name)[:60]
    shutil.copytree(work / "runs" / NAME, work / "runs" / name)
    yield work / "runs" / name, ["--params", "tiny.yaml", "-p", f"run_name={name}"]
    shutil.rmtree(work / "runs" / name)


def refused(work: Path, argv: list[str], capsys) -> str:
    """Run `icl-kit argv` in `work`; it must refuse in one sentence without changing any file there."""
    before = file_bytes(work)
    with contextlib.chdir(work):
        code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("icl-kit: error: ") and "\n" not in err and err.endswith("."), err
    assert differences(before, file_bytes(work)) == []
    return err.removeprefix("icl-kit: error: ")


def succeeds(work: Path, argv: list[str], capsys) -> None:
    with contextlib.chdir(work):
        code = main(argv)
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()


def sidecar(run: Path, name: str) -> dict:
    return json.loads((run / ARTEFACTS[name].meta).read_text())


def artefact_bytes(run: Path) -> dict[str, bytes]:
    """The four fingerprinted artefacts and their sidecars (a command with another run_name rewrites params.yaml)."""
    return {p: (run / p).read_bytes() for n in FINGERPRINTED for p in (ARTEFACTS[n].path, ARTEFACTS[n].meta)}


# --------------------------------------------------------------------------- every key of the table
def changed(value):
    """Another value of the same kind (the sidecar compares values; they need not pass the params' checks)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "_other"
    if isinstance(value, list):
        return [*value, value[-1]] if value else [1]
    return 1  # None


def with_value(params, key: str, value) -> dict:
    raw = to_dict(params)
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        node = node[part]
    node[last] = value
    return raw


@pytest.mark.parametrize("name", FINGERPRINTED)
def test_every_shaping_param_is_named_and_no_other_key_matters(work, name):
    """Each key the table lists for the artefact (as this run resolves it) is named 'key: old -> new' when it
    changes; a change of any other key of the params is no difference."""
    with contextlib.chdir(work):
        params = load_params("tiny.yaml")
        ctx = RunContext.build(params, commit=False)
    path, data = work / "runs" / NAME / ARTEFACTS[name].path, ctx.store.record(name)["data"]
    assert problem(name, path, record(name, params, data)) is None
    shaping = shaping_params(name, params)
    assert shaping, name
    for key, value in flatten(params).items():
        found = problem(name, path, record(name, with_value(params, key, changed(value)), data))
        if key in shaping:
            assert found and any(c.startswith(f"{key}: ") for c in found), (name, key, found)
        else:
            assert found is None, (name, key, found)


def test_the_shaping_params_of_the_table(work):
    with contextlib.chdir(work):
        params = load_params("tiny.yaml")
    keys = {n: set(shaping_params(n, params)) for n in FINGERPRINTED}
    assert {"sft_data.beam_size", "sft_data.score", "sft_data.answer", "sft_data.max_shots", "pools.seed",
            "lvlm.prompt.icd_template"} <= keys["sft_data"]
    assert not {"sft_data.chunk", "sft_data.build", "lvlm.generation.num_beams"} & keys["sft_data"]
    assert {"train.rollouts.temperatures", "train.rollouts.beam_size", "train.rollouts.n_random", "encoder.dim",
            "selector.hidden_dim", "train.reward.shots", "lvlm.generation.num_beams"} <= keys["rollouts"]
    assert not {"train.rollouts.group_size", "train.rollouts.online_temperature", "lvlm.batch_size",
                "train.grpo.lr"} & keys["rollouts"]  # online sampling and training never touch the file
    assert keys["embeddings"] == {"encoder.backend", "encoder.dim"}  # encoder.model: none with the simple one
    assert keys["pools"] == {"pools.sampler", "pools.size", "pools.seed"}  # anchors: only with study_rand
    assert not any("report" in k or "stats" in k or k.startswith("eval.") for ks in keys.values() for k in ks)


# ------------------------------------------------------------------------------- the stages
CASES = [  # (id, command, overrides, the sentence, the artefacts it names)
    ("sft_beam_size", "sft-data", ["sft_data.beam_size=3"], r"sft_data\.beam_size: 2 -> 3", ["sft_data"]),
    ("sft_score", "sft-data", ["sft_data.score=logprob"], r"sft_data\.score: 'prob' -> 'logprob'", ["sft_data"]),
    ("sft_answer", "sft-data", ["sft_data.answer=vqa_weighted"], r"sft_data\.answer: 'most_frequent' -> 'vqa_weighted'",
     ["sft_data"]),
    ("sft_max_shots", "sft-data", ["sft_data.max_shots=1"], r"sft_data\.max_shots: 2 -> 1", ["sft_data"]),
    ("pools_seed", "sft-data", ["pools.seed=7"], r"pools\.seed: 42 -> 7", ["pools", "sft_data"]),
    ("rollouts_temperatures", "train", ["train.rollouts.temperatures=[0.5]"],
     r"train\.rollouts\.temperatures: \[1\.0\] -> \[0\.5\]", ["rollouts"]),
    ("rollouts_samples", "train", ["train.rollouts.samples_per_temperature=3"],
     r"train\.rollouts\.samples_per_temperature: 2 -> 3", ["rollouts"]),
    ("encoder_dim", "train", ["encoder.dim=8", "selector.input_dim=8"], r"encoder\.dim: 16 -> 8",
     ["embeddings", "rollouts"]),
]


@pytest.mark.parametrize("command,overrides,message,names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_changed_shaping_param_is_refused_then_the_fix_rebuilds(work, copy, capsys, command, overrides, message,
                                                                  names):
    run, args = copy
    argv = [command, *args, *(a for o in overrides for a in ("-p", o))]
    err = refused(work, argv, capsys)
    assert re.search(message, err), err
    stale = [f"{run.relative_to(work)}/{ARTEFACTS[n].path}" for n in names]
    assert all(s in err for s in stale) and "made with other params" in err, err
    metas = [ARTEFACTS[n].meta for n in names]
    fix = f"it and {metas[0]} to rebuild it" if len(names) == 1 else \
        f"them and their sidecars ({', '.join(metas)}) to rebuild them"
    assert err.endswith(f"restore those params, choose a new run_name, or delete {fix}."), err
    for n in names:  # the documented fix
        (run / ARTEFACTS[n].path).unlink()
        (run / ARTEFACTS[n].meta).unlink()
    if command == "train":  # the resume state was saved with the old params too: its own sentence says so
        assert "delete the checkpoints folder to retrain" in refused(work, argv, capsys)
        shutil.rmtree(run / "checkpoints")
    succeeds(work, argv, capsys)
    key, value = overrides[0].split("=")
    for n in names:
        assert str(sidecar(run, n)["params"][key]) == str(yaml.safe_load(value)), (n, sidecar(run, n))


def test_a_param_that_shapes_no_artefact_is_no_refusal(work, copy, capsys):
    run, args = copy
    before = artefact_bytes(run)
    for command in ("sft-data", "train"):
        succeeds(work, [command, *args, "-p", "report.language=zh", "-p", "lvlm.batch_size=7"], capsys)
    assert artefact_bytes(run) == before


def test_an_artefact_without_sidecar_is_refused_unless_empty(work, copy, capsys):
    run, args = copy
    paths = RunPaths(run)
    paths.sidecar("sft_data").unlink()
    err = refused(work, ["sft-data", *args], capsys)
    assert err == (f"{paths.sft_data.relative_to(work)} has no sft_data.meta.json (an older icl-kit made it), so "
                   "the params it was made with are unknown; delete it to rebuild it, or choose a new run_name.")
    assert problem("sft_data", paths.sft_data, {}) == UNKNOWN
    paths.sft_data.write_text('{"question_id": 1, "cut')  # no complete line (a kill mid-write): nothing to reuse
    succeeds(work, ["sft-data", *args], capsys)
    assert paths.sidecar("sft_data").is_file() and paths.sft_data.read_bytes().endswith(b"\n")
    paths.sidecar("pools").unlink()
    assert "pools.json has no pools.meta.json" in refused(work, ["sft-data", *args], capsys)


def test_pools_meta_of_an_older_kit_still_names_its_params(work, copy, capsys):
    run, args = copy
    paths = RunPaths(run)
    paths.sidecar("pools").write_text(json.dumps({"sampler": "rand", "size": 8, "seed": 42, "source": "drawn"}))
    before = artefact_bytes(run)
    succeeds(work, ["sft-data", *args], capsys)  # the same params: accepted, nothing rewritten
    assert artefact_bytes(run) == before
    paths.sidecar("pools").write_text(json.dumps({"sampler": "rand", "size": 8, "seed": 1, "source": "drawn"}))
    assert "pools.seed: 1 -> 42" in refused(work, ["sft-data", *args], capsys)


def test_a_build_resumed_after_a_kill_ends_with_the_same_bytes(work, copy, capsys):
    """Killed after the sidecar and before the first line, or in the middle of a line: the resumed build leaves
    the sidecar as it was and ends with the same lines."""
    run, args = copy
    paths = RunPaths(run)
    done = paths.sft_data.read_bytes(), paths.sidecar("sft_data").read_bytes()
    paths.sft_data.unlink()
    succeeds(work, ["sft-data", *args], capsys)
    assert (paths.sft_data.read_bytes(), paths.sidecar("sft_data").read_bytes()) == done
    first, rest = done[0].split(b"\n", 1)
    paths.sft_data.write_bytes(first + b"\n" + rest[: len(rest) // 2])
    succeeds(work, ["sft-data", *args], capsys)
    assert (paths.sft_data.read_bytes(), paths.sidecar("sft_data").read_bytes()) == done
