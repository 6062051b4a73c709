"""`icl-kit run` end to end on the tiny real Qwen2.5-VL (smoke params), stage skipping, failures."""

import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest

from icl_kit.cli import main
from icl_kit.core.errors import KitError
from icl_kit.pipeline import STAGES, parse_stages, run

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "params" / "smoke_tiny_qwen.yaml"


def test_committed_notebooks_hold_no_outputs():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), path.name
        tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
        assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"


def test_notebooks_open_on_the_real_demo():
    """Opened in JupyterLab, every notebook runs params/demo.yaml with no overrides (nbval swaps in
    params/nbval.yaml through tests/nbval_params.py)."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        src = "".join(next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))["source"])
        ns: dict = {}
        exec(src, ns)  # plain typed values only (papermill's rule), so executing the cell is safe
        assert (ns["params_path"], ns["overrides"]) == ("params/demo.yaml", {}), path.name


def test_nbval_params_are_the_demo_at_small_sizes():
    from icl_kit.core.config import load_params, to_dict

    demo, small = to_dict(load_params(ROOT / "params/demo.yaml")), to_dict(load_params(ROOT / "params/nbval.yaml"))
    assert small["run_name"] == "nbval_demo" and (small["eval"]["questions"], small["eval"]["n"]) == ("first", 200)
    assert small["train"]["grpo"]["epochs"] < demo["train"]["grpo"]["epochs"]
    assert small["data"] == demo["data"] and small["lvlm"] == demo["lvlm"] and small["selector"] == demo["selector"]


def test_unknown_stage_is_named():
    with pytest.raises(KitError,
                       match=r"Unknown stage\(s\) \['trian'\]; choose from headroom, train, eval, stats, report"):
        parse_stages("trian,eval")


@contextlib.contextmanager
def in_dir(folder: Path):
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


@pytest.fixture(scope="module", autouse=True)
def one_thread_kernels():
    """The notebook kernels inherit OMP_NUM_THREADS=1: torch on one intra-op thread. The smoke run's tiny ops are as
    fast on one thread on idle cores, and with another process busy on the 2 cores its train stage took 18 s on one
    thread against 24-54 s on two (threads spin-waiting for each other). Nothing asserted here counts threads."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    # started from a folder that is not the repository: relative runs_dir means that folder
    work = tmp_path_factory.mktemp("elsewhere")
    overrides = [f"data.root={work / 'world'}", f"lvlm.model={ROOT / 'tests' / 'fixtures' / 'tiny-qwen2.5-vl'}"]
    with in_dir(work):
        run_dir = run(SMOKE, overrides)
    assert run_dir == work.resolve() / "runs" / "smoke_tiny_qwen"
    return run_dir, overrides


