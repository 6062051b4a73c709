"""Figures and tables of the significance stage (notebook 03 and the report call these).

Every difference is drawn with its interval: a point without one is not a result.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from icl_kit.core.config import StatsConfig
from icl_kit.core.config.params import ALPHA, POWER
from icl_kit.core.errors import KitError
from icl_kit.core.runs import atomic_open
from icl_kit.stats.pooled import POOLED_SHOT
from icl_kit.stats.power import mde_paired, n_needed_paired, power_curve
from icl_kit.stats.schema import StatsSummary
from icl_kit.stats.verdict import verdict_kind

_PALETTE = sns.color_palette("colorblind", 8)
VERDICT_COLORS = {"better": _PALETTE[2], "worse": _PALETTE[3], "equivalent": _PALETTE[0],
                  "inconclusive": _PALETTE[7]}  # green, vermillion, blue, grey
TABLE_COLUMNS = ["system_a", "system_b", "shot", "n", "acc_a", "acc_b", "diff", "ci_low", "ci_high",
                 "p", "p_adj", "tost_p", "verdict", "mde", "n_needed", "mode"]
POWER_N_RANGE = (20, 5000)  # x axis of the power curve, widened to reach n needed for δ
POWER_N_MAX = 100_000


def comparison_table(df: pd.DataFrame, subset: str | None = None, digits: int = 2) -> pd.DataFrame:
    """The rows of one subset (default: the one with the most questions) with the columns a reader needs,
    rounded for display."""
    if subset is None:
        subset = str(df.loc[df["n"].idxmax(), "subset"]) if len(df) else "all"
    rows = df[df.subset == subset][TABLE_COLUMNS].copy()
    return rows.round({c: digits for c in ("acc_a", "acc_b", "diff", "ci_low", "ci_high", "mde")}
                      | {c: 4 for c in ("p", "p_adj", "tost_p")})


def forest_plot(df: pd.DataFrame, subset: str = "all", margin: float | None = None,
                alpha: float = StatsConfig().alpha) -> plt.Figure:
    """Difference B - A (points) with its 1 - alpha interval, one panel per shot (and one for the rows pooled
    over the shots, last), coloured by verdict.

    A dashed line marks 0; a grey band marks the equivalence margin ±δ when given.
    """
    rows = df[df.subset == subset]
    if rows.empty:
        raise KitError(f"No comparisons in subset {subset!r}; choose one of {sorted(df.subset.unique())}.")
    shots = sorted(rows.shot.unique(), key=lambda k: (k == POOLED_SHOT, k))  # the pooled rows' panel last
    labels = list(dict.fromkeys(f"{r.system_b} vs {r.system_a}" for r in rows.itertuples()))
    fig, axes = plt.subplots(1, len(shots), sharex=True, sharey=True, squeeze=False,
                             figsize=(3.2 * len(shots) + 2.5, 0.35 * len(labels) + 1.5))
    for ax, shot in zip(axes[0], shots, strict=True):
        _forest_panel(ax, rows[rows.shot == shot], labels, margin)
        ax.set_title("all shots (pooled)" if shot == POOLED_SHOT else f"{shot}-shot")
    axes[0][0].set_yticks(range(len(labels)), labels)
    axes[0][0].invert_yaxis()
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=k) for k, c in VERDICT_COLORS.items()]
    fig.legend(handles=handles, loc="upper right", fontsize="small", frameon=False)
    method = ", ".join(sorted(str(m) for m in rows["interval"].dropna().unique())) if "interval" in rows else ""
    fig.supxlabel(f"difference B − A (accuracy points), {1 - alpha:.0%} {method} interval".replace("  ", " "))
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    return fig


def _forest_panel(ax: plt.Axes, rows: pd.DataFrame, labels: Sequence[str], margin: float | None) -> None:
    if margin:
        ax.axvspan(-margin, margin, color="0.9", zorder=0)
    ax.axvline(0, color="0.4", ls="--", lw=1)
    for r in rows.itertuples():
        y = labels.index(f"{r.system_b} vs {r.system_a}")
        color = VERDICT_COLORS.get(verdict_kind(r.verdict), "0.5")
        marker = "s" if r.mode == "summary" else "o"  # squares: approximate (summary only)
        ax.errorbar(r.diff, y, xerr=[[r.diff - r.ci_low], [r.ci_high - r.diff]], fmt=marker,
                    color=color, capsize=3)


def run_sd(df: pd.DataFrame, subset: str = "all") -> float:
    """Median SD of paired differences (points) over a subset's paired comparisons."""
    sd = df[(df.subset == subset) & (df["mode"] == "paired")]["sd_diff"].dropna()
    if sd.empty:
        raise KitError("No paired comparison has an SD of differences; evaluate per question.")
    return float(sd.median())


