"""The README's demo numbers are the files' numbers: every figure in its `demo-numbers` block is read back from
the text and checked against stats/comparisons.csv of the run `make demo` makes (tests/conftest.py::demo_run).

The README states that those digits are this machine's; if another machine's floating-point details move them,
this test fails and names the number, and the README's seed paragraph says why. Its seed range is checked to
contain the demo's own figure.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from icl_kit.stats.verdict import verdict_kind

README = Path(__file__).resolve().parents[2] / "README.md"
NUM = r"[+\u2212-]?\d[\d\u202f ]*(?:\.\d+)?"


def value(text: str) -> float:
    return float(text.replace("\u2212", "-").replace("\u202f", "").replace(" ", "").replace("+", ""))


def one_decimal(a: float, b: float) -> bool:
    return abs(a - b) <= 0.05 + 1e-9


@pytest.fixture(scope="module")
def block() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- demo-numbers:.*?-->(.*?)<!-- /demo-numbers -->", text, re.S)
    assert found, "README.md has no demo-numbers block"
    return " ".join(found.group(1).split())


@pytest.fixture(scope="module")
def rows(demo_run) -> pd.DataFrame:
    comps = pd.read_csv(demo_run / "stats" / "comparisons.csv")
    main = comps.groupby("subset")["n"].max().idxmax()
    return comps[comps.subset == main].assign(kind=lambda d: d.verdict.map(verdict_kind))


def test_the_primary_claims_count(block, rows) -> None:
    m = re.search(rf"None of the (\d+) primary claims holds\*\* on the ({NUM}) test questions: (\d+) (?:is|are) "
                  rf"equivalent within ±1 point, (\d+) cannot be told from noise", block)
    assert m, block
    primary = rows[rows.family == "primary"]
    kinds = primary.kind.value_counts()
    assert int(m.group(1)) == len(primary) and value(m.group(2)) == primary.n.max()
    assert kinds.get("better", 0) + kinds.get("worse", 0) == 0  # "none holds"
    assert (int(m.group(3)), int(m.group(4))) == (kinds.get("equivalent", 0), kinds.get("inconclusive", 0))


def test_the_widths_are_the_reports(block, demo_run) -> None:
    m = re.search(rf"each interval about ±({NUM}) points; detecting a difference needs about ({NUM})\)", block)
    assert m, block
    answer = (demo_run / "report" / "report.en.md").read_text(encoding="utf-8").split("\n## ")[1]
    said = re.search(rf"about ±({NUM}) points wide, and a difference would need about ({NUM}) points", answer)
    assert said and said.groups() == m.groups(), (said, m.groups())


def test_similarity_against_random(block, rows) -> None:
    m = re.search(rf"Similarity retrieval beats random demonstrations by ({NUM}) to ({NUM}) points at shots "
                  rf"(\d)–(\d) \(each adjusted p < ([\d.]+)\)", block)
    assert m, block
    pair = rows[(rows.system_a == "similarity") & (rows.system_b == "random")]
    shots = range(int(m.group(3)), int(m.group(4)) + 1)
    assert sorted(pair.shot) == list(shots) and (pair.kind == "worse").all()
    assert one_decimal(value(m.group(1)), -pair["diff"].max()) and one_decimal(value(m.group(2)), -pair["diff"].min())
    assert (pair.p_adj < float(m.group(5))).all()


def test_the_largest_primary_difference(block, rows) -> None:
    m = re.search(rf"The largest primary difference, (.+?) at shot (\d): ({NUM}) points \[({NUM}), ({NUM})\], "
                  rf"adjusted p ([\d.]+); its family-adjusted interval, \[({NUM}), ({NUM})\], covers 0", block)
    assert m, block
    primary = rows[rows.family == "primary"]
    top = primary.loc[primary["diff"].abs().idxmax()]
    assert (m.group(1), int(m.group(2))) == (top.label, top.shot)
    for got, want in zip(m.groups()[2:5], (top["diff"], top.ci_low, top.ci_high), strict=True):
        assert one_decimal(value(got), want), (got, want)
    assert abs(float(m.group(6)) - top.p_adj) <= 0.005
    assert one_decimal(value(m.group(7)), top.ci_low_family) and one_decimal(value(m.group(8)), top.ci_high_family)
    assert top.ci_low_family <= 0 <= top.ci_high_family


def test_the_seeds_paragraph_holds_the_demo_run(rows) -> None:
    """The demo is seed 0 of the README's three-seed run (a seed of train.seeds trains what train.seed trains):
    its largest primary difference is the first per-seed difference quoted, and inside the method's interval."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    m = re.search(rf"shot 4 by ({NUM}) points \[({NUM}), ({NUM})\] over the three seeds \(per seed ({NUM}), ", text)
    assert m, "the README's seeds paragraph is missing"
    primary = rows[rows.family == "primary"]
    top = primary.loc[primary["diff"].abs().idxmax()]
    assert abs(value(m.group(4)) - top["diff"]) <= 0.005 and top.shot == 4
    assert value(m.group(2)) <= top["diff"] <= value(m.group(3))


