"""The report's sections as markdown, from normalised run inputs (see `icl_kit.report.build`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from icl_kit.core.config import Params, ReportConfig, backend_traits
from icl_kit.core.errors import KitError, few
from icl_kit.core.names import collapse_epochs, method_of, natural_key
from icl_kit.evaluation.plots import plot_accuracy_by_epoch
from icl_kit.lvlm.work import Work
from icl_kit.report.answer import answer_section, headline, is_retest, main_sentences
from icl_kit.report.answer import claims as claim_rows
from icl_kit.report.headroom import headroom_section
from icl_kit.report.rules import FINDING_RULES, RECOMMENDATION_RULES, Facts, apply_rules, ci_cell
from icl_kit.report.text import (
    CORRECTION_NAMES,
    DOWN,
    UP,
    Doc,
    Text,
    approx_n,
    ci,
    count,
    is_pooled,
    md_table,
    need_text,
    num,
    p_bound,
    p_bound_is,
    p_is,
    pct,
    pts,
    pval,
    share,
    shot_order,
    work_cell,
)
from icl_kit.stats.pairs import ALL
from icl_kit.stats.plots import forest_plot, power_plot
from icl_kit.stats.schema import StatsSummary
from icl_kit.stats.verdict import verdict_kind
from icl_kit.train.plots import STEP_KEYS, training_curves, val_columns

KINDS = ("explicit", "method", "vs_baseline", "method_vs_baseline", "epoch_vs_previous", "pair")
INTERVAL_NAMES = {"t_changed": "Student t (df from the changed questions)", "score": "score (Wilson-type)",
                  "t": "Student t", "bca": "BCa bootstrap", "percentile": "percentile bootstrap"}
DATASET_NAMES = {"okvqa": "OK-VQA", "vqav2": "VQAv2"}


@dataclass
class ReportInputs:
    """Everything the report reads from a run folder."""

    params: Params
    comparisons: pd.DataFrame  # stats/comparisons.csv, normalised
    stats_summary: StatsSummary  # stats/summary.json
    accuracy: pd.DataFrame  # system, epoch, shot, n, accuracy, low, high (percent)
    steps: pd.DataFrame  # train_log.jsonl step lines
    epochs: pd.DataFrame  # train_log.jsonl epoch lines
    date: str
    agreement: dict[str, Any] | None = None  # lvlm_agreement.json, when the run measured it
    work: dict[str, Work] = field(default_factory=dict)  # lvlm_work.json: what the LVLM did per stage
    imported: pd.DataFrame | None = None  # eval/imported.csv: the study's runs, summary-only
    evaluated: bool = True  # the run has per-question predictions of its own
    audit_findings: int | None = None  # findings of report/audit.md, when the study's files were audited
    headroom: Any = None  # icl_kit.report.headroom.HeadroomInputs, when the headroom stage ran


# ------------------------------------------------------------------ helpers
def diff_cell(diff: float, verdict: str) -> str:
    """The difference, bold with an arrow only when significant after adjustment."""
    kind = verdict_kind(verdict)
    if kind == "better":
        return f"**{pts(diff)}** {UP}"
    if kind == "worse":
        return f"**{pts(diff)}** {DOWN}"
    return pts(diff)


def verdict_cell(t: Text, r: pd.Series, margin: float) -> str:
    text = t.verdict(r.verdict, need_text(r), margin)
    return f"{text} †" if r["mode"] == "summary" else text


def build_facts(inputs: ReportInputs, cfg: ReportConfig) -> Facts:
    """The rules' view of the run (stats/summary.json as its schema has it: icl_kit.stats.schema)."""
    s, summary = inputs.stats_summary.config, inputs.stats_summary
    return Facts(inputs.comparisons, alpha=s.alpha, margin=s.equivalence_margin, power=s.power,
                 correction=CORRECTION_NAMES.get(s.correction, s.correction), steps=inputs.steps, epochs=inputs.epochs,
                 best_epoch=summary.best_epoch, val_selected=summary.honest_number, smoke=cfg.smoke,
                 simulated=backend_traits(inputs.params.lvlm).simulated, p_floor=1 / (s.n_perm + 1),
                 baseline=s.baseline, all_questions=inputs.evaluated and inputs.params.eval.questions == "all")


