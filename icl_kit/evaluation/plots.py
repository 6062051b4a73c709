"""Accuracy by epoch with its intervals (notebook 02 and the report); the intervals come from
`icl_kit.stats.intervals` (this module only draws and tabulates them)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from icl_kit.core.errors import KitError
from icl_kit.core.names import lineage, natural_key

BAND_ALPHA = 0.2  # fill opacity of checkpoint interval bands
BASELINE_BAND_ALPHA = 0.1


def plot_accuracy_by_epoch(intervals: pd.DataFrame, title: str = "", level: float = 0.95) -> plt.Figure:
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
    axes[0][0].set_ylabel(f"VQA accuracy (%), {level:.0%} interval")  # level = 1 - stats.alpha
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