def test_the_python_example_runs_on_the_demo_run(demo_run, monkeypatch, capsys) -> None:
    """The README's Python block, run from the folder `make demo` ran in."""
    code = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    monkeypatch.chdir(demo_run.parent.parent)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    picked = scope["picked"]
    recorded = scope["run"].predictions
    first = recorded[(recorded.system == "grpo_epoch5") & (recorded.shot == 2)
                     & (recorded.question_id == picked[0]["question_id"])]
    assert picked[0]["icd_ids"] == list(first.icd_ids.iloc[0])  # the evaluation's own choice
    assert "the whole chain vs similarity" in capsys.readouterr().out


def test_the_demo_title_names_every_system_against_the_baseline(demo_run, rows) -> None:
    """Checkpoints compared with the baseline in an explicit comparison (sft_epoch3, grpo_epoch5) are named too."""
    title = (demo_run / "report" / "report.en.md").read_text(encoding="utf-8").split("\n")[0]
    against = rows[(rows.system_a == "similarity") & (rows.shot > 0)]
    for stem in ("sft", "rce", "grpo"):
        last = max(int(s.split("epoch")[1]) for s in against.system_b if s.startswith(f"{stem}_epoch"))
        assert (f"{stem}_epoch1–{last}" if last > 1 else f"{stem}_epoch1") in title, title
    assert title.endswith("vs similarity"), title


TRAINING = README.parent / "docs" / "training.md"
CELL = rf"(\*\*)?({NUM}) \[({NUM}), ({NUM})\](\*\*)?( \(equivalent ±1\))?"


def test_the_training_docs_demo_table_is_the_demo_run(rows) -> None:
    """docs/training.md's table of the primary family: each cell (point and 95% interval, to one decimal) is the
    demo run's, in bold exactly where the claim holds and marked where it is equivalent within ±1 point."""
    text = TRAINING.read_text(encoding="utf-8")
    table = re.search(r"\| comparison \(last epoch of each phase\) \| shot 1 \| shot 2 \| shot 3 \| shot 4 \| "
                      r"pooled \|\n\|[-|]+\|\n((?:\|.*\|\n)+)", text)
    assert table, "docs/training.md has no demo table"
    primary = rows[rows.family == "primary"]
    seen = 0
    for line in table.group(1).splitlines():
        label, *cells = [c.strip() for c in line.strip("|").split("|")]
        for shot, cell in zip((1, 2, 3, 4, -1), cells, strict=True):
            row = primary[(primary.label == label) & (primary.shot == shot)]
            assert len(row) == 1, (label, shot)
            row = row.iloc[0]
            m = re.fullmatch(CELL, cell)
            assert m, cell
            for got, want in zip(m.group(2, 3, 4), (row["diff"], row.ci_low, row.ci_high), strict=True):
                assert one_decimal(value(got), want), (label, shot, got, want)
            assert bool(m.group(1)) == (row.kind in ("better", "worse")), (label, shot)
            assert bool(m.group(6)) == (row.kind == "equivalent"), (label, shot)
            seen += 1
    assert seen == len(primary)
