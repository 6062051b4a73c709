"""The report stage: run folder -> report/report.md, report/report.html, report/figures/*.png.

Layout (the one researchers in this field write, zh by default or en, with the answer first): title with
date and what is compared; 一 the answer (the primary family's claims, `icl_kit.report.answer`);
二 test configuration; 三 results (3.1 tables per subset, the most questions first, and comparison kind,
3.2 statistics summary); 四 one subsection per comparison, then training and best-epoch selection;
五 findings and 六 recommendations, derived by the rules of `icl_kit.report.rules`; 七 conclusion.
Every difference carries its 1 − α interval (1 − 2α for TOST) and adjusted p; arrows and bold only where
significant after adjustment. The date is the day the statistics were written
(stats/comparisons.csv), so re-rendering a finished run gives the same report.

Modules: build (inputs, HTML, entry point), sections (markdown), text (number
formats) and phrases (zh/en), rules (findings, recommendations), figures (PNG bytes;
the figures themselves are the notebooks' own), audit (the study's files).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import difflib
import hashlib
import html
import json
import re
from pathlib import Path
from typing import Any

import mistune
import pandas as pd

from icl_kit.core.config import Params, ReportConfig, load_params
from icl_kit.core.errors import KitError, few
from icl_kit.core.names import natural_key
from icl_kit.core.runs import RunPaths, atomic_write_bytes, atomic_write_json, atomic_write_text, read_jsonl
from icl_kit.evaluation.io import read_imported
from icl_kit.lvlm.work_record import read_work
from icl_kit.report.figures import png_bytes
from icl_kit.report.headroom import load_headroom
from icl_kit.report.sections import ReportInputs, build_markdown
from icl_kit.stats.intervals import LEVEL, summary_intervals
from icl_kit.stats.run import read_comparisons, read_stats_summary, run_intervals
from icl_kit.train.plots import first_seed, read_log, split_log

STATS_HINT = "run `icl-kit run PARAMS --stages stats`"
REQUIRED = {  # artefact (RunPaths attribute) -> how to make it
    "params": "run `icl-kit run PARAMS`",
    "comparisons": STATS_HINT,
    "stats_summary": STATS_HINT,
}
EVAL_HINT = "run `icl-kit run PARAMS --stages eval` (or import the study's results with `icl-kit study import-results`)"
AUDIT_FILE = RunPaths(Path()).audit.name  # report/audit.md, written by `icl-kit study audit` or `retest`
FINDING_MARK = "- ⚠️"
FIGURE_LINK_RE = re.compile(r"\]\((figures/[^)\s]+\.png)\)")
WARNING = "⚠️"  # banners (smoke run, simulated LVLM) start with it and get the warning style
CSS = """
body { font-family: -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", "PingFang SC",
       "Microsoft YaHei", sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1.5em;
       line-height: 1.55; color: #222; }
h1 { border-bottom: 2px solid #333; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0 .2em; }
blockquote { border-left: 4px solid #8aa; background: #f5f8f8; margin: 1em 0; padding: .2em 1em; }
blockquote.warn { border-left-color: #d1495b; background: #fff0f0; font-size: 1.05em; }
em { color: #555; }
"""


# ------------------------------------------------------------------ inputs
def load_inputs(run_dir: str | Path) -> ReportInputs:
    """Read a run's inputs, each file through its schema; a missing one is a KitError naming it and its stage."""
    paths = RunPaths(Path(run_dir))
    for name, how in REQUIRED.items():
        if not getattr(paths, name).is_file():
            raise KitError(f"{getattr(paths, name)} is missing; {how} first.")
    imported = read_imported(paths.root)
    if not paths.summary.is_file() and imported.empty:
        raise KitError(f"{paths.summary} is missing and nothing was imported; {EVAL_HINT} first.")
    params = load_params(paths.params)
    summary = read_stats_summary(paths.root)
    params.stats = summary.config  # alpha and the rest as the statistics were made (resolved once, by stats)
    comparisons = read_comparisons(paths.root)
    accuracy = accuracy_table(paths, 1 - params.stats.alpha)
    steps, epochs = split_log(first_seed(read_log(paths.root))[0])  # train.seeds: the first seed's curves
    date = dt.date.fromtimestamp(paths.comparisons.stat().st_mtime).isoformat()
    agreement_file = paths.lvlm_agreement
    agreement = json.loads(agreement_file.read_text(encoding="utf-8")) if agreement_file.is_file() else None
    audit_file = paths.audit
    findings = (audit_file.read_text(encoding="utf-8").count("\n" + FINDING_MARK) if audit_file.is_file() else None)
    evaluated = paths.predictions.is_file() or paths.summary.is_file()
    return ReportInputs(params, comparisons, summary, accuracy, steps, epochs, date, agreement,
                        imported=None if imported.empty else imported, evaluated=evaluated, audit_findings=findings,
                        work=read_work(paths.lvlm_work),
                        headroom=load_headroom(paths, params.stats))


def accuracy_table(paths: RunPaths, level: float = LEVEL) -> pd.DataFrame:
    """Accuracy (percent) with its interval at `level` (1 - stats.alpha) per (system, shot), as notebook 02 shows it.

    Columns system, epoch, shot, n, accuracy, low, high: t intervals from per-question
    scores (plus Wilson intervals of imported summary-only systems), or Wilson
    intervals of eval/summary.csv when the run has no per-question predictions.
    """
    if read_jsonl(paths.predictions) or not read_imported(paths.root).empty:
        return run_intervals(paths.root, level)
    return summary_intervals(pd.read_csv(paths.summary), level)


# ------------------------------------------------------------------ html
def inline_figures(md: str, base: Path) -> str:
    """Replace `](figures/x.png)` links with base64 PNG data URIs, for a self-contained document."""
    def repl(m: re.Match[str]) -> str:
        path = base / m.group(1)
        if not path.is_file():
            raise KitError(f"Figure {path} is missing; run write_report again to draw it.")
        return "](data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii") + ")"

    return FIGURE_LINK_RE.sub(repl, md)


def render_html(md: str, base: Path, title: str, language: str) -> str:
    """One self-contained HTML page: markdown (with tables) via mistune, figures embedded, simple CSS."""
    body = mistune.create_markdown(plugins=["table"])(inline_figures(md, base))
    body = body.replace(f"<blockquote>\n<p>{WARNING}", f'<blockquote class="warn">\n<p>{WARNING}')
    lang = "zh-CN" if language == "zh" else "en"
    return (f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")


# ------------------------------------------------------------------ entry point
LANGUAGES = ("zh", "en")
REPORT_META = RunPaths(Path()).report_json.name  # what the report was made from: its params and the statistics


def write_report(run_dir: str | Path, cfg: ReportConfig | None = None) -> dict[str, Any]:
    """Write the report in both languages side by side (report.zh.md/.html, report.en.md/.html, each with its
    own title), report.md/.html in `cfg.language`, the figures, and report.json (what it was made from).

    `cfg` defaults to the `report` section of the run's params.yaml; the statistics' own settings (α, margin,
    correction) are read from stats/summary.json, so the report always labels what the statistics did.
    Returns {"md": Path, "html": Path, "figures": [Path, ...], "languages": {lang: (md, html)}}.
    """
    inputs = load_inputs(run_dir)
    cfg = cfg or inputs.params.report
    check_baseline(inputs.comparisons, cfg.baseline)
    docs = {lang: build_markdown(inputs, dataclasses.replace(cfg, language=lang)) for lang in LANGUAGES}
    paths = RunPaths(Path(run_dir))  # every refusal (e.g. report.featured) happened above, before writing
    figures = []
    for name, make in docs[cfg.language][1].items():  # the figures carry no words of either language
        atomic_write_bytes(paths.figures / name, png_bytes(make()))
        figures.append(paths.figures / name)
    out = {}
    for lang, (md, _) in docs.items():
        for stem in (f"report.{lang}", "report") if lang == cfg.language else (f"report.{lang}",):
            md_path, html_path = paths.report_dir / f"{stem}.md", paths.report_dir / f"{stem}.html"
            atomic_write_text(md_path, md)
            atomic_write_text(html_path, render_html(md, paths.report_dir, md_title(md), lang))
            out.setdefault(lang, (md_path, html_path))
    atomic_write_json(paths.report_json, report_fingerprint(paths.root, inputs.params, cfg))
    return {"md": paths.report_md, "html": paths.report_html, "figures": figures,
            "languages": out}


def md_title(md: str) -> str:
    """The report's own title: its first line without the '# '."""
    return md.split("\n", 1)[0].removeprefix("# ").strip()


def report_fingerprint(root: Path, params: Params, cfg: ReportConfig) -> dict[str, Any]:
    """The report's inputs: its params, the stats settings it read, and a hash of the comparisons it rendered."""
    paths = RunPaths(root)
    return {"report": dataclasses.asdict(cfg), "stats": dataclasses.asdict(read_stats_summary(root).config),
            "comparisons_sha256": hashlib.sha256(paths.comparisons.read_bytes()).hexdigest()}


def report_is_current(run_dir: str | Path, params: Params) -> bool:
    """Was the run's report made from its current statistics and these report params?"""
    paths = RunPaths(Path(run_dir))
    meta = paths.report_json
    if not (meta.is_file() and paths.comparisons.is_file() and paths.stats_summary.is_file()):
        return False
    try:
        recorded = json.loads(meta.read_text(encoding="utf-8"))
        return recorded == json.loads(json.dumps(report_fingerprint(paths.root, params, params.report)))
    except (ValueError, KitError):
        return False  # a damaged record, or statistics of another kit version: made again


def check_baseline(comparisons: pd.DataFrame, baseline: str) -> None:
    """report.baseline must be a system the statistics compared (else the report would title a system it lacks)."""
    known = sorted(set(comparisons.system_a) | set(comparisons.system_b), key=natural_key)
    if baseline not in known:
        hint = difflib.get_close_matches(baseline, known, n=1)
        tip = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise KitError(f"report.baseline={baseline!r} is not a system of stats/comparisons.csv{tip}; it has "
                       f"{few(known, 'system', 5)}.")


def markdown_with_figures(md_path: str | Path) -> str:
    """A written report.md with its figures inlined as data URIs, for display in a notebook."""
    md_path = Path(md_path)
    return inline_figures(md_path.read_text(encoding="utf-8"), md_path.parent)
