"""The report's first section, the answer: the claims a run is about (its primary family, `stats.comparisons`;
in a re-test, the study's claims) in one table with plain-words verdicts, and the sentences saying how many
hold and why. Key findings and the conclusion quote the same sentences (`headline`), so the report says one
thing in three places, all taken from the rows of stats/comparisons.csv that the table shows.

A claim holds when it is significant after the family's correction in the claimed direction
(`icl_kit.stats.verdict.claim_holds`). Rows of one claim (same label and shot) are its evidence: the study's
summary numbers (approximate) and, when re-measured, per-question paired rows on each subset; each row
shows its own n. A claim over every shot also has its row pooled over the shots (`icl_kit.stats.pooled`),
shown after the per-shot ones as `1–4 (all shots)`. In a run of several training seeds (`train.seeds`) a
claim naming a method is tested over the seeds (`icl_kit.stats.seeds`, mode 'seeds') and says so ("this
method, 3 training seeds x ..."), apart from the claims about one checkpoint ("this checkpoint (one training
run)").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from icl_kit.report.rules import Facts
from icl_kit.report.text import Doc, Text, ci, count, md_table, need_text, num, p_bound, pts, share
from icl_kit.stats.seeds import SEEDS_MODE
from icl_kit.stats.verdict import claim_holds, verdict_kind, verdict_margin

PRIMARY = "primary"
MAX_CELLS = 6  # claims that hold, listed one by one in a sentence; the rest are counted


def claims(facts: Facts) -> pd.DataFrame:
    """Primary-family rows in claim order (first appearance), summary evidence before paired, small n first."""
    df = facts.comparisons
    rows = df[df["family"] == PRIMARY].copy() if "family" in df else df.iloc[:0].copy()
    if rows.empty:
        return rows
    rows["claim"] = [r.label if isinstance(r.label, str) and r.label else f"{r.system_b} vs {r.system_a}"
                     for r in rows.itertuples()]
    order = {key: i for i, key in enumerate(dict.fromkeys(zip(rows["claim"], rows["shot"], strict=True)))}
    rows["_order"] = [order[(c, s)] for c, s in zip(rows["claim"], rows["shot"], strict=True)]
    rows["_evidence"] = [(0 if m == "summary" else 1, n) for m, n in zip(rows["mode"], rows["n"], strict=True)]
    return rows.sort_values(["_order", "_evidence"], kind="stable").drop(columns=["_order", "_evidence"])


def holds(row: pd.Series) -> bool:
    claimed = row.get("claimed")
    return claim_holds(row["verdict"], row["diff"], None if claimed is None or pd.isna(claimed) else float(claimed))


def plain_verdict(t: Text, row: pd.Series, margin: float) -> str:
    """'a real gain' / 'a real drop' / 'equivalent within ±δ' / 'cannot be told from noise'."""
    kind = verdict_kind(row["verdict"])
    if kind == "equivalent":
        return t("a_equiv", margin=num(verdict_margin(row["verdict"], margin)))
    return t({"better": "a_gain", "worse": "a_drop"}.get(kind, "a_noise"))


def is_retest(rows: pd.DataFrame) -> bool:
    """Claims with the study's reported numbers among their evidence (a re-test of its files)."""
    return bool(len(rows)) and bool((rows["mode"] == "summary").any()) and bool(rows["claimed"].notna().any())


def evidence(t: Text, row: pd.Series, retest: bool, seeded: bool = False) -> str:
    """What a claim's row rests on: the study's numbers, this run's questions, or (`seeded`: a run of several
    training seeds) one checkpoint's questions or a method's seeds x questions."""
    if row["mode"] == "summary":
        return t("ev_summary", n=count(row["n"]))
    if row["mode"] == SEEDS_MODE:
        return t("ev_seeds", k=count(row["n_seeds"]), label=t.subset_label(row["subset"]), n=count(row["n"]))
    key = "ev_paired" if retest else "ev_checkpoint" if seeded else "ev_run"
    return t(key, label=t.subset_label(row["subset"]), n=count(row["n"]))


