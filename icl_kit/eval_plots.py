"""Accuracy by epoch with 95% intervals (notebook 02 and the report call these).

Per-question systems: Student-t interval of the mean per-question accuracy,

    acc ± t_{1-α/2, n-1} · sd(acc) / sqrt(n)          (points; clipped to 0..100)

Summary-only systems (imported, no per-question data): Wilson interval of a
binomial proportion with n trials, an approximation (VQA acc takes values in
{0, 1/3, 2/3, 1}, whose variance is at most the binomial one, so it is conservative).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator
from scipy import stats as st
from statsmodels.stats.proportion import proportion_confint

from icl_kit.errors import KitError
from icl_kit.eval_io import POINTS, natural_key
from icl_kit.runs import RunPaths, read_jsonl

LEVEL = 0.95
INTERVAL_COLUMNS = ["system", "epoch", "shot", "n", "accuracy", "low", "high"]
EPOCH_DIGITS = re.compile(r"epoch\d+")
BAND_ALPHA = 0.2  # fill opacity of checkpoint interval bands
BASELINE_BAND_ALPHA = 0.1


def mean_interval(acc: pd.Series, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) in points of per-question accuracies in 0..1 (t interval, clipped)."""
    n = int(acc.size)
    mean = float(acc.mean())
    if n < 2:
        return mean * POINTS, math.nan, math.nan
    half = float(st.t.ppf(0.5 + level / 2, n - 1) * acc.std(ddof=1) / math.sqrt(n))
    return mean * POINTS, max(mean - half, 0.0) * POINTS, min(mean + half, 1.0) * POINTS


def accuracy_intervals(predictions: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """(system, epoch, shot, n, accuracy, low, high) from predictions.jsonl rows."""
    missing = {"system", "shot", "acc"} - set(predictions.columns)
    if missing:
        raise KitError(f"predictions lack columns {sorted(missing)}; run the evaluation stage first.")
    rows = []
    for (system, shot), g in predictions.groupby(["system", "shot"], sort=False):
        epoch = g["epoch"].dropna().iloc[0] if "epoch" in g and g["epoch"].notna().any() else None
        acc, low, high = mean_interval(g["acc"].astype(float), level)
        rows.append({"system": system, "epoch": epoch, "shot": int(shot), "n": len(g),
                     "accuracy": acc, "low": low, "high": high})
    return _ordered(pd.DataFrame(rows, columns=INTERVAL_COLUMNS))


def summary_intervals(summary: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """Wilson intervals for summary-only rows (system, shot, n, accuracy in percent)."""
    out = summary[["system", "shot", "n", "accuracy"]].copy()
    low, high = proportion_confint(out["accuracy"] / POINTS * out["n"], out["n"], alpha=1 - level,
                                   method="wilson")
    out["low"], out["high"], out["epoch"] = low * POINTS, high * POINTS, None
    return _ordered(out[INTERVAL_COLUMNS])


def run_intervals(run_dir: str | Path, level: float = LEVEL) -> pd.DataFrame:
    """Intervals of every system of a run: evaluated (predictions.jsonl) and imported (imported.csv)."""
    from icl_kit.import_results import read_imported

    rows = read_jsonl(RunPaths(Path(run_dir)).predictions)
    if not rows:
        raise KitError(f"{run_dir}/eval/predictions.jsonl is missing or empty; run the evaluation stage first.")
    parts = [accuracy_intervals(pd.DataFrame(rows), level)]
    imported = read_imported(run_dir)
    if len(imported):
        parts.append(summary_intervals(imported, level))
    return _ordered(pd.concat(parts, ignore_index=True)) if len(parts) > 1 else parts[0]


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    order = sorted(range(len(df)), key=lambda i: (natural_key(str(df["system"].iat[i])), int(df["shot"].iat[i])))
    return df.iloc[order].reset_index(drop=True)


def lineage(system: str) -> str:
    """'grpo_epoch3' -> 'grpo_epoch' (one line per lineage of checkpoints)."""
    return EPOCH_DIGITS.sub("epoch", system)


def plot_accuracy_by_epoch(intervals: pd.DataFrame, title: str = "") -> plt.Figure:
    """One panel per shot: checkpoint lineages over epochs with interval bands; systems without an
    epoch (baselines, imported results) as horizontal lines with their interval as a band."""
    if intervals.empty:
        raise KitError("There are no accuracies to plot; run the evaluation stage first.")
    shots = sorted(intervals["shot"].unique())
    fig, axes = plt.subplots(1, len(shots), figsize=(3.8 * len(shots), 3.6), sharey=True, squeeze=False)
    has_epoch = intervals["epoch"].notna()
    lineages = sorted({lineage(s) for s in intervals.loc[has_epoch, "system"]}, key=natural_key)
    flat = list(dict.fromkeys(intervals.loc[~has_epoch, "system"]))
    colors = dict(zip(lineages + flat, sns.color_palette("colorblind", len(lineages) + len(flat)), strict=True))
    for ax, shot in zip(axes[0], shots, strict=True):
        rows = intervals[intervals["shot"] == shot]
        _draw_lineages(ax, rows[rows["epoch"].notna()], colors)
        _draw_flat(ax, rows[rows["epoch"].isna()], colors)
        ax.set_title(f"{shot}-shot")
        ax.set_xlabel("epoch (as stored, 0-based)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel(f"VQA accuracy (%), {LEVEL:.0%} interval")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title or "Accuracy by epoch")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def _draw_lineages(ax: plt.Axes, rows: pd.DataFrame, colors: dict) -> None:
    for name, g in rows.groupby(rows["system"].map(lineage), sort=False):
        g = g.sort_values("epoch")
        ax.plot(g["epoch"], g["accuracy"], marker="o", color=colors[name], label=name)
        ax.fill_between(g["epoch"].astype(float), g["low"], g["high"], color=colors[name], alpha=BAND_ALPHA)


def _draw_flat(ax: plt.Axes, rows: pd.DataFrame, colors: dict) -> None:
    for r in rows.itertuples():
        ax.axhline(r.accuracy, color=colors[r.system], linestyle="--", label=r.system)
        if not (math.isnan(r.low) or math.isnan(r.high)):
            ax.axhspan(r.low, r.high, color=colors[r.system], alpha=BASELINE_BAND_ALPHA)


def accuracy_table(intervals: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """Systems × shots, each cell 'acc [low, high]' in points."""
    cells = intervals.assign(
        cell=[f"{a:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
              for a, lo, hi in zip(intervals["accuracy"], intervals["low"], intervals["high"], strict=True)],
        column=[f"{s}-shot" for s in intervals["shot"]],
    )
    table = cells.pivot(index="system", columns="column", values="cell")
    order = sorted(table.index, key=natural_key)
    columns = [f"{s}-shot" for s in sorted(intervals["shot"].unique())]
    return table.loc[order, columns].rename_axis(index="system", columns=None)
