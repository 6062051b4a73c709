"""The report never contradicts its tables: every table row, answer row and sentence that names a comparison is
read back from the rendered report (md and html, zh and en) and checked against stats/comparisons.csv.

Two runs: a statistics run on simulated per-question scores (systems with large, small and no differences,
two checkpoint lineages, a claims family, a first-100 subset, validation rewards), and the re-test of the
study's example files. The checks parse numbers out of the text; they do not call the report's formatters.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from icl_kit.core.config import dump_yaml, load_params
from icl_kit.report.build import write_report
from icl_kit.stats.run import stats_for_run
from icl_kit.stats.simulate import simulate_scores
from icl_kit.stats.verdict import verdict_kind
from icl_kit.study.retest import retest

ROOT = Path(__file__).resolve().parents[2]
MINUS, GROUP = "\u2212", "\u202f"
NUM = r"[+\u2212-]?\d[\d\u202f]*(?:\.\d+)?"
VERDICT_WORDS = {  # a verdict cell or phrase -> its kind, both languages
    "en": [("significant gain", "better"), ("significant drop", "worse"), ("equivalent", "equivalent"),
           ("no detectable difference", "inconclusive"), ("real difference (gain)", "better"),
           ("real difference (drop)", "worse"), ("cannot be told from noise", "inconclusive")],
    "zh": [("显著提升", "better"), ("显著下降", "worse"), ("等价", "equivalent"), ("无可检测差异", "inconclusive"),
           ("真实差异（提升）", "better"), ("真实差异（下降）", "worse"), ("无法与噪声区分", "inconclusive")],
}
SYSTEMS = ["random", "similarity", "sft_epoch1", "sft_epoch2", "grpo_epoch1", "grpo_epoch2", "grpo_epoch3"]
DEMO_SENTENCES = {"counts": 1, "range": 1, "max-T": 1, "validation": 1}  # kinds of sentence the demo's report holds
SHIFTS = [0.0, 1.2, 0.9, 1.0, 1.0, 1.15, 1.05]  # similarity and the checkpoints well above random


POOLED = -1  # comparisons.csv's `shot` of a row pooled over the shots in its `shots` ("1,2,3,4")
POOLED_WORDS = r"(?:\(all shots\)|（全部 shot）)"  # how the report writes a pooled row's shot: "1–4 (all shots)"
POOLED_CELL = rf"(\d[\d–, ]*?) ?{POOLED_WORDS}"


def shot_of(cell: str) -> int | None:
    """A Shot cell read back: the shot, POOLED for "1–4 (all shots)", None when it is neither."""
    if cell.isdigit():
        return int(cell)
    return POOLED if re.fullmatch(POOLED_CELL, cell) else None


def pooled_shots_ok(cell: str, r: pd.Series) -> bool:
    """A pooled row's cell names the shots of its `shots` ("1–2, 4" for 1,2,4); a shot's cell is its shot."""
    m = re.fullmatch(POOLED_CELL, cell)
    if m is None:
        return int(cell) == r.shot
    named = set()
    for part in m.group(1).split(", "):
        lo, _, hi = part.partition("–")
        named |= set(range(int(lo), int(hi or lo) + 1))
    return r.shot == POOLED and named == {int(k) for k in str(r.shots).split(",")}


def value(text: str) -> float:
    return float(text.replace(MINUS, "-").replace(GROUP, "").replace("+", "").replace("%", ""))


def kind_of(text: str, lang: str) -> str:
    hits = [k for word, k in VERDICT_WORDS[lang] if word in text]
    assert hits, f"no verdict in {text!r}"
    return hits[0]


def interval(text: str) -> tuple[float, float]:
    lo, hi = re.match(rf"\[({NUM}), ({NUM})\]", text).groups()
    return value(lo), value(hi)


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 0.05 + 1e-9  # one decimal as printed


def p_ok(text: str, p: float) -> bool:
    text = text.strip().removeprefix("= ").replace("≤", "")
    if text.startswith("<"):
        return p < value(text.lstrip("< "))
    return abs(value(text) - p) <= (0.005 if p >= 0.1 else 0.0005) + 1e-12


# ------------------------------------------------------------------ runs
def stats_run(root: Path) -> Path:
    rng = np.random.default_rng(21)
    n = 300
    rows = []
    for shot in (1, 2):
        s = simulate_scores(rng, 1, n, SHIFTS)[:, 0]
        for j, name in enumerate(SYSTEMS):
            epoch = int(name[-1]) - 1 if "epoch" in name else None
            rows += [{"system": name, "checkpoint": None, "epoch": epoch, "shot": shot, "question_id": 1000 + i,
                      "icd_ids": [], "raw": "", "pred": "", "acc": float(s[j, i])} for i in range(n)]
    (root / "eval").mkdir(parents=True)
    (root / "eval" / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pd.DataFrame(rows).groupby(["system", "shot"]).acc.mean().reset_index().assign(
        n=n, epoch=None, accuracy=lambda d: d.acc * 100).drop(columns="acc").to_csv(root / "eval" / "summary.csv",
                                                                                   index=False)
    comparisons = [{"a": "sft_epoch2", "b": "grpo_epoch3", "label": "GRPO after SFT"},
                   {"a": "random", "b": "grpo_epoch3", "label": "the chain vs random"}]
    params = load_params(None, ["lvlm.backend=simulated", "data.demo=true", "stats.subsets=[100]",
                                "stats.n_boot=200", "stats.n_perm=200", "eval.questions=all",
                                f"stats.comparisons={json.dumps(comparisons)}", f"runs_dir={root.parent}",
                                f"run_name={root.name}"])
    (root / "params.yaml").write_text(dump_yaml(params))
    (root / "train_log.jsonl").write_text("".join(
        json.dumps({"kind": "epoch", "phase": "grpo", "epoch": e, "val/reward@2": v, "val/rce_loss": loss,
                    "checkpoint": f"checkpoints/grpo_epoch{e + 1}.pt"}) + "\n"
        for e, v, loss in [(0, .40, 1.0), (1, .45, 1.1), (2, .43, 0.9)]))
    stats_for_run(root, params.stats, progress=False)
    write_report(root)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, demo_run) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("consistency")
    study = retest([ROOT / "examples" / "study" / "results"], claims_file=ROOT / "examples" / "study" / "claims.yaml",
                   run_dir=base / "retest")
    return {"stats": stats_run(base / "stats"), "retest": study.run_dir, "demo": demo_run}


# ------------------------------------------------------------------ readers
def subset_of(heading: str, comps: pd.DataFrame) -> str:
    n = value(re.search(rf"n = ({NUM})", heading).group(1))
    found = comps.groupby("subset")["n"].max()
    hits = [s for s, m in found.items() if m == n and (("study" in s) == ("study" in heading or "研究" in heading))]
    assert len(hits) == 1, heading
    return hits[0]


def table_rows(md: str, comps: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """(subset, cells) of every comparison-table row, the subset read from the heading above it."""
    subset, out = None, []
    for line in md.splitlines():
        if line.startswith("#### "):
            subset = subset_of(line, comps)
        elif line.startswith("##") and not line.startswith("####"):
            subset = None
        elif subset and line.startswith("| ") and not line.startswith("| B |"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            if len(cells) == 10 and shot_of(cells[2]) is not None:
                out.append((subset, cells))
    return out


def row(comps: pd.DataFrame, subset: str, a: str, b: str, shot: int) -> pd.Series:
    hit = comps[(comps.subset == subset) & (comps.system_a == a) & (comps.system_b == b) & (comps.shot == shot)]
    assert len(hit) == 1, (subset, a, b, shot)
    return hit.iloc[0]


def check_table_row(subset: str, cells: list[str], comps: pd.DataFrame, lang: str) -> None:
    b = cells[0].split(" (")[0]
    r = row(comps, subset, cells[1], b, shot_of(cells[2]))
    assert pooled_shots_ok(cells[2], r), cells
    kind = verdict_kind(r.verdict)
    assert close(value(cells[3]), r.acc_a) and close(value(cells[4]), r.acc_b), cells
    assert close(value(cells[5].replace("*", "").split()[0]), r["diff"]), cells
    assert ("**" in cells[5]) == (kind in ("better", "worse")), cells  # bold and an arrow only when significant
    lo, hi = interval(cells[6])
    assert close(lo, r.ci_low) and close(hi, r.ci_high), cells
    if (lo > 0 or hi < 0) != (kind in ("better", "worse")):  # the interval and the verdict disagree about 0:
        assert "family" in cells[6] or "族校正" in cells[6], cells  # the family-adjusted interval says why
    assert p_ok(cells[8], r.p_adj) and kind_of(cells[9], lang) == kind, cells


def check_answer(md: str, comps: pd.DataFrame, lang: str) -> int:
    """Every row of the answer's table against its comparison; returns how many rows were read."""
    answer = md.split("\n## ")[1]
    lines = [ln for ln in answer.splitlines() if ln.startswith("| ") and not ln.startswith("| Claim")
             and not ln.startswith("| 主张") and not ln.startswith("|---")]
    prim = comps[comps.family == "primary"]
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        claim, shot = cells[0], shot_of(cells[1])
        evidence = next(c for c in cells if "n = " in c)
        n = value(re.search(rf"n = ({NUM})", evidence).group(1))
        summary = "†" in evidence
        hits = prim[(prim.shot == shot) & (prim.n == n) & ((prim["mode"] == "summary") == summary)
                    & ((prim.label == claim) | (prim.system_b + " vs " + prim.system_a == claim))]
        assert len(hits) == 1, line
        r = hits.iloc[0]
        assert pooled_shots_ok(cells[1], r), line
        diff_cell = next(c for c in cells if re.match(rf"{NUM} \[", c))
        assert close(value(diff_cell.split()[0]), r["diff"]), line
        lo, hi = interval(diff_cell.split(" ", 1)[1])
        assert close(lo, r.ci_low) and close(hi, r.ci_high), line
        assert kind_of(cells[-1], lang) == verdict_kind(r.verdict), line
    return len(lines)