def run_n(df: pd.DataFrame, subset: str = "all") -> int:
    """Largest question count among a subset's paired comparisons (the run's n)."""
    n = df[(df.subset == subset) & (df["mode"] == "paired")]["n"]
    if n.empty:
        raise KitError(f"No paired comparison in subset {subset!r}; evaluate systems per question.")
    return int(n.max())


def run_power_plot(df: pd.DataFrame, cfg: StatsConfig) -> plt.Figure | None:
    """The power curve of a run's largest subset of paired comparisons at its median SD of differences; None
    when no comparison is paired (imported results only: there is no per-question SD to draw it from)."""
    paired = df[(df["mode"] == "paired") & df["sd_diff"].notna()]
    if paired.empty:
        return None
    subset = paired.loc[paired["n"].idxmax(), "subset"]
    return power_plot(run_sd(df, subset), run_n(df, subset), cfg.alpha, cfg.power, margin=cfg.equivalence_margin)


def power_plot(sd: float, n: int, alpha: float = ALPHA, power: float = POWER,
               margin: float | None = None) -> plt.Figure:
    """Minimum detectable difference against the number of questions, this run's n marked."""
    needed = n_needed_paired(sd, margin, alpha, power) if margin else float("nan")
    top = max(POWER_N_RANGE[1], min(POWER_N_MAX, needed * 1.5) if np.isfinite(needed) else 0, 2 * n)
    curve = power_curve(sd, np.unique(np.geomspace(POWER_N_RANGE[0], top, 60).astype(int)), alpha, power)
    here = mde_paired(sd, n, alpha, power)
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=curve, x="n", y="mde", ax=ax)
    ax.plot([n], [here], "o", color="C3")
    ax.annotate(f"this run: n={n}, MDE={here:.1f}", (n, here), textcoords="offset points", xytext=(8, 8))
    if margin:  # the n needed to detect it is the tables' (one number, per comparison), not this curve's
        ax.axhline(margin, color="0.5", ls=":", label=f"δ = {margin:.1f} points")
        ax.legend(frameon=False)
    ax.set(xscale="log", xlabel="questions (n)", ylabel="MDE (accuracy points)",
           title=f"{power:.0%} power, α={alpha:.2g}, SD of differences {sd:.1f} pts")
    fig.tight_layout()
    return fig


def best_epoch_table(summary: StatsSummary) -> pd.DataFrame:
    """Best epoch per lineage and shot: its gain, the naive p and the max-T p (selection-adjusted), both
    ONE-SIDED (in the direction of "better"), and whether the null was enumerated (method 'exact'). A lineage
    tested at several shots also has its joint row (shot 'all': the best epoch at the best shot, `best_shot`,
    with one max-T over every epoch and shot)."""
    cols = ["lineage", "shot", "best_system", "best_shot", "best_diff", "naive_p_one_sided", "maxT_p_one_sided",
            "method", "n"]
    rows = [{"lineage": r["lineage"], "shot": r["shot"], "best_system": r["best_system"],
             "best_shot": r.get("best_shot", r["shot"]), "best_diff": r["best_diff"], "naive_p_one_sided": r["naive_p"],
             "maxT_p_one_sided": r["maxT_p"], "method": r.get("method", ""), "n": r["n"]}
            for r in summary.best_epoch]
    return pd.DataFrame(rows, columns=cols).round({"best_diff": 2, "naive_p_one_sided": 4, "maxT_p_one_sided": 4})


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write a PNG atomically (temp file, then rename)."""
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


def honest_table(summary: StatsSummary) -> pd.DataFrame:
    """Per lineage and shot: the best-on-validation epoch vs the best-on-test epoch, both vs baseline.

    The first is the honest number (chosen without the test set); the second is optimistic.
    """
    rows = []
    for lineage, h in summary.honest_number.items():
        best_test = {r["shot"]: r for r in h["best_on_test"]}
        for r in h["on_test"]:
            t = best_test.get(r["shot"], {})
            rows.append({"lineage": lineage, "shot": r["shot"], "val_best": r["system_b"],
                         "diff": r["diff"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                         "verdict": r["verdict"], "test_best": t.get("system_b"),
                         "test_best_diff": t.get("diff")})
    table = pd.DataFrame(rows, columns=["lineage", "shot", "val_best", "diff", "ci_low", "ci_high",
                                        "verdict", "test_best", "test_best_diff"])
    return table.round({c: 2 for c in ("diff", "ci_low", "ci_high", "test_best_diff")})
