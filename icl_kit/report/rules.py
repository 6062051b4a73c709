"""Findings and recommendations, derived from the run's numbers by a registry of small rules.

Each rule looks at the `Facts` of a run and returns text (a sentence, or a list
of sentences) or None when it does not apply. Nothing here is fixed prose: a
rule fires only when its condition holds in the numbers, and every number it
quotes comes from the run, formatted by `icl_kit.report.text`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from icl_kit.core.config.params import ALPHA, POWER
from icl_kit.core.names import EPOCH_RE
from icl_kit.report.text import Text, approx_n, ci, count, need_text, num, p_bound_is, p_is, pct, pts, pval, share
from icl_kit.stats.verdict import verdict_kind
from icl_kit.train.plots import val_columns

WEAK_ADV_STD = 0.01  # median advantage std below this: GRPO barely moved the policy
FEASIBLE_N_RATIO = 10  # n needed beyond this multiple of the run's n: call the differences undetectable
MAX_LISTED = 6  # significant comparisons quoted one by one; the rest are counted
FLOOR_RTOL = 1e-6  # a raw p within this relative distance of the Monte Carlo floor counts as at the floor


@dataclass
class Facts:
    """What the rules read: comparisons (normalised), training log, stats summary blocks, run labels."""

    comparisons: pd.DataFrame
    alpha: float = ALPHA
    margin: float = 1.0
    power: float = POWER
    correction: str = "Holm"  # display name of the multiplicity correction
    steps: pd.DataFrame = field(default_factory=pd.DataFrame)
    epochs: pd.DataFrame = field(default_factory=pd.DataFrame)
    best_epoch: list[dict[str, Any]] = field(default_factory=list)
    baseline: str = ""  # the system the best-epoch tests compare with (stats.baseline)
    val_selected: dict[str, dict[str, Any]] = field(default_factory=dict)
    smoke: bool = False
    simulated: bool = False
    all_questions: bool = False  # the run evaluated every test question of its split: more n needs another split
    p_floor: float = 0.0  # smallest Monte Carlo p, 1 / (n_perm + 1); 0: unknown. Exact p has no floor.

    def at_floor(self, row: Any) -> bool:
        """True when a Monte Carlo row's raw p sits at its floor: its adjusted p is an upper bound.

        Exact rows (p_method 'exact', the usual case on the VQA lattice) are never bounds."""
        p = row["p"] if "p" in row else math.nan
        method = str(row["p_method"]) if "p_method" in row else "exact"
        return bool(self.p_floor > 0 and row["mode"] == "paired" and method.startswith("monte_carlo")
                    and p <= self.p_floor * (1 + FLOOR_RTOL))

    def subsets(self) -> list[tuple[str, int]]:
        """(subset, n) ordered by n, smallest first."""
        if self.comparisons.empty:
            return []
        n = self.comparisons.groupby("subset")["n"].max()
        return sorted(((str(s), int(v)) for s, v in n.items()), key=lambda x: (x[1], x[0]))

    def main(self) -> tuple[str, int, pd.DataFrame]:
        """The subset with the most questions: the one findings and the conclusion quote."""
        subset, n = self.subsets()[-1]
        return subset, n, self.comparisons[self.comparisons.subset == subset]


# ------------------------------------------------------------------ derived facts
def _median(values: Any) -> float:
    arr = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), float)
    arr = arr[np.isfinite(arr)]
    return float(np.median(arr)) if arr.size else math.nan


def epoch_label(row: pd.Series) -> str:
    """The checkpoint an epoch line wrote ('grpo_epoch2'), else 'grpo epoch 2' (1-based, as the files are named;
    the log's epochs are 0-based)."""
    ckpt = row.get("checkpoint")
    if isinstance(ckpt, str) and ckpt:
        return ckpt.rsplit("/", 1)[-1].removesuffix(".pt")
    phase, shown = row.get("phase"), int(row["epoch"]) + 1
    return f"{phase} epoch {shown}" if isinstance(phase, str) else f"epoch {shown}"


def val_choice(f: Facts) -> dict[str, Any] | None:
    """Best epoch by lowest validation loss vs by highest validation reward (mean over val shots)."""
    loss_col, reward_cols = val_columns(f.epochs)
    if loss_col is None or not reward_cols or "epoch" not in f.epochs.columns:
        return None
    ep = f.epochs.assign(_reward=f.epochs[reward_cols].mean(axis=1))
    ep = ep[np.isfinite(pd.to_numeric(ep[loss_col], errors="coerce")) & np.isfinite(ep["_reward"])]
    ep = ep[pd.to_numeric(ep["epoch"], errors="coerce") >= 0]  # the pre-training line is no checkpoint to pick
    if len(ep) < 2:
        return None
    by_loss = ep.loc[pd.to_numeric(ep[loss_col]).idxmin()]
    by_reward = ep.loc[ep["_reward"].idxmax()]
    if epoch_label(by_loss) == epoch_label(by_reward):
        return None
    return {"loss_epoch": epoch_label(by_loss), "loss": num(float(by_loss[loss_col]), 3),
            "reward_epoch": epoch_label(by_reward), "reward": num(float(by_reward["_reward"]), 3)}


def adv_signal(f: Facts) -> dict[str, float] | None:
    """Median advantage std (GRPO steps) and median share of zero-spread groups; None without data."""
    steps = f.steps
    if "train/adv_std" not in steps.columns:
        return None
    if "phase" in steps.columns and (steps["phase"] == "grpo").any():
        steps = steps[steps["phase"] == "grpo"]
    adv = _median(steps["train/adv_std"])
    zero = _median(steps["train/frac_reward_zero_std"]) if "train/frac_reward_zero_std" in steps else math.nan
    return None if math.isnan(adv) else {"adv": adv, "zero": zero}


def significant(f: Facts) -> pd.DataFrame:
    """Main-subset comparisons significant after adjustment, largest |diff| first."""
    _, _, rows = f.main()
    sig = rows[rows.verdict.map(verdict_kind).isin(["better", "worse"])]
    return sig.reindex(sig["diff"].abs().sort_values(ascending=False).index)


def inconclusive_need(f: Facts) -> dict[str, Any] | None:
    """The main subset's inconclusive comparisons: how many of how many, the median smallest detectable
    difference, and the median questions needed to detect the margin (the same `n_needed` the tables show)."""
    _, n, rows = f.main()
    inc = rows[rows.verdict.map(verdict_kind) == "inconclusive"]
    need = pd.to_numeric(inc["n_needed"], errors="coerce")
    if inc.empty or not np.isfinite(need).any():
        return None
    return {"n": n, "k": len(inc), "m": len(rows), "mde": _median(inc["mde"]), "need": float(np.nanmedian(need))}


def subset_contrast(f: Facts) -> dict[str, Any] | None:
    """Smallest vs largest subset: inconclusive counts, median half-widths, comparisons settled by n."""
    subsets = f.subsets()
    if len(subsets) < 2:
        return None
    (small, n_small), (large, n_large) = subsets[0], subsets[-1]
    key = ["system_a", "system_b", "shot", "kind"]
    rows = {s: f.comparisons[f.comparisons.subset == s] for s in (small, large)}
    both = rows[small].merge(rows[large], on=key, suffixes=("_s", "_l"))
    if both.empty:
        return None
    inc_s = both.verdict_s.map(verdict_kind) == "inconclusive"
    inc_l = both.verdict_l.map(verdict_kind) == "inconclusive"
    half = {s: _median((r.ci_high - r.ci_low) / 2) for s, r in rows.items()}
    return {"n_small": n_small, "n_large": n_large, "m_small": len(both), "m_large": len(both),
            "k_small": int(inc_s.sum()), "k_large": int(inc_l.sum()), "settled": int((inc_s & ~inc_l).sum()),
            "hw_small": half[small], "hw_large": half[large]}


def maxt_entries(f: Facts) -> list[dict[str, Any]]:
    """The best-epoch tests the sentences speak of: per lineage its joint test over every (epoch, shot) when
    stats/summary.json has one (scope 'joint'), else its per-shot tests."""
    entries = [e for e in f.best_epoch if "naive_p" in e and "maxT_p" in e]
    joint = {e.get("lineage") for e in entries if e.get("scope") == "joint"}
    return [e for e in entries if e.get("scope") == "joint" or e.get("lineage") not in joint]


# ------------------------------------------------------------------ finding rules
Rule = Callable[[Facts, Text], "str | list[str] | None"]


def find_smoke(f: Facts, t: Text) -> str | None:
    return t("f_smoke") if f.smoke else None


def is_checkpoint(system: str) -> bool:
    """A trained checkpoint ('grpo_epoch3'), as opposed to a baseline (random, similarity, an imported run)."""
    return bool(EPOCH_RE.search(str(system)))


def row_for(f: Facts, a: str, b: str, shot: int) -> pd.Series | None:
    """The main subset's comparison of B with A at `shot` (the table row a sentence must agree with)."""
    _, _, rows = f.main()
    hit = rows[(rows.system_a == a) & (rows.system_b == b) & (rows.shot == shot)]
    return hit.iloc[0] if len(hit) else None


def ci_cell(t: Text, r: pd.Series) -> str:
    """The interval; with the family-adjusted one beside it when the two say different things about 0 (the
    per-comparison interval excludes 0 while the family-adjusted verdict does not, or the other way); and, when
    the row's unadjusted exact p and this interval disagree about 0 (`p_ci_disagree`), a clause saying so."""
    text = ci(r.ci_low, r.ci_high)
    lo, hi = r.get("ci_low_family", math.nan), r.get("ci_high_family", math.nan)
    significant = verdict_kind(r.verdict) in ("better", "worse")
    if np.isfinite(lo) and np.isfinite(hi) and (r.ci_low > 0 or r.ci_high < 0) != significant:
        text += t("family_ci", ci=ci(lo, hi))
    flag = r.get("p_ci_disagree")  # absent from older comparisons.csv; NaN where a row has none
    if isinstance(flag, bool | np.bool_) and flag:
        text += t("p_ci_disagree", p=pval(r.p))
    return text


def find_significant(f: Facts, t: Text) -> list[str] | None:
    """Significant differences outside the claims (the answer states those): each one involving a checkpoint,
    then the baselines' differences summarised per pair as a range over shots."""
    sig = significant(f)
    sig = sig[sig["family"] != "primary"] if "family" in sig else sig
    if sig.empty:
        return None
    ours = sig[sig.system_a.map(is_checkpoint) | sig.system_b.map(is_checkpoint)]
    out = [t("f_significant", b=r.system_b, a=r.system_a, shot=r.shot,
             direction=t("dir_up" if r["diff"] > 0 else "dir_down"), diff=pts(r["diff"]),
             ci=ci_cell(t, r), p_adj=p_bound_is(r.p_adj, f.at_floor(r)), n=count(r.n))
           for _, r in ours.head(MAX_LISTED).iterrows()]
    if len(ours) > MAX_LISTED:
        out[-1] += t("and_more_sentence", k=count(len(ours) - MAX_LISTED))
    base = sig.drop(ours.index)
    for (a, b), g in base.groupby(["system_a", "system_b"], sort=False):
        out.append(t("f_significant_range", b=b, a=a, k=count(len(g)), shots=", ".join(str(k) for k in sorted(g.shot)),
                     lo=pts(g["diff"].min()), hi=pts(g["diff"].max()), n=count(g.n.max())))
    return out


def find_none_significant(f: Facts, t: Text) -> str | None:
    _, n, rows = f.main()
    if rows.empty or not significant(f).empty or (rows["family"] == "primary").all():
        return None  # every row is a claim: the answer's sentence already says it
    return t("f_none_significant", correction=f.correction, m=count(len(rows)), n=count(n))


def find_subsets(f: Facts, t: Text) -> str | None:
    c = subset_contrast(f)
    if c is None:
        return None
    key = "f_subsets" if c["settled"] else "f_subsets_none"
    return t(key, **{k: count(v) for k, v in c.items() if not k.startswith("hw")},
             hw_small=num(c["hw_small"]), hw_large=num(c["hw_large"]))


def find_n_small(f: Facts, t: Text) -> str | None:
    c = inconclusive_need(f)
    if c is None:
        return None
    return t("f_n_small", n=count(c["n"]), k=count(c["k"]), m=count(c["m"]), need=approx_n(c["need"]),
             mde=num(c["mde"]), power=share(f.power), margin=num(f.margin))


def find_maxt(f: Facts, t: Text, baseline: str = "") -> list[str] | None:
    """The best epoch on test, after picking it (max-T over the lineage's epochs; over its epochs and shots at
    once when the lineage has a joint test, whose best shot the sentence names), and what the table says of
    the same comparison after the family's correction: a sentence never calls significant what the table
    does not."""
    out = []
    for e in maxt_entries(f):
        best = e.get("best_system") or e.get("best_epoch", "")  # the checkpoint's name, not its 0-based epoch
        joint = e.get("scope") == "joint"  # the best (epoch, shot): tested once over every shot
        shot = e.get("best_shot", 0) if joint else e.get("shot", "")
        epochs = count(len(e.get("epochs", [])) or e.get("n_epochs", 0))
        fields = {"lineage": str(e.get("lineage", "")).removesuffix("_epoch"), "shot": shot, "epoch": best,
                  "diff": pts(e.get("best_diff")), "naive": p_is(e["naive_p"]), "maxt": p_is(e["maxT_p"]),
                  "among": t("among_joint", e=epochs, k=count(e.get("n_shots", len(e.get("shots", [])))))
                  if joint else t("among_epochs", e=epochs), "pick": t("pick_joint" if joint else "pick_epoch")}
        r = row_for(f, baseline or f.baseline, best, int(shot or 0))
        table = ({"p_adj": p_bound_is(r.p_adj, f.at_floor(r)), "m": count(r.get("family_size")),
                  "verdict": t.verdict(r.verdict, need_text(r), f.margin)} if r is not None else None)
        if e["naive_p"] < f.alpha <= e["maxT_p"]:
            out.append(t("f_maxt_lost", **fields))
        elif e["maxT_p"] < f.alpha and table and verdict_kind(r.verdict) == "better":
            out.append(t("f_maxt_kept", **fields, **table))
        elif e["maxT_p"] < f.alpha and table:
            out.append(t("f_maxt_family", **fields, **table))
    return out or None


def find_val_disagree(f: Facts, t: Text) -> str | None:
    c = val_choice(f)
    return t("f_val_disagree", **c) if c else None


def find_weak_signal(f: Facts, t: Text) -> str | None:
    s = adv_signal(f)
    if s is None or s["adv"] >= WEAK_ADV_STD:
        return None
    return t("f_weak_signal", adv=num(s["adv"], 4), thr=num(WEAK_ADV_STD, 2), zero=pct(100 * s["zero"]))


def find_val_selected(f: Facts, t: Text) -> list[str] | None:
    out = []
    for block in f.val_selected.values():
        cells = []
        for r in block.get("on_test", []):
            row = row_for(f, f.baseline, str(r.get("system_b")), int(r.get("shot", 0)))
            cells.append(t("f_val_selected_cell", shot=r.get("shot"), diff=pts(r.get("diff")),
                           ci=ci_cell(t, row) if row is not None else ci(r.get("ci_low"), r.get("ci_high")),
                           verdict=t.verdict(str(r.get("verdict")), None, f.margin)))
        if not cells or "best_val_epoch" not in block:
            continue
        out.append(t("f_val_selected", system=block.get("system", ""),
                     reward=num(block.get("val_reward"), 3), cells=t("list_sep").join(cells)))
        best = [t("f_best_cell", shot=r.get("shot"), diff=pts(r.get("diff")), system=r.get("system_b"))
                for r in block.get("best_on_test", [])]
        if best:
            out.append(t("f_best_on_test", cells=t("list_sep").join(best)))
    return out or None


def find_summary_mode(f: Facts, t: Text) -> str | None:
    _, _, rows = f.main()
    k = int((rows["mode"] == "summary").sum())
    return t("f_summary_mode", k=count(k)) if k else None


FINDING_RULES: list[Rule] = [
    find_smoke, find_significant, find_none_significant, find_subsets, find_n_small, find_maxt,
    find_val_selected, find_val_disagree, find_weak_signal, find_summary_mode,
]


# ------------------------------------------------------------------ recommendation rules
def rec_smoke(f: Facts, t: Text) -> str | None:
    return t("r_smoke") if f.smoke else None


def rec_val_reward(f: Facts, t: Text) -> str | None:
    return t("r_val_reward") if val_choice(f) else None


def rec_weak_signal(f: Facts, t: Text) -> str | None:
    s = adv_signal(f)
    return t("r_weak_signal") if s is not None and s["adv"] < WEAK_ADV_STD else None


def rec_more_n(f: Facts, t: Text) -> str | None:
    """More questions when that is feasible; otherwise: treat the differences as not detected."""
    c = inconclusive_need(f)
    if not c or not c["need"] > c["n"]:
        return None
    if f.all_questions:
        return t("r_split_too_small", n=count(c["n"]), need=approx_n(c["need"]), margin=num(f.margin))
    if c["need"] <= FEASIBLE_N_RATIO * c["n"]:
        return t("r_more_n", need=approx_n(c["need"]), margin=num(f.margin))
    return t("r_undetectable", k=count(c["k"]), mde=num(c["mde"]), need=approx_n(c["need"]))


def rec_honest(f: Facts, t: Text) -> str | None:
    lost = any(e["naive_p"] < f.alpha <= e["maxT_p"] for e in maxt_entries(f))
    return t("r_honest") if lost else None


def rec_claims(f: Facts, t: Text) -> str | None:
    if f.comparisons.empty:
        return None
    k = len(significant(f))
    return t("r_confirm", k=count(k)) if k else t("r_no_claim")


def rec_remeasure(f: Facts, t: Text) -> str | None:
    """Summary-only comparisons cannot be settled from summaries: re-measure per question, with the n it takes."""
    _, _, rows = f.main()
    summ = rows[rows["mode"] == "summary"]
    if summ.empty or "n_needed_lo" not in summ:
        return None
    lo, hi = summ["n_needed_lo"].median(), summ["n_needed_hi"].median()
    return t("r_remeasure", k=count(len(summ)), margin=num(f.margin), need=f"{approx_n(lo)}–{approx_n(hi)}")


RECOMMENDATION_RULES: list[Rule] = [rec_smoke, rec_val_reward, rec_weak_signal, rec_more_n, rec_remeasure, rec_honest,
                                    rec_claims]


def apply_rules(rules: list[Rule], facts: Facts, t: Text) -> list[str]:
    """Run every rule; flatten the texts of those that fired, in registry order."""
    out: list[str] = []
    for rule in rules:
        res = rule(facts, t)
        if res:
            out.extend([res] if isinstance(res, str) else res)
    return out
