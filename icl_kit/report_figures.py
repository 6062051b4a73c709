"""Report figures (seaborn on matplotlib `Figure` objects, no pyplot state), saved as PNG bytes.

Labels inside the figures are English in both report languages: the captions
under them in the report are translated, and English needs no CJK font.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from icl_kit.report_text import verdict_kind
from icl_kit.stats_power import power_curve

DPI = 110
WIDTH = 10.0  # inches; 1100 px at DPI
ROW_HEIGHT = 0.32  # inches per comparison row in the forest plot
MAX_FOREST_ROWS = 80  # beyond this the forest plot keeps the largest |diff| rows
VERDICT_COLOURS = {"better": "#2a9d55", "worse": "#d1495b", "equivalent": "#3a6ea5", "inconclusive": "#9a9a9a"}
POWER_NS = np.unique(np.geomspace(20, 20000, 60).astype(int))
STEP_KEYS = ("train/reward_mean", "train/adv_std", "train/kl", "train/frac_reward_zero_std")
STYLE = {"style": "whitegrid", "context": "notebook"}


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (no timestamp or software metadata, so reruns give the same file)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _themed() -> object:
    """Seaborn's style as a context manager: the global matplotlib theme is never changed."""
    return sns.axes_style(STYLE["style"])


def accuracy_by_epoch(acc: pd.DataFrame, baselines: pd.DataFrame) -> Figure:
    """Accuracy (%) against epoch, one panel per shot, 95% bands, baseline systems as horizontal lines.

    acc: rows of checkpoint systems with columns lineage, epoch, shot, accuracy, low, high.
    baselines: rows of systems without epochs with columns system, shot, accuracy, low, high.
    With no checkpoint lineage, each panel shows every system's accuracy with its interval.
    """
    shots = sorted(set(acc.get("shot", pd.Series(dtype=int))) | set(baselines.get("shot", pd.Series(dtype=int))))
    with _themed(), sns.plotting_context(STYLE["context"]):
        fig = Figure(figsize=(WIDTH, 3.4))
        axes = np.atleast_1d(fig.subplots(1, max(1, len(shots)), sharey=True))
        colours = _colours(acc.get("lineage", pd.Series(dtype=str)), baselines.get("system", pd.Series(dtype=str)))
        for ax, shot in zip(axes, shots, strict=False):
            _epoch_panel(ax, acc[acc.shot == shot] if len(acc) else acc, baselines[baselines.shot == shot],
                         colours)
            ax.set_title(f"shot {shot}")
            ax.set_xlabel("epoch")
        axes[0].set_ylabel("accuracy (%)")
        handles, labels = axes[0].get_legend_handles_labels()
        for ax in axes:
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), frameon=False,
                       bbox_to_anchor=(0.5, -0.08))
        fig.tight_layout()
    return fig


def _colours(lineages: pd.Series, systems: pd.Series) -> dict[str, tuple]:
    """Dark colours for checkpoint lineages, bright ones for baseline systems."""
    names = sorted(lineages.unique())
    out = dict(zip(names, sns.color_palette("dark", max(1, len(names))), strict=False))
    bases = sorted(systems.unique())
    return out | dict(zip(bases, sns.color_palette("Set1", max(1, len(bases))), strict=False))


def _epoch_panel(ax, acc: pd.DataFrame, base: pd.DataFrame, colours: dict) -> None:
    if len(acc):
        for lineage, g in acc.groupby("lineage", sort=True):
            g = g.sort_values("epoch")
            c = colours[lineage]
            sns.lineplot(data=g, x="epoch", y="accuracy", marker="o", ax=ax, label=str(lineage), color=c)
            ax.fill_between(g["epoch"], g["low"], g["high"], color=c, alpha=0.15, linewidth=0)
        for r in base.itertuples():
            ax.axhline(r.accuracy, color=colours[r.system], linestyle="--", label=r.system)
        ax.xaxis.get_major_locator().set_params(integer=True)
        return
    x = np.arange(len(base))
    ax.errorbar(x, base.accuracy, yerr=[base.accuracy - base.low, base.high - base.accuracy], fmt="o",
                color="black", capsize=3)
    ax.set_xticks(x, base.system, rotation=30, ha="right")