def seeded(rows: pd.DataFrame) -> bool:
    """Does the run test methods over training seeds (rows of mode 'seeds')?"""
    return bool((rows["mode"] == SEEDS_MODE).any())


def claims_table(t: Text, facts: Facts, rows: pd.DataFrame) -> str:
    with_claimed = rows["claimed"].notna().any() if "claimed" in rows else False
    retest = is_retest(rows)
    heads = [t("c_claim"), t("col_shot")] + ([t("c_claimed")] if with_claimed else []) + [
        t("c_evidence"), t("c_diff"), t("c_family"), t("col_padj"), t("c_mde"), t("c_need", margin=num(facts.margin)),
        t("c_verdict")]
    body = []
    for _, r in rows.iterrows():
        claimed = [pts(r["claimed"]) if pd.notna(r["claimed"]) else "—"] if with_claimed else []
        diff = f"{pts(r['diff'])} {ci(r.ci_low, r.ci_high)}"
        family = ci(r.get("ci_low_family"), r.get("ci_high_family"))
        body.append([r["claim"], t.shot(r["shot"], r.get("shots")), *claimed, evidence(t, r, retest, seeded(rows)),
                     diff, family,
                     p_bound(r.p_adj, facts.at_floor(r)), f"±{num(r['mde'])}", need_text(r),
                     plain_verdict(t, r, facts.margin)])
    return md_table(heads, body)


