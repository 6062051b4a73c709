"""The headroom numbers the README and docs/headroom.md quote are those of the run `make demo` makes
(tests/conftest.py::demo_run, its headroom/summary.json), and `make demo` runs the headroom stage first."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def rows(summary: dict, kind: str) -> dict:
    if kind == "accuracy":
        return {(r["system"], r["shot"]): r for r in summary["accuracy"] if r["split"] == "test"}
    return {(r["a"], r["b"], r["shot"]): r for r in summary["gains"] if r["split"] == "test"}


def gain_text(r: dict) -> str:
    return f"{r['diff']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]"


def check_docs(summary: dict) -> None:
    acc, gain = rows(summary, "accuracy"), rows(summary, "gains")
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert (f"the oracle is {gain_text(gain[('random', 'oracle', 2)]).replace(' [', ' points [', 1)} above random "
            f"and {gain_text(gain[('similarity', 'oracle', 2)])} above similarity at shot 2") in readme
    doc = (ROOT / "docs" / "headroom.md").read_text(encoding="utf-8")
    for k in summary["shots"]:
        cells = [f"{acc[(s, k)]['accuracy']:.1f}" for s in ("zero_shot", "random", "similarity", "best_of_m", "oracle")]
        cells += [gain_text(gain[("random", "oracle", k)]), gain_text(gain[("similarity", "oracle", k)])]
        assert f"| {k} | " + " | ".join(cells) + " |" in doc, k
    sig = summary["signal"]
    assert re.search(rf"varies by SD {sig['sd_sets']:.3f} between", " ".join(doc.split()))


def test_the_docs_quote_the_demo_runs_headroom(demo_run):
    assert json.loads((demo_run / "stages.json").read_text())["headroom"]["seconds"] < 60
    check_docs(json.loads((demo_run / "headroom" / "summary.json").read_text(encoding="utf-8")))