def featured_pairs(facts: Facts, cfg: ReportConfig) -> list[tuple[str, str, str]]:
    """(A, B, kind) of the detailed analysis: every pair, or those touching a featured system."""
    known = set(facts.comparisons.system_a) | set(facts.comparisons.system_b)
    unknown = [s for s in cfg.featured if s not in known]
    if unknown:
        raise KitError(f"report.featured names {few(unknown, 'system')} without comparisons; choose from "
                       f"{few(sorted(known), 'system', 5)}.")
    pairs = facts.comparisons[["system_a", "system_b", "kind"]].drop_duplicates()
    keep = [(a, b, k) for a, b, k in pairs.itertuples(index=False)
            if not cfg.featured or a in cfg.featured or b in cfg.featured]
    keep = sorted(keep, key=lambda p: (KINDS.index(p[2]) if p[2] in KINDS else len(KINDS), natural_key(p[1])))
    seen: set[tuple[str, str]] = set()  # one subsection per pair, under its first kind (explicit before automatic)
    return [p for p in keep if (p[0], p[1]) not in seen and not seen.add((p[0], p[1]))]


# ------------------------------------------------------------------ title and configuration
def header(doc: Doc, t: Text, inputs: ReportInputs, cfg: ReportConfig, facts: Facts) -> None:
    p = inputs.params
    b_systems = [method_of(b) for a, b, k in featured_pairs(facts, cfg) if k == "vs_baseline" or a == cfg.baseline]
    claims = claim_rows(facts)
    if b_systems or claims.empty:
        compared = f"{t.join(collapse_epochs(sorted(set(b_systems), key=natural_key)), limit=6)} vs {cfg.baseline}"
    else:
        compared = t("compared_claims", m=count(claims[["claim", "shot"]].drop_duplicates().shape[0]))
    _, n, _ = facts.main()
    model = t("sim_model") if facts.simulated else p.lvlm.model
    title = cfg.title or (t("title_retest") if is_retest(claims) else t("title_default")
                          + (t("title_sim") if facts.simulated else ""))
    doc.add(t("title", title=title, compared=compared))
    if inputs.evaluated:
        doc.add(t("header", date=inputs.date, dataset=DATASET_NAMES[p.data.dataset], n=count(n), model=model,
                  sampler="RandSampler"))
    else:
        files = sorted({str(s).split(":")[0] for s in inputs.imported["source"]}) if inputs.imported is not None else []
        doc.add(t("header_imported", date=inputs.date, files=t.join(files), n=count(n)))
    if cfg.smoke:
        doc.add(t("smoke_banner"))
    if facts.simulated:
        doc.add(t("sim_banner"))


def imported_systems(t: Text, imported: pd.DataFrame) -> str:
    """Each imported system with where it came from: file and key, its questions, its shots."""
    rows = []
    for (system, source, world), g in imported.groupby(["system", "source", "world"], sort=False):
        shots = ", ".join(str(k) for k in sorted(g["shot"]))
        rows.append([str(system), f"`{source}`", f"{t.subset_label(str(world))} (n = {count(g['n'].max())})", shots])
    return md_table([t("system"), t("col_source"), t("col_questions"), t("cfg_shots")], rows)


def configuration(doc: Doc, t: Text, inputs: ReportInputs, cfg: ReportConfig, facts: Facts) -> None:
    if not inputs.evaluated:
        s = inputs.params.stats
        doc.add(t.section(1), t("imported_intro"), imported_systems(t, inputs.imported),
                t("stats_line", desc=t("stats_desc_summary", correction=facts.correction, alpha=num(s.alpha, 2),
                                       margin=num(s.equivalence_margin), power=share(s.power))))
        return
    _configuration_table(doc, t, inputs, cfg, facts)
    if inputs.imported is not None and len(inputs.imported):
        doc.add(t("imported_intro"), imported_systems(t, inputs.imported))