def test_smoke_params_run_end_to_end(smoke_run):
    run_dir, _ = smoke_run
    for rel in ("params.yaml", "train_log.jsonl", "checkpoints/grpo_epoch1.pt", "checkpoints/grpo_epoch2.pt",
                "eval/predictions.jsonl", "eval/summary.csv", "stats/comparisons.csv", "report/report.md",
                "report/report.html"):
        assert (run_dir / rel).is_file(), rel
    for stage in STAGES:
        assert (run_dir / "notebooks" / stage.notebook).is_file()
    # 5 systems (zero_shot, random, similarity, 2 epochs) x 2 shots x 20 questions
    lines = (run_dir / "eval" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 5 * 2 * 20
    report = (run_dir / "report" / "report.md").read_text()
    assert "smoke" in report.lower()


def test_rerun_skips_finished_stages(smoke_run, capsys):
    run_dir, overrides = smoke_run
    before = (run_dir / "report" / "report.md").stat().st_mtime_ns
    with in_dir(run_dir.parents[1]):
        run(SMOKE, overrides)
    out = capsys.readouterr().out
    assert out.count("finished earlier with the same inputs, skipped") == len(STAGES)
    assert (run_dir / "report" / "report.md").stat().st_mtime_ns == before


def test_changed_input_reruns_only_downstream(smoke_run, capsys):
    run_dir, overrides = smoke_run
    with in_dir(run_dir.parents[1]):
        run(SMOKE, [*overrides, "report.language=zh"])
    out = capsys.readouterr().out
    assert out.count("skipped") == 3 and "[4/4] report: done" in out
    assert "二、测试配置" in (run_dir / "report" / "report.md").read_text()


def test_failing_cell_names_notebook_cell_and_copy(smoke_run, tmp_path, capsys):
    run_dir, overrides = smoke_run
    broken = tmp_path / "runs"
    shutil.copytree(run_dir, broken / run_dir.name)
    folder = broken / run_dir.name
    comparisons = folder / "stats" / "comparisons.csv"
    kept = comparisons.read_bytes()
    comparisons.unlink()
    (folder / "stages.json").unlink()
    good = folder / "notebooks" / "04_report.ipynb"
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    args = ["run", str(SMOKE), "--stages", "report", *[a for o in overrides for a in ("-p", o)],
            "-p", f"runs_dir={broken}"]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert "Stage report failed in notebooks/04_report.ipynb, cell" in err
    assert "comparisons.csv is missing" in err
    failed = good.with_name("04_report.failed.ipynb")
    assert f"the failed notebook is {failed} (the last good copy {good} is unchanged)" in err
    # papermill wrote the failed notebook beside the good one; nothing else changed (params.yaml neither)
    after = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert set(after) - set(before) == {failed} and all(after[p] == b for p, b in before.items())
    assert "comparisons.csv is missing" in failed.read_text()
    comparisons.write_bytes(kept)  # repaired: the stage runs, its copy is replaced and the failure cleared
    assert main(args) == 0
    assert not failed.exists() and good.read_bytes() != before[good]
    assert "params_history" in {p.name for p in folder.iterdir()}  # runs_dir changed: the old params archived
    assert not list(folder.rglob("*.tmp"))


def test_an_executed_copy_re_runs_where_it_lies(smoke_run, tmp_path):
    """runs/<name>/notebooks/03_significance.ipynb, executed from its own folder with no parameters injected,
    reads the run's own params.yaml and folder (relative to itself) and remakes the same statistics."""
    import papermill as pm

    from icl_kit.pipeline import RUN_PARAMETERS

    run_dir, _ = smoke_run
    copy = run_dir / "notebooks" / "03_significance.ipynb"
    cells = json.loads(copy.read_text())["cells"]
    injected = [c for c in cells if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and "".join(injected[0]["source"]) == RUN_PARAMETERS
    before = (run_dir / "stats" / "comparisons.csv").read_bytes()
    pm.execute_notebook(str(copy), str(tmp_path / "out.ipynb"), cwd=str(copy.parent), progress_bar=False,
                        kernel_name="python3")
    assert (run_dir / "stats" / "comparisons.csv").read_bytes() == before


def test_a_hand_run_with_other_stats_params_is_never_followed_by_a_stale_report(smoke_run, tmp_path, capsys):
    """Notebook 03 re-run by hand with stats.alpha 0.1 rewrites stats/: a report written then labels 90%
    (what the statistics did), and `icl-kit run` sees that stats/ no longer matches its params and remakes it."""
    import papermill as pm

    from icl_kit.report.build import write_report

    run_dir, overrides = smoke_run
    copy = run_dir / "notebooks" / "03_significance.ipynb"
    pm.execute_notebook(str(copy), str(tmp_path / "out.ipynb"), cwd=str(copy.parent), progress_bar=False,
                        kernel_name="python3", parameters={"params_path": "../params.yaml", "run_dir": "..",
                                                           "overrides": {"stats.alpha": 0.1}})
    assert json.loads((run_dir / "stats" / "summary.json").read_text())["config"]["alpha"] == 0.1
    write_report(run_dir)
    md = (run_dir / "report" / "report.en.md").read_text()
    assert "90% interval" in md and "95% interval" not in md
    with in_dir(run_dir.parents[1]):
        run(SMOKE, overrides, stages="stats,report")
    out = capsys.readouterr().out
    assert "stats: running" in out and "report: running" in out
    assert json.loads((run_dir / "stats" / "summary.json").read_text())["config"]["alpha"] == 0.05
    assert "95% interval" in (run_dir / "report" / "report.en.md").read_text()
