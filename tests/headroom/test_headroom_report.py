"""The report's Headroom subsection (icl_kit.report.headroom): present in both languages with the same numbers when
the headroom stage ran, with its figure and the share of the similarity → oracle gap each trained lineage
recovers; absent when it did not run. The run is a tiny demo-world run (simulated LVLM), made in-process."""

from __future__ import annotations

import contextlib
import re
import shutil
import string

import pytest
import yaml
from tiny_run import tiny_params

from icl_kit.core.config import load_params
from icl_kit.core.runs import RunPaths
from icl_kit.evaluation.runner import evaluate
from icl_kit.headroom.stage import headroom
from icl_kit.report.build import write_report
from icl_kit.report.headroom import EN, ZH
from icl_kit.report.text import GROUP_SEP, MINUS
from icl_kit.stats.run import stats_for_run
from icl_kit.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")
NUMBER = re.compile(rf"[+{MINUS}-]?\d+(?:\.\d+)?")


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_languages_hold_the_same_phrases_and_placeholders():
    assert ZH.keys() == EN.keys()
    assert [k for k in ZH if placeholders(ZH[k]) != placeholders(EN[k])] == []


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """headroom, train, eval, stats, report on the tiny world; returns the run folder."""
    base = tmp_path_factory.mktemp("headroom_report")
    params = tiny_params(base / "world", "r")
    params["headroom"] = {"n": 20, "draws": 4, "enabled": True}
    params["eval"]["systems"].append("checkpoints/rce_epoch*.pt")
    (base / "p.yaml").write_text(yaml.safe_dump(params))
    with contextlib.chdir(base):
        p = load_params("p.yaml")
        headroom(p, progress=False)
        train(p, progress=False)
        evaluate(p, progress=False)
        stats_for_run(p.run_dir, p.stats)
        write_report(p.run_dir)
        return (base / p.run_dir).resolve()


def section(md: str) -> str:
    """The text of subsection 3.3, up to the next section."""
    start = md.index("### 3.3 ")
    return md[start : md.index("\n## ", start)]


def numbers(text: str) -> list[float]:
    text = text.replace(GROUP_SEP, "").replace(MINUS, "-")
    return [float(x) for x in NUMBER.findall(re.sub(r"\(figures/[^)]*\)|grpo_epoch\d+|rce_epoch\d+", "", text))]


def test_the_section_is_in_both_reports_with_the_same_numbers(run):
    paths = RunPaths(run)
    en = section((paths.report_dir / "report.en.md").read_text())
    zh = section((paths.report_dir / "report.zh.md").read_text())
    assert en.startswith("### 3.3 Headroom") and zh.startswith("### 3.3 余量")
    assert "Verdict:" in en and "结论：" in zh and "Signal of the training reward" in en
    assert "](figures/headroom.png)" in en and (paths.figures / "headroom.png").is_file()
    for name in ("grpo_epoch2", "rce_epoch1"):  # the last checkpoint of each lineage, with its share of the gap
        assert re.search(rf"\| {name} \| [12] \| ", en), name
    assert numbers(en) == numbers(zh)


def test_the_table_shows_the_summarys_numbers(run):
    import json

    summary = json.loads(RunPaths(run).headroom_summary.read_text())
    en = section((RunPaths(run).report_dir / "report.en.md").read_text())
    oracle = next(r for r in summary["accuracy"] if (r["split"], r["system"], r["shot"]) == ("test", "oracle", 2))
    row = next(line for line in en.splitlines() if line.startswith("| 2 | "))
    assert f"{oracle['accuracy']:.1f}% [{oracle['low']:.1f}, {oracle['high']:.1f}]".replace("-", MINUS) in row


def test_no_section_without_the_headroom_stage(run, tmp_path):
    other = tmp_path / "run"
    shutil.copytree(run, other)
    shutil.rmtree(RunPaths(other).headroom_dir)
    out = write_report(other)
    assert "### 3.3 " not in out["md"].read_text()