def _configuration_table(doc: Doc, t: Text, inputs: ReportInputs, cfg: ReportConfig, facts: Facts) -> None:
    p, s = inputs.params, inputs.params.stats
    _, n, main = facts.main()
    k = main["n_clusters"].max() if "n_clusters" in main and s.cluster != "none" else np.nan  # images, clustered
    dataset = DATASET_NAMES[p.data.dataset]
    systems = sorted(inputs.accuracy.system.unique(), key=natural_key)
    rows = [
        [t("cfg_dataset"), t("demo_dataset", dataset=dataset) if p.data.demo else dataset],
        [t("cfg_questions"), t("questions_desc", how=t(f"q_{p.eval.questions}"), n=count(n))],
        [t("cfg_model"), t("sim_model") if facts.simulated else p.lvlm.model],
        [t("cfg_sampler"), t("sampler_desc", size=p.pools.size, seed=p.pools.seed)],
        [t("cfg_systems"), t.join(systems, limit=12)],
        [t("cfg_shots"), ", ".join(str(k) for k in sorted(inputs.accuracy.shot.unique()))],
        [t("cfg_stats"), t("stats_desc", correction=facts.correction, alpha=num(s.alpha, 2),
                           interval=INTERVAL_NAMES.get(s.interval, s.interval),
                           margin=num(s.equivalence_margin), power=share(s.power),
                           cluster=t("cluster_desc", k=count(k)) if pd.notna(k) else "")],
        [t("cfg_training"), t("training_desc", sft=p.train.sft.epochs, rce=p.train.rce.epochs, grpo=p.train.grpo.epochs,
                              reward=p.train.reward.kind, seeds=t("seeds_desc", k=len(p.train.seeds), seeds=", ".join(
                                  str(s) for s in p.train.seeds)) if p.train.seeds else "")],
        [t("cfg_run"), t("run_smoke") if cfg.smoke else t("run_normal")],
    ]
    if inputs.work:
        rows.insert(3, [t("cfg_work"), work_cell(t, inputs.work)])
    if inputs.agreement:
        g = inputs.agreement
        rows.insert(3, [t("cfg_batching"), t("agreement_desc", agree=g["agree"], n=g["n"], batch=g["batch_size"],
                                             dtype=g["dtype"])])
    doc.add(t.section(1), md_table([t("key"), t("value")], rows))


# ------------------------------------------------------------------ results
def results(doc: Doc, t: Text, inputs: ReportInputs, facts: Facts) -> None:
    """2.1: accuracy of each system, then per subset one table per comparison kind and a forest plot."""
    acc = inputs.accuracy
    shots = sorted(acc.shot.unique())
    table = []
    for system in sorted(acc.system.unique(), key=natural_key):
        cells = {r.shot: f"{pct(r.accuracy)} [{num(r.low)}, {num(r.high)}]"
                 for r in acc[acc.system == system].itertuples()}
        table.append([system] + [cells.get(k, "—") for k in shots])
    doc.add(t("sub_acc"), t("acc_caption"), md_table([t("system")] + [f"Shot {k}" for k in shots], table))
    if "accuracy_by_epoch.png" not in doc.figures:  # the answer shows it first when it has claims
        main_figure(doc, t, inputs, facts)
    for subset, n in reversed(facts.subsets()):  # the most questions first: the tables to read
        rows = facts.comparisons[facts.comparisons.subset == subset]
        doc.add(t("subset_heading", label=t.subset_label(subset), n=count(n)))
        if is_question_subset(subset):  # first N / random N of the run's questions: families of their own
            doc.add(t("subset_family", all=t.subset_label(ALL), n_all=count(dict(facts.subsets()).get(ALL, n)),
                      sizes=family_sizes(rows)))
        for kind in [k for k in KINDS if (rows.kind == k).any()] + sorted(set(rows.kind) - set(KINDS)):
            label = t(f"kind_{kind}", baseline=inputs.params.report.baseline) if kind in KINDS else kind
            doc.add(label, _comparison_table(t, rows[rows.kind == kind], facts))
        doc.figure(t, f"forest_{subset}.png",
                   lambda s=subset: forest_plot(facts.comparisons, s, facts.margin, facts.alpha),
                   t("cap_forest", label=t.subset_label(subset), margin=num(facts.margin))
                   + (t("cap_forest_squares") if (rows["mode"] == "summary").any() else ""))
    doc.add(t("table_note", correction=facts.correction, alpha=num(facts.alpha, 2), margin=num(facts.margin),
              power=share(facts.power), sizes=family_sizes(facts.comparisons)))
    if any(facts.at_floor(r) for _, r in facts.comparisons.iterrows()):
        doc.add(t("floor_note", n_perm=count(inputs.params.stats.n_perm), floor=num(facts.p_floor, 5)))
    if (facts.comparisons["mode"] == "summary").any():
        doc.add(t("approx_note"))


