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


def test_torch_saves_are_canonical(tmp_path):
    """Equal contents give equal bytes whether a repeated string is one object or two copies (pickle's memo)."""
    import io

    import torch

    from icl_kit.core.runs import atomic_torch_save

    phase = "grpo"
    shared = {"phase": phase, "phases": [phase], "w": torch.ones(2)}
    copied = {"phase": "".join(["gr", "po"]), "phases": ["".join(["grp", "o"])], "w": torch.ones(2)}
    assert shared["phase"] is shared["phases"][0] and copied["phase"] is not copied["phases"][0]
    plain = [io.BytesIO(), io.BytesIO()]
    torch.save(shared, plain[0])
    torch.save(copied, plain[1])
    assert plain[0].getvalue() != plain[1].getvalue()  # what a resumed run's last.pt did before
    atomic_torch_save(shared, tmp_path / "a.pt")
    atomic_torch_save(copied, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "b.pt", weights_only=True)["w"], torch.ones(2))


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # exited and reaped: no process has this pid (until the system reuses it)


def test_stale_temps_of_killed_writers_are_removed_and_nothing_else(tmp_path):
    import os

    from icl_kit.core.runs import remove_stale_temps

    (tmp_path / "checkpoints").mkdir()
    dead, live = _dead_pid(), os.getppid()
    names = {
        f"checkpoints/.last.pt.abcd_123.{dead}.tmp": False,  # a killed writer's temp: removed
        "checkpoints/.last.pt.k9x2m0qz.tmp": False,  # the old pattern (no pid): removed
        f"eval/.summary.csv.qwertyui.{live}.tmp": True,  # a live writer (another stage now): kept
        f"checkpoints/.last.pt.zzzzzzzz.{os.getpid()}.tmp": True,  # this process's own write in flight: kept
        "checkpoints/.notes.tmp": True,  # not the kit's pattern: kept
        "checkpoints/last.pt.abcdefgh.1.tmp": True,  # not hidden: kept
        "checkpoints/last.pt": True,
    }
    for rel in names:
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_text("x")
    removed = remove_stale_temps(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in removed) == sorted(k for k, keep in names.items() if not keep)
    assert all((tmp_path / rel).exists() == keep for rel, keep in names.items())
    assert remove_stale_temps(tmp_path / "missing") == []


def test_atomic_write_temp_names_match_the_cleanup_pattern(tmp_path, monkeypatch):
    import os

    from icl_kit.core.runs import TEMP_RE

    seen = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append(os.path.basename(a)), real_replace(a, b)))
    atomic_write_json(tmp_path / "x.json", {})
    match = TEMP_RE.match(seen[0])
    assert match and match.group("target") == "x.json" and int(match.group("pid")) == os.getpid()


def test_os_errors_of_an_atomic_write_name_the_output(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileExistsError) as info:  # the output's folder would be a file
        atomic_write_json(tmp_path / "afile" / "x.json", {})
    assert info.value.filename == str(tmp_path / "afile")
    with pytest.raises(NotADirectoryError) as info:  # a folder above it is a file
        atomic_write_json(tmp_path / "afile" / "sub" / "x.json", {})
    assert info.value.filename == str(tmp_path / "afile" / "sub")
    (tmp_path / "out.json").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        atomic_write_json(tmp_path / "out.json", {})
    assert info.value.filename == str(tmp_path / "out.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "out.json"]  # no temp left behind


def test_a_commit_killed_after_archiving_does_not_archive_twice(tmp_path):
    first = load_params(None, {"runs_dir": str(tmp_path), "run_name": "r", "seed": 1})
    second = load_params(None, {"runs_dir": str(tmp_path), "run_name": "r", "seed": 2})
    paths = prepare_run(first)
    prepare_run(second)
    paths.params.write_bytes((paths.root / "params_history" / "params.1.yaml").read_bytes())  # as if killed there
    prepare_run(second)
    assert sorted(p.name for p in (paths.root / "params_history").iterdir()) == ["params.1.yaml"]
    assert load_params(paths.params) == second