def _groups(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Evidence groups: the study's summaries first, then each paired subset, small n first."""
    keyed = rows.assign(_g=[("summary" if m == "summary" else f"{SEEDS_MODE}/{s}" if m == SEEDS_MODE else s)
                            for m, s in zip(rows["mode"], rows["subset"], strict=True)])
    order = keyed.groupby("_g")["n"].max().sort_values(kind="stable")
    names = sorted(order.index, key=lambda g: (g != "summary", order[g]))
    return [(g, keyed[keyed["_g"] == g]) for g in names]


def _cells(t: Text, rows: pd.DataFrame) -> str:
    cells = [t("h_cell", claim=r["claim"], shot=t.shot(r["shot"], r.get("shots")), diff=pts(r["diff"]),
               ci=ci(r.ci_low, r.ci_high))
             for _, r in rows.head(MAX_CELLS).iterrows()]
    return t.join(cells, limit=MAX_CELLS) + (f" {t('and_more', k=len(rows) - MAX_CELLS)}" if len(rows) > MAX_CELLS
                                             else "")


def _group_sentence(t: Text, facts: Facts, group: pd.DataFrame, what: str, retest: bool) -> str:
    """How many claims of one evidence group hold, and what the others are: a real difference the claim did
    not make, equivalent within ±δ, or not to be told from noise (with the interval width and the MDE)."""
    first = group.iloc[0]
    label, n = t.subset_label(first["subset"]), count(group["n"].max())
    where = (t("w_summary", n=n) if first["mode"] == "summary"
             else t("w_seeds", k=count(first["n_seeds"]), label=label, n=n) if first["mode"] == SEEDS_MODE
             else t("w_paired" if retest else "w_run", label=label, n=n))
    held_mask = pd.Series([holds(r) for _, r in group.iterrows()], index=group.index, dtype=bool)
    kinds = group["verdict"].map(verdict_kind)
    contrary = group[kinds.isin(["better", "worse"]) & ~held_mask]
    noise = group[kinds == "inconclusive"]
    fields = {"m": count(len(group)), "what": t(what), "where": where, "power": share(facts.power),
              "margin": num(facts.margin),
              "hw": num(float(np.median((noise.ci_high - noise.ci_low) / 2))) if len(noise) else "—",
              "mde": num(float(noise["mde"].dropna().median())) if noise["mde"].notna().any() else "—"}
    if len(noise) == len(group):
        return t("h_none", **fields)
    held = group[held_mask]
    clauses = [t("h_held_one" if len(held) == 1 else "h_held", held=count(len(held)), cells=_cells(t, held),
                 **fields) if len(held)
               else t("h_held_none", **fields)]
    if len(contrary):
        clauses.append(t("h_contrary", k=count(len(contrary)), cells=_cells(t, contrary)))
    if (kinds == "equivalent").any():
        clauses.append(t("h_equiv", k=count(int((kinds == "equivalent").sum())), margin=num(facts.margin)))
    if len(noise):
        clauses.append(t("h_noise", k=count(len(noise)), **fields))
    return t("h_join", first=clauses[0], rest=t("clause_sep").join(clauses[1:])) if len(clauses) > 1 \
        else clauses[0] + t("full_stop")


def answer_rows(facts: Facts) -> pd.DataFrame:
    """The claims the answer states: every kind of evidence in a re-test; otherwise the run's own claims on
    its largest subset (the others come later, with the tables of each subset)."""
    rows = claims(facts)
    if rows.empty or is_retest(rows):
        return rows
    subset, _, _ = facts.main()
    main = rows[rows["subset"] == subset]
    return main if len(main) else rows


def headline(t: Text, facts: Facts) -> list[str]:
    """One sentence per evidence group of the claims; without claims, nothing (the counts say it)."""
    rows = answer_rows(facts)
    if rows.empty:
        return []
    what = "what_claims" if rows["claimed"].notna().any() else "what_primary"
    return [_group_sentence(t, facts, g, what, is_retest(rows)) for _, g in _groups(rows)]


def main_sentences(t: Text, facts: Facts) -> list[str]:
    """The main subset's verdict counts and its largest significant gain (or that there is none)."""
    subset, n, rows = facts.main()
    kinds = rows.verdict.map(verdict_kind).value_counts()
    text = [t("conclusion", m=count(len(rows)), label=t.subset_label(subset), n=count(n),
              better=count(kinds.get("better", 0)), worse=count(kinds.get("worse", 0)),
              equiv=count(kinds.get("equivalent", 0)), inconcl=count(kinds.get("inconclusive", 0)))]
    gains = rows[rows.verdict.map(verdict_kind) == "better"]
    if len(gains):
        r = gains.loc[gains["diff"].idxmax()]
        text.append(t("conclusion_best", b=r.system_b, a=r.system_a, shot=t.shot(r.shot, r.get("shots")),
                      diff=pts(r["diff"]), ci=ci(r.ci_low, r.ci_high)))
    else:
        text.append(t("conclusion_none"))
    return text


def answer_section(doc: Doc, t: Text, facts: Facts, audit_findings: int | None,
                   main_figure: Callable[[], None] | None = None) -> None:
    """The first section: headline sentences, the claims table and its notes; without claims (no primary
    family), the main subset's verdict counts and largest gain, as the conclusion states them."""
    rows = answer_rows(facts)
    doc.add(t.section(0, t("name_answer_retest") if is_retest(rows) else None))
    if rows.empty:
        doc.add(t("sentence_sep").join(main_sentences(t, facts)))
        return
    doc.add(t("sentence_sep").join(headline(t, facts)))
    if main_figure is not None:
        main_figure()
    doc.add(claims_table(t, facts, rows))
    notes = [t("c_note", level=t.defaults["level"], power=share(facts.power), margin=num(facts.margin),
               sizes=", ".join(count(m) for m in sorted({int(m) for m in rows["family_size"].dropna()})))]
    if (rows["mode"] == "summary").any():
        notes.append(t("c_note_summary"))
    if seeded(facts.comparisons):
        notes.append(t("c_note_seeds", k=count(facts.comparisons["n_seeds"].max())))
    if audit_findings is not None:
        notes.append(t("c_note_audit", k=count(audit_findings)))
    doc.add("\n".join(f"- {n}" for n in notes))