def main_figure(doc: Doc, t: Text, inputs: ReportInputs, facts: Facts) -> None:
    """Accuracy by checkpoint at each shot, with the baselines: the figure the answer is read against."""
    acc = inputs.accuracy
    doc.figure(t, "accuracy_by_epoch.png", lambda: plot_accuracy_by_epoch(acc, level=1 - facts.alpha),
               t("cap_accuracy"))


def is_question_subset(subset: str) -> bool:
    """A `stats.subsets` entry (first N, random N) of the run's own questions, as opposed to all of them or an
    imported world."""
    return bool(re.fullmatch(r"first\d+|random\d+_seed\d+", subset))


def family_sizes(df: pd.DataFrame) -> str:
    """`44, 4`: the distinct family sizes m of the comparisons (α/m is each family's level)."""
    sizes = df["family_size"].dropna().astype(int).unique() if "family_size" in df else []
    return ", ".join(count(m) for m in sorted(sizes, reverse=True)) or count(len(df))


def _b_cell(r: pd.Series) -> str:
    label = r.get("label")
    own = isinstance(label, str) and label and label != f"{r.system_b} vs {r.system_a}"
    return f"{r.system_b} ({label})" if own else str(r.system_b)


def _comparison_table(t: Text, rows: pd.DataFrame, facts: Facts) -> str:
    rows = rows.sort_values(["system_b", "system_a", "shot"],
                            key=lambda c: c.map(shot_order if c.name == "shot" else natural_key))
    body = [[_b_cell(r), r.system_a, t.shot(r.shot, r.get("shots")), pct(r.acc_a), pct(r.acc_b),
             diff_cell(r["diff"], r.verdict),
             ci_cell(t, r), ci(r.tost_low, r.tost_high), p_bound(r.p_adj, facts.at_floor(r)),
             verdict_cell(t, r, facts.margin)] for _, r in rows.iterrows()]
    heads = ["col_b", "col_a", "col_shot", "col_acc_a", "col_acc_b", "col_diff", "col_ci", "col_tost", "col_padj",
             "col_verdict"]
    return md_table([t(h) for h in heads], body)


def statistics_summary(doc: Doc, t: Text, inputs: ReportInputs, facts: Facts) -> None:
    """2.2: per subset and kind, the mean difference and the verdict counts; then the power curve."""
    body = []
    for subset, _ in reversed(facts.subsets()):
        rows = facts.comparisons[facts.comparisons.subset == subset]
        for kind, g in sorted(rows.groupby("kind"), key=lambda kv: KINDS.index(kv[0]) if kv[0] in KINDS else 9):
            kinds = g.verdict.map(verdict_kind).value_counts()
            name = t(f"kindname_{kind}") if kind in KINDS else kind
            half = float(np.median((g.ci_high - g.ci_low) / 2))
            body.append([t.subset_label(subset), name, count(len(g)), pts(g["diff"].mean()), f"±{num(half)}"]
                        + [count(kinds.get(k, 0)) for k in ("better", "worse", "equivalent", "inconclusive")])
    heads = ["col_subset", "col_kind", "col_count", "col_mean", "col_halfwidth", "col_better", "col_worse",
             "col_equiv", "col_inconcl"]
    doc.add(t("sub_summary"), md_table([t(h) for h in heads], body))
    _, n, main = facts.main()
    sd = main.loc[main["mode"] == "paired", "sd_diff"].median()
    m = int(main["family_size"].max()) if main["family_size"].notna().any() else len(main)  # the family's α/m
    if np.isfinite(sd) and sd > 0:
        doc.figure(t, "power_curve.png",
                   lambda: power_plot(float(sd), n, facts.alpha / m, facts.power, facts.margin),
                   t("cap_power", power=share(facts.power), sd=num(sd), n=count(n), margin=num(facts.margin),
                     m=count(m)))


