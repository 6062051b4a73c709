"""Every example command of the README, docs/*.md (fenced bash blocks) and the params files' headers, run as
written from the repository root (a scratch folder that links the repository's examples/, params/, tests/
and notebooks/, so the runs it writes land outside the clone).

A command runs in-process through `icl_kit.cli.main` and must succeed, unless it is listed here: one that
needs the real data and model (refused in one sentence, nothing written), or one that another test runs
(named, with the overrides it adds)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from icl_kit.cli import main

ROOT = Path(__file__).resolve().parents[2]
LINKED = ("examples", "params", "tests", "notebooks")
NEEDS_REAL_DATA = r"data\.root is empty and \$OKVQA_PATH is not set: download OK-VQA"
EXPECTED: dict[str, tuple[str, str]] = {  # command -> (outcome, refusal pattern or where it runs)
    "icl-kit run params/okvqa_qwen2_5_vl_3b.yaml": ("refused", NEEDS_REAL_DATA),
    "icl-kit run params/okvqa_qwen2_5_vl_3b_study.yaml": ("refused", NEEDS_REAL_DATA),
    "icl-kit run params/okvqa_qwen2_5_vl_3b.yaml --stages stats,report": (
        "refused", r"eval/predictions\.jsonl is missing or empty and nothing was imported"),
    "icl-kit run params/smoke_tiny_qwen.yaml": (
        "elsewhere", "tests/app/test_pipeline.py::test_smoke_params_run_end_to_end (data.root and lvlm.model "
                     "made absolute)"),
    "icl-kit headroom --params params/demo.yaml": (
        "elsewhere", "tests/conftest.py::demo_run (`icl-kit run params/demo.yaml` runs the headroom stage first; "
                     "tests/headroom/ runs the command on small worlds)"),
}


def doc_commands() -> list[tuple[str, str]]:
    """(where, command) for every `icl-kit` line of a fenced bash block or a params header comment."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
            found += [(path.name, line.split("  #")[0].strip()) for line in block.splitlines()
                      if line.strip().startswith("icl-kit ")]
    for path in sorted((ROOT / "params").glob("*.yaml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if m := re.match(r"#\s+(icl-kit .*)$", line):
                found.append((path.name, m.group(1).strip()))
    return list(dict.fromkeys(found))


COMMANDS = doc_commands()


def test_the_docs_hold_the_commands_this_file_knows() -> None:
    commands = {c for _, c in COMMANDS}
    assert len(commands) >= 8 and {"icl-kit study retest examples/study/results --claims examples/study/claims.yaml",
                                   "icl-kit study audit examples/study --params params/retest_study.yaml"} <= commands
    assert set(EXPECTED) - commands == set(), "a listed command is in no document any more: drop it from EXPECTED"


@pytest.fixture(scope="module")
def repo_root(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("root")
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    return work


@pytest.mark.parametrize("command", sorted({c for _, c in COMMANDS}))
def test_doc_command_runs_from_the_repository_root(command, repo_root, monkeypatch, capsys) -> None:
    outcome, detail = EXPECTED.get(command, ("ok", ""))
    if outcome == "elsewhere":
        pytest.skip(f"run by {detail}")
    monkeypatch.chdir(repo_root)
    for var in ("OKVQA_PATH", "VQAV2_PATH", "COCO_PATH", "LEVER_PLUS_PATH"):
        monkeypatch.delenv(var, raising=False)
    before = sorted(p.relative_to(repo_root) for p in repo_root.rglob("*") if "runs" not in p.parts
                    and "data" not in p.parts and not p.is_symlink() and p.parent == repo_root)
    rc = main(shlex.split(command)[1:])
    err = capsys.readouterr().err
    if outcome == "refused":
        assert rc == 2 and re.search(detail, err), err
        assert err.strip().count("\n") == 0, err  # one sentence
        return
    assert rc == 0, err
    after = sorted(p.relative_to(repo_root) for p in repo_root.rglob("*") if "runs" not in p.parts
                   and "data" not in p.parts and not p.is_symlink() and p.parent == repo_root)
    assert after == before  # only runs/ and data/ were written
