"""Training curves and the checkpoint table, from train_log.jsonl rows (notebook 01 shows them).

Step panels: training reward (sampled groups), advantage std, KL to the reference.
Epoch panels: validation RCE loss and greedy validation reward at each shot with ±1.96·SE
bands (SE over validation queries). The "init" row (the selector before training) is
epoch 0; training epochs are numbered 1.. across phases.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from icl_kit.core.runs import read_jsonl

Z95 = 1.96
STEP_PANELS = (("train/reward_mean", "training reward"), ("train/adv_std", "advantage std"),
               ("train/kl", "KL to reference"))


def log_frames(rows: Sequence[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(step rows, epoch rows); epoch rows get `n` = 0 for init, then 1, 2, ... in log order."""
    steps = pd.DataFrame([r for r in rows if r.get("kind") == "step"])
    epochs = pd.DataFrame([r for r in rows if r.get("kind") == "epoch"])
    if not epochs.empty:
        epochs["n"] = range(len(epochs))
        epochs["label"] = [("init" if p == "init" else f"{p} {e + 1}") for p, e in zip(epochs.phase, epochs.epoch,
                                                                                         strict=True)]
    return steps, epochs


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    return read_jsonl(Path(run_dir) / "train_log.jsonl")


def training_curves(rows: Sequence[dict[str, Any]], title: str = "") -> plt.Figure:
    """A 2×3 grid: the step panels, validation RCE loss and validation reward per epoch."""
    steps, epochs = log_frames(rows)
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    for ax, (col, name) in zip(axes[0], STEP_PANELS, strict=True):
        if col in steps:
            sns.lineplot(data=steps, x="step", y=col, hue="phase", ax=ax, marker=".", linewidth=1)
        ax.set(title=name, ylabel=name)
    _epoch_line(axes[1][0], epochs, "val/rce_loss", "validation RCE loss (τ_end)")
    _val_reward(axes[1][1], epochs)
    if "time/epoch_s" in epochs:
        sns.barplot(data=epochs.dropna(subset=["time/epoch_s"]), x="label", y="time/epoch_s", ax=axes[1][2],
                    color="steelblue")
    axes[1][2].set(title="epoch time", ylabel="seconds", xlabel="")
    axes[1][2].tick_params(axis="x", rotation=45)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _epoch_line(ax: plt.Axes, epochs: pd.DataFrame, col: str, name: str) -> None:
    if col in epochs:
        ax.plot(epochs["n"], epochs[col], marker="o")
        ax.set_xticks(epochs["n"], epochs["label"], rotation=45)
    ax.set(title=name, ylabel=name, xlabel="")


def _val_reward(ax: plt.Axes, epochs: pd.DataFrame) -> None:
    """Greedy validation reward at each shot, with a 95% band (±1.96 SE over queries)."""
    shots = sorted(int(c.split("@")[1]) for c in epochs.columns if c.startswith("val/reward@"))
    for k in shots:
        mean, se = epochs[f"val/reward@{k}"], epochs.get(f"val/reward_se@{k}")
        ax.plot(epochs["n"], mean, marker="o", label=f"shot {k}")
        if se is not None:
            ax.fill_between(epochs["n"], mean - Z95 * se, mean + Z95 * se, alpha=0.15)
    if shots:
        ax.set_xticks(epochs["n"], epochs["label"], rotation=45)
        ax.legend()
    ax.set(title="validation reward (greedy)", ylabel="reward", xlabel="")


def checkpoint_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per epoch checkpoint: phase, epoch (1-based), val reward ± SE per shot, val loss, best mark."""
    _, epochs = log_frames(rows)
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
    if shots:
        score = ck[[f"val/reward@{k}" for k in shots]].mean(axis=1)
        out["best"] = ["★" if i == score.idxmax() else "" for i in ck.index]
    return out.reset_index(drop=True)
