"""Accuracy by epoch with its intervals (notebook 02 and the report); the intervals come from
`icl_kit.stats.intervals` (this module only draws and tabulates them)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from icl_kit.core.config.params import ALPHA
from icl_kit.core.errors import KitError
from icl_kit.core.names import PHASES, lineage, method_of, natural_key

BAND_ALPHA = 0.2  # fill opacity of checkpoint interval bands
BASELINE_BAND_ALPHA = 0.1
FLAT_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))  # systems without epochs: baselines, imported results


def stem(system: str) -> str:
    """The lineage a checkpoint is drawn on, seeds of train.seeds together: 'grpo_epoch3_seed1' -> 'grpo_epoch'."""
    return method_of(lineage(system))


def training_positions(systems: pd.Series, epochs: pd.Series) -> tuple[dict[tuple[str, int], int], list[str]]:
    """Where each checkpoint sits on one training axis: the phases in the order a run goes through them
    (sft, rce, grpo; other lineages after), each phase's epochs 1-based as the files are named; the seeds of
    one phase and epoch at the same place.
    -> ({(lineage, stored epoch): x}, tick labels 'sft 1', 'rce 1', 'grpo 1', ...)."""
    pairs = sorted({(stem(s), int(e)) for s, e in zip(systems, epochs, strict=True)},
                   key=lambda p: (_phase_rank(p[0]), natural_key(p[0]), p[1]))
    return {p: i for i, p in enumerate(pairs)}, [f"{p[0].removesuffix('_epoch')} {p[1] + 1}" for p in pairs]


def _phase_rank(stem: str) -> int:
    phase = stem.removesuffix("_epoch")
    return PHASES.index(phase) if phase in PHASES else len(PHASES)


def plot_accuracy_by_epoch(intervals: pd.DataFrame, title: str = "", level: float = 1 - ALPHA) -> plt.Figure:
    """One panel per shot: checkpoint lineages along the training sequence (sft, then rce, then grpo epochs,
    numbered from 1 as their files are) with interval bands; systems without an epoch (baselines, imported
    results) as horizontal lines with their interval as a band."""
    if intervals.empty:
        raise KitError("There are no accuracies to plot; run the evaluation stage first.")
    shots = sorted(intervals["shot"].unique())
    fig, axes = plt.subplots(1, len(shots), figsize=(3.8 * len(shots), 3.8), sharey=True, squeeze=False)
    has_epoch = intervals["epoch"].notna()
    lineages = sorted({stem(s) for s in intervals.loc[has_epoch, "system"]}, key=lambda x: (_phase_rank(x), x))
    flat = list(dict.fromkeys(intervals.loc[~has_epoch, "system"]))
    colors = dict(zip(lineages + flat, sns.color_palette("colorblind", len(lineages) + len(flat)), strict=True))
    xs, ticks = training_positions(intervals.loc[has_epoch, "system"], intervals.loc[has_epoch, "epoch"])
    for ax, shot in zip(axes[0], shots, strict=True):
        rows = intervals[intervals["shot"] == shot]
        _draw_lineages(ax, rows[rows["epoch"].notna()], colors, xs)
        _draw_flat(ax, rows[rows["epoch"].isna()], colors)
        ax.set_title(f"{shot}-shot")
        if ticks:
            ax.set_xticks(range(len(ticks)), ticks, rotation=45, ha="right", fontsize="small")
            ax.set_xlabel("checkpoint (training order)")
    axes[0][0].set_ylabel(f"VQA accuracy (%), {level:.0%} interval")  # level = 1 - stats.alpha
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title or "Accuracy by epoch")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def _draw_lineages(ax: plt.Axes, rows: pd.DataFrame, colors: dict, xs: dict[tuple[str, int], int]) -> None:
    """One line per lineage; the seeds of one phase (train.seeds) in its colour, named once with their count."""
    groups = dict(list(rows.groupby(rows["system"].map(lineage), sort=False)))
    seeds = pd.Series([method_of(name) for name in groups]).value_counts()
    named: set[str] = set()
    for name in sorted(groups, key=lambda x: (_phase_rank(method_of(x)), natural_key(x))):  # training order
        g, base = groups[name].sort_values("epoch"), method_of(name)
        x = [xs[(base, int(e))] for e in g["epoch"]]
        k = int(seeds[base])
        label = "_nolegend_" if base in named else base.removesuffix("_epoch") + (f" ({k} seeds)" if k > 1 else "")
        named.add(base)
        ax.plot(x, g["accuracy"], marker="o", color=colors[base], label=label)
        ax.fill_between(x, g["low"], g["high"], color=colors[base], alpha=BAND_ALPHA / k)


def _draw_flat(ax: plt.Axes, rows: pd.DataFrame, colors: dict) -> None:
    for i, r in enumerate(rows.sort_values("system").itertuples()):  # styles as well as colours tell them apart
        ax.axhline(r.accuracy, color=colors[r.system], linestyle=FLAT_STYLES[i % len(FLAT_STYLES)], label=r.system)
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