def forest(rows: pd.DataFrame, margin: float, title: str = "") -> Figure:
    """Differences (points) with 95% intervals, one row per comparison, coloured by verdict.

    rows: comparisons with system_a, system_b, shot, diff, ci_low, ci_high, verdict.
    Vertical lines: 0 (solid) and the equivalence margin ±δ (dashed).
    """
    rows = rows.copy()
    if len(rows) > MAX_FOREST_ROWS:
        rows = rows.reindex(rows["diff"].abs().sort_values(ascending=False).index[:MAX_FOREST_ROWS])
    rows["label"] = [f"{r.system_b} vs {r.system_a} · shot {r.shot}" for r in rows.itertuples()]
    rows["kind"] = rows.verdict.map(verdict_kind)
    y = np.arange(len(rows))[::-1]
    with _themed(), sns.plotting_context(STYLE["context"]):
        fig = Figure(figsize=(WIDTH, 1.2 + ROW_HEIGHT * len(rows)))
        ax = fig.subplots()
        for kind, colour in VERDICT_COLOURS.items():
            m = (rows.kind == kind).to_numpy()
            if m.any():
                r = rows[m]
                ax.errorbar(r["diff"], y[m], xerr=[r["diff"] - r.ci_low, r.ci_high - r["diff"]], fmt="o",
                            color=colour, capsize=3, label=kind)
        ax.axvline(0, color="black", linewidth=1)
        for x in (-margin, margin):
            ax.axvline(x, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(y, rows.label)
        ax.set_xlabel("difference B − A (points), 95% interval")
        ax.set_title(title)
        ax.legend(loc="best", frameon=True)
        fig.tight_layout()
    return fig


def training_curves(steps: pd.DataFrame, epochs: pd.DataFrame, val_loss: str | None,
                    val_rewards: Sequence[str]) -> Figure | None:
    """Per-step reward, advantage std, KL and zero-spread share; per-epoch val loss and val reward.

    Panels whose key is absent from the log are left out; None when nothing is plottable.
    """
    step_keys = [k for k in STEP_KEYS if k in steps.columns]
    epoch_keys = ([val_loss] if val_loss else []) + list(val_rewards)
    panels = [("step", k) for k in step_keys] + ([("epoch", "val")] if epoch_keys and len(epochs) else [])
    if not panels:
        return None
    ncol = min(3, len(panels))
    nrow = -(-len(panels) // ncol)
    with _themed(), sns.plotting_context(STYLE["context"]):
        fig = Figure(figsize=(WIDTH, 3.0 * nrow))
        axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
        for ax, (axis, key) in zip(axes, panels, strict=False):
            if axis == "step":
                data = steps.assign(x=np.arange(len(steps)))
                hue = "phase" if "phase" in data.columns and data["phase"].nunique() > 1 else None
                sns.lineplot(data=data, x="x", y=key, hue=hue, ax=ax, linewidth=1)
                ax.set_ylabel("")
                ax.set_xlabel("step")
                ax.set_title(key)
            else:
                _val_panel(ax, epochs, val_loss, list(val_rewards))
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        fig.tight_layout()
    return fig


def _val_panel(ax, epochs: pd.DataFrame, val_loss: str | None, val_rewards: list[str]) -> None:
    """Validation reward(s) on the left axis, validation loss on the right, one point per epoch line."""
    ep = epochs.assign(x=np.arange(len(epochs)))
    for key in val_rewards:
        if ep[key].notna().any():
            sns.lineplot(data=ep, x="x", y=key, marker="o", ax=ax, label=key)
    ax.set_ylabel("val reward")
    handles, labels = ax.get_legend_handles_labels()
    if val_loss and ep[val_loss].notna().any():
        twin = ax.twinx()
        sns.lineplot(data=ep, x="x", y=val_loss, marker="s", ax=twin, color="grey", label=val_loss)
        twin.set_ylabel("val loss")
        twin.grid(False)
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
        twin.get_legend().remove()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    if handles:
        ax.legend(handles, labels, loc="best", fontsize="small")
    phase = ep["phase"].astype(str) + " " if "phase" in ep.columns else ""
    ax.set_xticks(ep["x"], phase + ep["epoch"].astype(int).astype(str) if "epoch" in ep.columns else ep["x"])
    ax.set_xlabel("epoch")
    ax.set_title("validation per epoch")


def power_figure(sd: float, n_run: int, margin: float, alpha: float, power: float) -> Figure:
    """MDE (points) against n for a paired t-test with SD `sd` (points); this run's n and ±δ marked."""
    curve = power_curve(sd, [int(n) for n in POWER_NS], alpha=alpha, power=power)
    curve["mde"] = curve["mde"].abs()  # solve_power may return the (equally valid) negative root
    with _themed(), sns.plotting_context(STYLE["context"]):
        fig = Figure(figsize=(WIDTH * 0.7, 3.6))
        ax = fig.subplots()
        sns.lineplot(data=curve, x="n", y="mde", ax=ax, color="black")
        ax.set_xscale("log")
        ax.axvline(n_run, color="#d1495b", linestyle="-", label=f"this run: n = {n_run}")
        ax.axhline(margin, color="grey", linestyle="--", label=f"equivalence margin δ = {margin:g}")
        ax.set_xlabel("number of test questions n (log scale)")
        ax.set_ylabel("minimum detectable difference (points)")
        ax.legend(frameon=True)
        fig.tight_layout()
    return fig
