"""Report figures as PNG bytes, and the one figure no earlier stage draws: training curves.

The accuracy-by-epoch, forest and power figures are the ones notebooks 02 and 03
show (`icl_kit.evaluation.plots`, `icl_kit.stats.plots`), so the report and the
notebooks agree. Labels inside figures are English in both report languages:
the captions under them are translated, and English needs no CJK font.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

DPI = 110
WIDTH = 10.0  # inches; 1100 px at DPI
STEP_KEYS = ("train/reward_mean", "train/adv_std", "train/kl", "train/frac_reward_zero_std")
STYLE = {"style": "whitegrid", "context": "notebook"}


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (no software metadata, so reruns give the same file); closes a pyplot figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)  # a no-op for figures pyplot does not manage
    return buf.getvalue()


def _themed() -> object:
    """Seaborn's style as a context manager: the global matplotlib theme is never changed."""
    return sns.axes_style(STYLE["style"])


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
