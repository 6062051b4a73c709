"""The console of `icl-kit`: --version, one-line usage errors with a did-you-mean, `run --params`, sentences about
many bad entries kept short, the error (or the interrupt) as the last line even with a progress bar open, and a
notebook run whose interrupt or dead kernel ends in one sentence."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pytest
import yaml
from tiny_run import tiny_params
from tqdm.auto import tqdm

import icl_kit
import icl_kit.cli as cli
from icl_kit.cli import main
from icl_kit.core.errors import KitError, few, joined

INTERRUPTED = "icl-kit: interrupted; run the same command again to continue where it stopped."


def lines(text: str) -> list[str]:
    """Non-empty lines as a terminal shows them (a progress bar's carriage returns rewrite its line)."""
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()]


# ------------------------------------------------------------------ version and usage errors
def test_version_prints_the_package_version(capsys):
    assert main(["--version"]) == 0
    out, err = capsys.readouterr()
    assert out == f"icl-kit {icl_kit.__version__}\n" and err == ""


@pytest.mark.parametrize("argv,sentence", [
    (["reprot"], "unknown command 'reprot'; did you mean 'report'?"),
    (["stast", "runs/demo"], "unknown command 'stast'; did you mean 'stats'?"),
    (["study", "retst", "x.json"], "unknown command 'study retst'; did you mean 'study retest'?"),
    (["study", "import-rollout", "rl.json"], "unknown command 'study import-rollout'; did you mean "
                                             "'study import-rollouts'?"),
])
def test_a_mistyped_command_is_one_line_with_the_nearest_command(argv, sentence, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"icl-kit: error: {sentence}\n"


def test_a_command_far_from_every_known_one_lists_them(capsys):
    assert main(["xyzzy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("icl-kit: error: unknown command 'xyzzy'; choose one of demo-data")
    assert all(c in err for c in ("run", "report", "study", "ask"))


@pytest.mark.parametrize("argv,end", [
    (["ask", "--shots", "two"], "argument --shots: invalid int value: 'two'; see icl-kit ask --help."),
    (["ask"], "the following arguments are required: --question-id; see icl-kit ask --help."),
    (["params", "--nope"], "unrecognized arguments: --nope; see icl-kit params --help."),
    (["study", "audit", "x", "--bogus"], "unrecognized arguments: --bogus; see icl-kit study audit --help."),
    (["study", "import-rollouts", "rl.json", "--ids", "names"], "see icl-kit study import-rollouts --help."),
    (["study"], "name a command: retest, audit, import-results, import-rollouts, import-sft-data, import-pools, "
                "convert; see icl-kit study --help."),
    ([], "; see icl-kit --help."),
])
def test_every_usage_error_is_one_line(argv, end, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("icl-kit: error: ") and err.endswith(end + "\n")
    assert "usage:" not in err


# ------------------------------------------------------------------ run --params
@pytest.fixture
def recorded_run(monkeypatch, tmp_path):
    import icl_kit.pipeline as pipeline

    calls = []

    def run(params_path, overrides=(), stages=None, force=False):
        calls.append((str(params_path), list(overrides), stages, force))
        return tmp_path

    monkeypatch.setattr(pipeline, "run", run)
    return calls


def test_run_takes_the_params_file_either_way(recorded_run, capsys):
    assert main(["run", "params/demo.yaml", "-p", "seed=1", "--stages", "stats"]) == 0
    assert main(["run", "--params", "params/demo.yaml", "-p", "seed=1", "--stages", "stats"]) == 0
    assert recorded_run[0] == recorded_run[1] == ("params/demo.yaml", ["seed=1"], "stats", False)
    assert capsys.readouterr().out.count("icl-kit run: finished") == 2


@pytest.mark.parametrize("argv,start", [(["run", "a.yaml", "--params", "b.yaml"], "Pass the params file once"),
                                        (["run", "--stages", "stats"], "Pass a params file")])
def test_run_refuses_both_or_neither_params_file(recorded_run, argv, start, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"icl-kit: error: {start}, either as `icl-kit run ")
    assert recorded_run == []


def test_run_with_a_missing_params_file_refuses_alike_either_way(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    errors = []
    for argv in (["run", "nope.yaml", "--stages", "stats"], ["run", "--params", "nope.yaml", "--stages", "stats"]):
        assert main(argv) == 2
        errors.append(capsys.readouterr().err)
    assert errors[0] == errors[1] and "nope.yaml" in errors[0] and errors[0].count("\n") == 1


def test_every_command_that_reads_params_takes_params():
    parser = cli.build_parser()
    for argv in (["params"], ["train"], ["eval"], ["sft-data"], ["ask", "--question-id", "1"], ["stats", "r"],
                 ["report", "r"], ["run"], ["study", "retest", "f"], ["study", "audit", "f"],
                 ["study", "import-results"], ["study", "import-rollouts", "f"], ["study", "import-sft-data", "f"],
                 ["study", "import-pools", "a", "c"]):
        assert parser.parse_args([*argv, "--params", "p.yaml"]).params == "p.yaml", argv


# ------------------------------------------------------------------ many bad entries, one short sentence
@pytest.mark.parametrize("n,phrase", [(0, "no ids"), (1, "1 id (1001)"), (3, "3 ids (1001, 1002, 1003)"),
                                      (10, "10 ids (1001, 1002, 1003, …)")])
def test_few_gives_the_count_and_the_first_items(n, phrase):
    assert few(range(1001, 1001 + n), "id") == phrase


def test_few_keeps_any_list_short():
    assert few(["a"] * 2, "query") == "2 queries (a, a)" and few(["x"], "query") == "1 query (x)"
    assert few(["s"] * 2, "class") == "2 classes (s, s)" and few([1, 2], "key") == "2 keys (1, 2)"
    paths = [f"/very/long/folder/name/that/goes/on/and/on/run_{i}/metrics.json" for i in range(1000)]
    phrase = few(paths, "file")
    assert phrase.startswith("1000 files (…") and "run_0/metrics.json" in phrase and len(phrase) < 150


def test_joined_entries_stay_within_their_width():
    entries = [f"query {i}: candidate_pool_ids holds {10**9 + i}, which is not a question id of the train split"
               for i in range(50)]
    text = joined(entries)
    assert text.startswith("query 0: ") and text.endswith("(and 49 more)") and len(text) < 130
    two = joined(["query 20: 'candidate_pool_ids' is empty or not a list", entries[1]])
    assert re.search(r"query 20: .*; query 1: ", two) and "more" not in two
    assert joined(["short"]) == "short" and joined([]) == ""


def test_ten_foreign_ids_make_one_short_sentence_with_their_count(tmp_path, monkeypatch):
    from icl_kit.train.rollouts import check_rollouts

    monkeypatch.chdir(tmp_path)
    known = list(range(1, 9))
    rows = [{"question_id": 10**9 + i, "pool": known, "candidates": [{"positions": [0, 1]}]} for i in range(10)]
    Path("rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(KitError) as err:
        check_rollouts("rollouts.jsonl", known, 2)
    message = str(err.value)
    assert "10 queries (1000000000, 1000000001, 1000000002, …)" in message and "1000000009" not in message
    assert len(f"icl-kit: error: {message}") < 200


# ------------------------------------------------------------------ the error is the last line
def failing_in_a_bar(exc: BaseException):
    """A command whose bar is a local variable, as the trainer's is: the traceback holds it open."""
    def command(args):
        bar = tqdm(total=10, desc="eval cells")
        for i in range(10):
            if i == 4:
                raise exc
            bar.update(1)
        bar.close()
        return 0
    return command


@pytest.mark.parametrize("exc,code,last", [
    (KitError("Image data/x.jpg for question 7 is missing; check data.image_root."), 2,
     "icl-kit: error: Image data/x.jpg for question 7 is missing; check data.image_root."),
    (PermissionError(13, "Permission denied", "runs/x/eval"), 2, "icl-kit: error: Permission denied: runs/x/eval; "
     "make it (and the folder it is in) readable and writable for you, or choose another path."),
    (KeyboardInterrupt(), 130, INTERRUPTED),
])
def test_the_sentence_comes_after_an_open_progress_bar(monkeypatch, capsys, exc, code, last):
    monkeypatch.setattr(cli, "cmd_params", failing_in_a_bar(exc))
    assert main(["params"]) == code
    err = capsys.readouterr().err
    assert "eval cells:  40%" in err and lines(err)[-1] == last and "Traceback" not in err


def test_a_failing_evaluation_prints_its_bar_then_the_sentence(tmp_path, monkeypatch, capsys):
    """A real stage: the tiny demo world evaluated through the CLI until a cell's image is missing."""
    import icl_kit.evaluation.runner as runner

    monkeypatch.chdir(tmp_path)
    tiny = tiny_params(tmp_path / "world", "broken", eval={"systems": ["zero_shot", "random"], "chunk": 8})
    Path("tiny.yaml").write_text(yaml.safe_dump(tiny))
    row, seen = runner.prediction_row, []

    def missing_image(cell, answer):
        seen.append(cell)
        if len(seen) > 12:
            raise KitError(f"Image world/COCO_val2014_{cell.question_id:012d}.jpg for question {cell.question_id} "
                           "is missing; check data.image_root (or COCO_PATH).")
        return row(cell, answer)

    monkeypatch.setattr(runner, "prediction_row", missing_image)
    assert main(["eval", "--params", "tiny.yaml"]) == 2
    err = capsys.readouterr().err
    assert "eval cells" in err and "Traceback" not in err
    assert re.fullmatch(r"icl-kit: error: Image \S+ for question \d+ is missing; check data\.image_root "
                        r"\(or COCO_PATH\)\.", lines(err)[-1]), err


# ------------------------------------------------------------------ interrupts
def test_an_interrupt_inside_a_stage_is_one_line_and_no_traceback(monkeypatch, capsys):
    import icl_kit.evaluation.runner as runner

    def interrupted(params, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "evaluate", interrupted)
    assert main(["eval"]) == 130
    err = capsys.readouterr().err
    assert err == INTERRUPTED + "\n"


@pytest.fixture
def stats_run(tmp_path, monkeypatch):
    """`icl-kit run` of the stats stage alone, in a scratch folder; papermill itself replaced by the test."""
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(yaml.safe_dump({"runs_dir": str(tmp_path / "runs"), "run_name": "r"}))
    return ["run", "p.yaml", "--stages", "stats"]


def papermill_error(ename: str, evalue: str):
    import papermill as pm

    return pm.PapermillExecutionError(cell_index=3, exec_count=4, source="", ename=ename, evalue=evalue,
                                      traceback=[])


@pytest.mark.parametrize("raised", ["ctrl-c here", "kernel interrupted"])
def test_an_interrupt_inside_papermill_is_one_line(stats_run, monkeypatch, capsys, raised):
    import icl_kit.pipeline as pipeline

    def execute(src, tmp, *args):
        Path(tmp).write_text("{}")  # papermill's partial copy
        raise KeyboardInterrupt if raised == "ctrl-c here" else papermill_error("KeyboardInterrupt", "")

    monkeypatch.setattr(pipeline, "_papermill", execute)
    assert main(stats_run) == 130
    out, err = capsys.readouterr()
    assert err == INTERRUPTED + "\n" and "[1/1] stats: running" in out
    assert not [p for p in Path("runs/r").rglob("*") if p.is_file() and p.name != "params.yaml"]


def test_a_dead_kernel_is_one_sentence_with_what_it_said(stats_run, monkeypatch, capsys):
    from nbclient.exceptions import DeadKernelError

    import icl_kit.pipeline as pipeline

    def execute(src, tmp, params_path, overrides, log):
        log.write(b"[IPKernelApp] WARNING | noise\nMemoryError: cannot allocate 12 GiB\n")
        raise DeadKernelError("Kernel died")

    monkeypatch.setattr(pipeline, "_papermill", execute)
    assert main(stats_run) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "icl-kit: error: Stage stats failed in notebooks/03_significance.ipynb, where its kernel died (MemoryError: "
        "cannot allocate 12 GiB); the failed notebook is ")


def test_a_failed_cell_is_one_sentence(stats_run, monkeypatch, capsys):
    import icl_kit.pipeline as pipeline

    def execute(src, tmp, *args):
        raise papermill_error("KitError", "runs/r/eval/predictions.jsonl is missing.\nmore")

    monkeypatch.setattr(pipeline, "_papermill", execute)
    assert main(stats_run) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cell 4: KitError: runs/r/eval/predictions.jsonl is missing; the failed" in err


def test_the_kernel_starts_without_its_notices(monkeypatch):
    from icl_kit.pipeline import kernel_env

    monkeypatch.setenv("PYTHONWARNINGS", "error::ResourceWarning")
    env = kernel_env()
    assert env["PYDEVD_DISABLE_FILE_VALIDATION"] == "1"
    assert env["PYTHONWARNINGS"].startswith("ignore:IProgress not found,")
    assert env["PYTHONWARNINGS"].endswith(",error::ResourceWarning")  # the user's own filters win
    with contextlib.suppress(KeyError):
        monkeypatch.delenv("PYTHONWARNINGS")
    assert "ResourceWarning" not in kernel_env()["PYTHONWARNINGS"]