# ------------------------------------------------------------------ details
def details(doc: Doc, t: Text, inputs: ReportInputs, cfg: ReportConfig, facts: Facts) -> None:
    """三: one subsection per featured comparison, then training and best-epoch selection."""
    i = 0
    for i, (a, b, _kind) in enumerate(featured_pairs(facts, cfg), start=1):
        doc.add(t("detail_heading", i=i, a=a, b=b))
        lines = []
        for subset, n in reversed(facts.subsets()):
            c = facts.comparisons
            rows = c[(c.subset == subset) & (c.system_a == a) & (c.system_b == b)]
            rows = rows.sort_values("shot", key=lambda s: s.map(shot_order))  # the row pooled over the shots last
            if rows.empty:
                continue
            lines.append(t("detail_subset", label=t.subset_label(subset), n=count(n)))
            lines += [_detail_line(t, facts, r, a, b) for _, r in rows.iterrows()]
            per_shot = rows[~rows.shot.map(is_pooled)]  # medians over the shots: the pooled row is not a shot
            if per_shot.mde.notna().any():
                mid = per_shot.iloc[len(per_shot) // 2]  # the median shot's row: its n needed, as its table row says
                obs = per_shot.n_needed_observed.median()
                lines.append(t("detail_mde", n=count(n), power=share(facts.power), mde=num(per_shot.mde.median()),
                               m=count(rows.family_size.max()), margin=num(facts.margin), need=need_text(mid),
                               shot=mid.shot)
                             + (t("detail_mde_obs", need_obs=approx_n(obs)) if np.isfinite(obs) else t("full_stop")))
        doc.add("\n".join(lines))
    if inputs.evaluated:
        _training(doc, t, facts, i + 1)
    _best_epoch(doc, t, facts, i + 2)


def _detail_line(t: Text, facts: Facts, r: pd.Series, a: str, b: str) -> str:
    fields = {"shot": t.shot(r.shot, r.get("shots")), "a": a, "b": b, "acc_a": pct(r.acc_a), "acc_b": pct(r.acc_b),
              "diff": diff_cell(r["diff"], r.verdict), "ci": ci_cell(t, r),
              "tost_ci": ci(r.tost_low, r.tost_high), "p_adj": p_bound_is(r.p_adj, facts.at_floor(r)), "p": p_is(r.p),
              "verdict": verdict_cell(t, r, facts.margin)}
    if r["mode"] == "summary":
        return t("detail_line_summary", **fields)
    return t("detail_line", sign=p_is(r.sign_p), up=count(r.n_improved), down=count(r.n_worsened), **fields)


def _training(doc: Doc, t: Text, facts: Facts, i: int) -> None:
    doc.add(t("train_heading", i=i))
    if facts.steps.empty and facts.epochs.empty:
        doc.add(t("no_train_log"))
        return
    loss, rewards = val_columns(facts.epochs)
    if len(facts.epochs) and "epoch" in facts.epochs.columns:
        # epochs are 0-based inside checkpoints and train_log.jsonl; shown 1-based, as the files are named
        heads = [t("col_phase"), t("col_epoch"), t("col_ckpt")] + ([t("col_val_loss")] if loss else [])
        heads += [f"{t('col_val_reward')} ({k.removeprefix('val/')})" for k in rewards]
        time_key = next((k for k in ("time/epoch_s", "epoch_time_s") if k in facts.epochs.columns), None)
        has_time = time_key is not None
        body = []
        for _, r in facts.epochs.iterrows():
            ckpt = r.get("checkpoint")
            ckpt = Path(ckpt).stem if isinstance(ckpt, str) and ckpt else "—"
            epoch = str(int(r["epoch"]) + 1) if r["epoch"] >= 0 else "—"  # -1: the line before training
            cells = [str(r.get("phase", "—")), epoch, ckpt] + ([num(r[loss], 3)] if loss else [])
            cells += [num(r[k], 3) for k in rewards] + ([num(r[time_key], 0)] if has_time else [])
            body.append(cells)
        doc.add(md_table(heads + ([t("col_time")] if has_time else []), body))
    if any(k in facts.steps.columns for k in STEP_KEYS) or (len(facts.epochs) and (loss or rewards)):
        doc.figure(t, "training_curves.png", lambda: training_curves(facts.steps, facts.epochs, loss, rewards),
                   t("cap_training"))


def _best_epoch(doc: Doc, t: Text, facts: Facts, i: int) -> None:
    entries = [e for e in facts.best_epoch if "naive_p" in e and "maxT_p" in e]
    if not entries:
        return
    joint = [e for e in entries if e.get("scope") == "joint"]  # one test over every (epoch, shot) of a lineage
    body = [[str(e.get("lineage", "—")), t.shot(e.get("shot", "—"), e.get("shots")),
             str(e.get("best_system") or e.get("best_epoch", "—"))  # the checkpoint's name, not its 0-based epoch
             + (f" (shot {e.get('best_shot')})" if e in joint else ""),
             pts(e.get("best_diff")), pval(e["naive_p"]), pval(e["maxT_p"])] for e in entries]
    heads = ["col_lineage", "col_shot", "col_best", "col_best_diff", "col_naive", "col_maxt"]
    n_epochs = max(int(e.get("n_epochs", len(e.get("epochs", [])) or 0)) for e in entries)
    note = t("best_note", e=count(n_epochs)) + (t("best_note_joint", e=count(max(e["n_epochs"] for e in joint)),
                                                  k=count(max(e["n_shots"] for e in joint))) if joint else "")
    doc.add(t("best_heading", i=i), md_table([t(h) for h in heads], body), note)


# ------------------------------------------------------------------ findings to conclusion
def findings_and_advice(doc: Doc, t: Text, facts: Facts) -> None:
    found = headline(t, facts) + apply_rules(FINDING_RULES, facts, t)
    advice = apply_rules(RECOMMENDATION_RULES, facts, t)
    doc.add(t.section(4), "\n".join(f"- {x}" for x in found) or t("f_none"))
    doc.add(t.section(5), "\n".join(f"- {x}" for x in advice) or t("r_none"))


def conclusion(doc: Doc, t: Text, facts: Facts) -> None:
    text = headline(t, facts) + main_sentences(t, facts)
    if facts.smoke:
        text.append(t("conclusion_smoke"))
    if facts.simulated:
        text.append(t("conclusion_sim"))
    doc.add(t.section(6), t("sentence_sep").join(text))


def build_markdown(inputs: ReportInputs, cfg: ReportConfig | None = None) -> tuple[str, dict[str, Callable]]:
    """The report in `cfg.language` and the figures it links to (file name -> function drawing it)."""
    cfg = cfg or inputs.params.report
    t, doc, facts = Text(cfg.language, inputs.params.stats.alpha), Doc(), build_facts(inputs, cfg)
    if facts.comparisons.empty:
        raise KitError("stats/comparisons.csv has no rows; evaluate at least two systems, then run the stats stage.")
    header(doc, t, inputs, cfg, facts)
    answer_section(doc, t, facts, inputs.audit_findings, lambda: main_figure(doc, t, inputs, facts))
    configuration(doc, t, inputs, cfg, facts)
    doc.add(t.section(2))
    results(doc, t, inputs, facts)
    statistics_summary(doc, t, inputs, facts)
    headroom_section(doc, t, inputs.headroom)  # 3.3, only when the headroom stage ran
    doc.add(t.section(3))
    details(doc, t, inputs, cfg, facts)
    findings_and_advice(doc, t, facts)
    conclusion(doc, t, facts)
    return doc.text(), doc.figures
