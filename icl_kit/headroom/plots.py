"""The headroom figure (notebook 00 and the report): accuracy by shot of zero-shot, random, similarity, the best of
M random sets and the oracle on the headroom's test questions, each with its interval (whiskers, side by side: the
intervals of single accuracies overlap, the paired gains of the table are what tells them apart), and, once the
run has evaluated them, the trained selector's checkpoints on the same questions as grey markers. Labels are
English in both report languages (icl_kit.report.figures)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from icl_kit.core.errors import KitError

STYLES = {  # system -> (label, line style, marker)
    "zero_shot": ("zero-shot", ":", "o"),
    "random": ("random (mean of M sets)", "--", "s"),
    "similarity": ("similarity", "-.", "D"),
    "best_of_m": ("best of M random sets", (0, (1, 1)), "v"),
    "oracle": ("oracle (best InfoScore beam)", "-", "^"),
}
CHECKPOINT_MARKERS = ("*", "P", "X", "h", "p")
SHIFT = 0.05  # x offset between the intervals drawn at one shot, so none hides another


def _whiskers(ax: plt.Axes, x: pd.Series, rows: pd.DataFrame, **style: object) -> None:
    ax.errorbar(x, rows.accuracy, yerr=[rows.accuracy - rows.low, rows.high - rows.accuracy], capsize=3, **style)


def plot_headroom(summary: dict, checkpoints: pd.DataFrame | None = None, split: str = "test",
                  title: str = "") -> plt.Figure:
    """Accuracy (points) by shot, each with its interval as whiskers; `checkpoints` (system, shot, accuracy, low,
    high, on the same questions) as separate markers."""
    rows = pd.DataFrame([r for r in summary["accuracy"] if r["split"] == split])
    if rows.empty:
        raise KitError(f"The headroom summary holds no {split} questions; run `icl-kit headroom` first.")
    names = [] if checkpoints is None or checkpoints.empty else list(dict.fromkeys(checkpoints.system))
    offsets = [SHIFT * (i - (len(STYLES) + len(names) - 1) / 2) for i in range(len(STYLES) + len(names))]
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    colors = sns.color_palette("colorblind", len(STYLES))
    for i, (system, (label, style, marker)) in enumerate(STYLES.items()):
        r = rows[rows.system == system].sort_values("shot")
        _whiskers(ax, r.shot + offsets[i], r, linestyle=style, marker=marker, color=colors[i], label=label)
    greys = sns.color_palette("dark:#aaaaaa", max(len(names), 1)) if names else []
    for j, name in enumerate(names):
        c = checkpoints[checkpoints.system == name].sort_values("shot")
        _whiskers(ax, c.shot + offsets[len(STYLES) + j], c, fmt=CHECKPOINT_MARKERS[j % len(CHECKPOINT_MARKERS)],
                  markersize=9, color=greys[j], linestyle="none", label=f"{name} (trained)")
    ax.set_xticks(sorted(rows.shot.unique()))
    ax.set_xlabel("shot (ICDs in the prompt)")
    ax.set_ylabel(f"VQA accuracy (%), {summary['level']:.0%} interval")
    ax.set_title(title or f"Headroom on {int(rows.n.iloc[0])} {split} questions")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize="small")
    fig.tight_layout()
    return fig