def sentences_en(md: str, comps: pd.DataFrame, baseline: str) -> Counter:
    """Every English sentence that names a comparison, checked against its row; counts of what was checked."""
    seen: Counter = Counter()
    main = comps.groupby("subset")["n"].max().idxmax()
    for m in re.finditer(rf"(\S+) vs (\S+) at shot (\d): a (gain|drop) of ({NUM}) points \(95% interval "
                         rf"(\[[^\]]+\])[^)]*?, adjusted p ([^,]+), n = ({NUM})\)", md):
        r = row(comps, main, m.group(2), m.group(1), int(m.group(3)))
        assert verdict_kind(r.verdict) == ("better" if m.group(4) == "gain" else "worse"), m.group()
        assert close(value(m.group(5)), r["diff"]) and p_ok(m.group(7), r.p_adj), m.group()
        seen["significant"] += 1
    for m in re.finditer(rf"(\S+) vs (\S+) differs significantly at shots ([\d, ]+) \((\d+) comparisons, ({NUM}) "
                         rf"to ({NUM}) points", md):
        rows = [row(comps, main, m.group(2), m.group(1), int(k)) for k in m.group(3).split(", ")]
        assert all(verdict_kind(r.verdict) in ("better", "worse") for r in rows), m.group()
        assert close(value(m.group(5)), min(r["diff"] for r in rows)) and close(value(m.group(6)),
                                                                                   max(r["diff"] for r in rows))
        seen["range"] += 1
    for m in re.finditer(r"(\S+) at shot (\d): the best checkpoint on test, (\S+) \(.*?adjusted p ((?:= |< |≤ )"
                         r"[\d.]*\d)\)?(?:: (.+?)\.(?:\n|$)|\.)", md):
        r = row(comps, main, baseline, m.group(3), int(m.group(2)))
        assert p_ok(m.group(4), r.p_adj), m.group()
        stays = "stays significant" in m.group()
        assert stays == (verdict_kind(r.verdict) == "better"), m.group()
        if m.group(5):
            assert kind_of(m.group(5), "en") == verdict_kind(r.verdict), m.group()
        seen["max-T"] += 1
    for line in re.findall(r"The checkpoint chosen by validation reward, .*", md):
        system = re.search(r"reward, (\S+) \(", line).group(1)
        for m in re.finditer(rf"shot (\d) ({NUM}) points (\[[^\]]+\])(?:, family-adjusted \[[^\]]+\])? \(([^)]+)\)",
                             line):
            r = row(comps, main, baseline, system, int(m.group(1)))
            assert close(value(m.group(2)), r["diff"]) and kind_of(m.group(4), "en") == verdict_kind(r.verdict)
            lo, hi = interval(m.group(3))
            if (lo > 0 or hi < 0) != (verdict_kind(r.verdict) in ("better", "worse")):
                assert "family-adjusted" in m.group(), line
            seen["validation"] += 1
    for m in re.finditer(rf"(\d+) comparisons \((.+?), n = ({NUM})\): (\d+) significant gains, (\d+) significant "
                         rf"drops, (\d+) equivalent, (\d+) with no detectable difference", md):
        kinds = comps[comps.subset == main].verdict.map(verdict_kind).value_counts()
        assert [int(m.group(i)) for i in (1, 4, 5, 6, 7)] == [
            sum(kinds), kinds.get("better", 0), kinds.get("worse", 0), kinds.get("equivalent", 0),
            kinds.get("inconclusive", 0)], m.group()
        seen["counts"] += 1
    for m in re.finditer(rf"Largest significant gain: (\S+) vs (\S+), shot (\d), ({NUM}) points", md):
        r = row(comps, main, m.group(2), m.group(1), int(m.group(3)))
        assert verdict_kind(r.verdict) == "better" and close(value(m.group(4)), r["diff"])
        seen["best"] += 1
    return seen


