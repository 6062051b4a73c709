"""The training-curve figure and the checkpoint table, from train_log.jsonl rows.

Notebook 01 and the report draw the same figure (`training_curves`). Step panels: training
reward, advantage std, KL to the reference, share of zero-spread groups (those present in the
log). Epoch panel: validation reward(s) per shot, and the validation loss on a second axis.
The "init" line (the selector before training) comes first. Seaborn styles are applied
through context managers only: the global matplotlib theme is never changed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from icl_kit.core.artefacts import ARTEFACTS
from icl_kit.core.names import natural_key, seed_of
from icl_kit.core.runs import RunPaths, read_jsonl

WIDTH = 10.0  # inches
STEP_KEYS = ("train/reward_mean", "train/adv_std", "train/kl", "train/frac_reward_zero_std")
LOSS_KEYS = ("val/rce_loss", "val/loss")
REWARD_KEY_RE = re.compile(r"^val/reward(@\d+)?$")
STYLE = {"style": "whitegrid", "context": "notebook"}
SEED_LOG_GLOB = ARTEFACTS["train_log"].at("*")  # train_log_seed*.jsonl


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """train_log.jsonl's lines; in a run of several training seeds (train.seeds), every seed's
    train_log_seed{S}.jsonl in seed order, each line with its "seed"."""
    paths = RunPaths(Path(run_dir))
    files = sorted(paths.root.glob(SEED_LOG_GLOB), key=natural_key)
    if paths.train_log.exists() or not files:
        return read_jsonl(paths.train_log)
    return [{**row, "seed": seed_of(f.stem)} for f in files for row in read_jsonl(f)]


def first_seed(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """(the lines of the first training seed, a caption saying so) of a log of several seeds; else (rows, '')."""
    seeds = sorted({r["seed"] for r in rows if r.get("seed") is not None})
    if len(seeds) < 2:
        return list(rows), ""
    return [r for r in rows if r.get("seed") == seeds[0]], f"seed {seeds[0]} of {len(seeds)} trained"


def split_log(rows: Sequence[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(step lines, epoch lines); without a `kind` key, a line with `val/` keys is an epoch line."""
    def is_epoch(r: dict[str, Any]) -> bool:
        return r["kind"] == "epoch" if "kind" in r else any(k.startswith("val/") for k in r)

    return pd.DataFrame([r for r in rows if not is_epoch(r)]), pd.DataFrame([r for r in rows if is_epoch(r)])


def val_columns(epochs: pd.DataFrame) -> tuple[str | None, list[str]]:
    """(validation loss column or None, validation reward columns) present in the epoch lines."""
    loss = next((k for k in LOSS_KEYS if k in epochs.columns), None)
    if loss is None:
        loss = next((c for c in epochs.columns if c.startswith("val/") and "loss" in c), None)
    rewards = sorted(c for c in epochs.columns if REWARD_KEY_RE.match(c))
    return loss, rewards


def plot_training_log(rows: Sequence[dict[str, Any]], title: str = "") -> Figure | None:
    """`training_curves` of a run's train_log.jsonl rows (what notebook 01 shows); of the first seed, and
    titled so, in a run of several training seeds."""
    rows, which = first_seed(rows)
    steps, epochs = split_log(rows)
    fig = training_curves(steps, epochs, *val_columns(epochs))
    if fig is not None and (title or which):
        fig.suptitle(f"{title} ({which})" if title and which else title or which)
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
    with sns.axes_style(STYLE["style"]), sns.plotting_context(STYLE["context"]):
        fig = Figure(figsize=(WIDTH, 3.4 * nrow))
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
    if handles:  # below the panel: the curves stay visible
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.38), ncol=2, fontsize="x-small",
                  frameon=False)
    ax.set_xticks(ep["x"], epoch_labels(ep), rotation=45, ha="right", fontsize="x-small")
    ax.set_xlabel("")
    ax.set_title("validation per epoch")


def epoch_labels(epochs: pd.DataFrame) -> list[str]:
    """'sft 1', 'rce 1', 'grpo 1', … (1-based, as the checkpoint files are named); 'start' before training."""
    if "epoch" not in epochs.columns:
        return [str(i) for i in range(len(epochs))]
    phases = epochs["phase"].astype(str) if "phase" in epochs.columns else pd.Series("", index=epochs.index)
    pairs = zip(phases, epochs["epoch"], strict=True)
    return ["start" if int(e) < 0 else f"{p} {int(e) + 1}".strip() for p, e in pairs]


def checkpoint_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per epoch checkpoint: phase, epoch (1-based), val reward ± SE per shot, val loss, best mark."""
    _, epochs = split_log(rows)
    if epochs.empty or "checkpoint" not in epochs:
        return pd.DataFrame()
    ck = epochs.dropna(subset=["checkpoint"]).copy()
    shots = sorted(int(c.split("@")[1]) for c in ck.columns if c.startswith("val/reward@"))
    out = pd.DataFrame({"checkpoint": ck["checkpoint"], "phase": ck["phase"], "epoch": ck["epoch"] + 1})
    for k in shots:
        out[f"val reward@{k}"] = ck[f"val/reward@{k}"].round(4)
        out[f"± SE@{k}"] = ck[f"val/reward_se@{k}"].round(4)
        out[f"val acc@{k} (%)"] = (100 * ck[f"val/acc@{k}"]).round(1)
    if "val/rce_loss" in ck:
        out["val RCE loss"] = ck["val/rce_loss"].round(4)
    if "val/sft_loss" in ck:
        out["val SFT loss"] = ck["val/sft_loss"].round(4)
    if shots:
        score = ck[[f"val/reward@{k}" for k in shots]].mean(axis=1)
        out["best"] = ["★" if i == score.idxmax() else "" for i in ck.index]
    return out.reset_index(drop=True)
