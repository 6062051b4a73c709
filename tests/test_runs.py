"""Run folders: atomic writes, JSONL append/resume after a cut line."""

import json

import pytest

from icl_kit.core.config import load_params
from icl_kit.core.errors import KitError
from icl_kit.core.runs import (
    RunPaths,
    append_jsonl,
    atomic_open,
    atomic_write_json,
    prepare_run,
    read_jsonl,
    repair_jsonl,
)


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a" / "x.json"
    atomic_write_json(path, {"v": 1})
    atomic_write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 2}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_failed_atomic_write_keeps_good_output(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as fh:
            fh.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_truncated_last_line_is_ignored_then_repaired(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, [{"k": 1}, {"k": 2}])
    with open(path, "a") as fh:
        fh.write('{"k": 3, "cut')  # a kill mid-write
    assert read_jsonl(path) == [{"k": 1}, {"k": 2}]
    append_jsonl(path, [{"k": 3}])
    assert read_jsonl(path) == [{"k": 1}, {"k": 2}, {"k": 3}]
    assert path.read_text().count("\n") == 3


def test_repair_counts_removed_bytes(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\n{"b"')
    assert repair_jsonl(path) == 4
    assert path.read_text() == '{"a": 1}\n'
    assert repair_jsonl(path) == 0


def test_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(KitError, match="line 2 is not valid JSON"):
        read_jsonl(path)


def test_prepare_run_writes_params_first(tmp_path):
    params = load_params(None, {"runs_dir": str(tmp_path), "run_name": "r1", "seed": 5})
    paths = prepare_run(params)
    assert paths == RunPaths(tmp_path / "r1")
    assert load_params(paths.params) == params
    assert "git_commit" in json.loads((paths.root / "provenance.json").read_text())


def test_changed_params_keep_the_previous_file(tmp_path):
    first = load_params(None, {"runs_dir": str(tmp_path), "run_name": "r", "seed": 1})
    paths = prepare_run(first)
    prepare_run(first)  # same params: nothing archived
    assert not (paths.root / "params_history").exists()
    second = load_params(None, {"runs_dir": str(tmp_path), "run_name": "r", "seed": 2})
    prepare_run(second)
    assert load_params(paths.root / "params_history" / "params.1.yaml") == first
    assert load_params(paths.params) == second