def detail_lines(md: str, comps: pd.DataFrame, lang: str) -> int:
    """Lines '- Shot k: B acc vs A acc, difference d, … adjusted p p → verdict' under their subset bullets."""
    subset, count = None, 0
    pattern = (rf"  - Shot (\d|\d[\d–, ]*? ?{POOLED_WORDS})[:：]\s*(\S+) ({NUM})% vs (\S+) ({NUM})%[，,]\s*"
               rf"(?:difference|差异) \**({NUM}).*?(?:adjusted p|校正后 p) ([^（(]+?)[（(].*→ (.+)$")
    for line in md.splitlines():
        if line.startswith("- **"):
            subset = subset_of(line, comps)
        elif subset and (m := re.match(pattern, line)):
            r = row(comps, subset, m.group(4), m.group(2).strip(), shot_of(m.group(1)))
            assert close(value(m.group(6)), r["diff"]) and p_ok(m.group(7), r.p_adj), line
            assert kind_of(m.group(8), lang) == verdict_kind(r.verdict), line
            count += 1
    return count


def html_cells(text: str) -> Counter:
    cells = re.findall(r"<t[dh]>(.*?)</t[dh]>", text, re.S)
    return Counter(html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells)


def md_cells(md: str) -> Counter:
    out: Counter = Counter()
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            out.update(c.strip().replace("**", "").replace("`", "").replace("\\|", "|")
                       for c in line.strip("|").split(" | "))
    return out


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("which", ["stats", "retest", "demo"])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_row_and_sentence_agrees_with_comparisons_csv(runs, which, lang) -> None:
    run = runs[which]
    comps = pd.read_csv(run / "stats" / "comparisons.csv")
    md = (run / "report" / f"report.{lang}.md").read_text()
    rows = table_rows(md, comps)
    assert len(rows) == len(comps)  # every comparison is in a table, once
    for subset, cells in rows:
        check_table_row(subset, cells, comps, lang)
    primary = comps[comps.family == "primary"]
    main = comps.groupby("subset")["n"].max().idxmax()
    assert check_answer(md, comps, lang) == len(primary if which == "retest" else primary[primary.subset == main])
    assert detail_lines(md, comps, lang) >= len(comps)
    if lang == "en":
        seen = sentences_en(md, comps, yaml.safe_load((run / "params.yaml").read_text())["report"]["baseline"])
        want = {"retest": {"counts": 1}, "demo": DEMO_SENTENCES}.get(which, {
            "counts": 1, "significant": 1, "range": 1, "max-T": 1, "validation": 1, "best": 1})
        assert {k: min(v, 1) for k, v in seen.items()} == want, seen
    page = (run / "report" / f"report.{lang}.html").read_text()
    assert md_cells(md) == html_cells(page)  # the html shows the same table cells as the markdown


@pytest.mark.parametrize("which", ["stats", "retest", "demo"])
def test_the_two_languages_carry_the_same_numbers_and_titles_of_their_own(runs, which) -> None:
    run = runs[which]
    zh, en = ((run / "report" / f"report.{lang}.md").read_text() for lang in ("zh", "en"))
    number = re.compile(NUM)
    assert Counter(number.findall(zh.replace("，", ", "))) == Counter(number.findall(en))
    assert not re.search(r"[\u4e00-\u9fff]", en.split("\n")[0]) and re.search(r"[\u4e00-\u9fff]", zh.split("\n")[0])
    assert (run / "report" / "report.md").read_text() == zh  # the configured language (zh) is the main report


def test_the_stats_run_reads_as_intended(runs) -> None:
    """The fixture's statistics hold what the checks above need: a gain, baselines apart, a best epoch whose
    max-T p and family p disagree, a validation pick with an interval that excludes 0 but no verdict."""
    comps = pd.read_csv(runs["stats"] / "stats" / "comparisons.csv")
    kinds = comps[comps.subset == "all"].verdict.map(verdict_kind)
    assert (kinds == "better").sum() >= 2 and (kinds == "inconclusive").sum() >= 2
