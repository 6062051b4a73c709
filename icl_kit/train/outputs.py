"""What training leaves besides its files: the `TrainResult`, the best checkpoint by validation reward,
the optional TensorBoard writer, and the LVLM's work logged per epoch."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What `train` made: epoch checkpoints in order, the per-epoch validation table, the best epoch."""

    run_dir: Path
    checkpoints: list[Path]
    last: Path
    val_table: pd.DataFrame = field(repr=False)
    best_checkpoint: Path | None
    steps: int
    stopped: bool = False  # `stop_after_steps` was reached before the end


def best_checkpoint(table: pd.DataFrame, run_dir: Path, shots: list[int]) -> Path | None:
    """The epoch checkpoint with the highest mean val/reward over `shots` (first one on ties)."""
    cols = [f"val/reward@{k}" for k in shots]
    if table.empty or "checkpoint" not in table or not set(cols) <= set(table.columns):
        return None
    rows = table.dropna(subset=["checkpoint"])
    if rows.empty:
        return None
    best = rows[cols].mean(axis=1).idxmax()
    return run_dir / rows.loc[best, "checkpoint"]


def tensorboard_writer(log_dir: Path) -> Any:
    """A SummaryWriter when tensorboard is installed, else None (JSONL is always written)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir))


class WorkLog:
    """One log line per epoch: what this process's LVLM did since the previous line (icl_kit.lvlm.work).

    Nothing is logged while the LVLM is not loaded (the answer service is built on first use, and logging
    never builds it); no collective, so ranks that built it at different times cannot wait on each other.
    """

    def __init__(self) -> None:
        self.mark: Any = None

    def log(self, ctx: Any, what: str) -> None:
        service = getattr(ctx, "__dict__", {}).get("service")  # a cached_property once built
        if service is None or not hasattr(service, "work"):
            return
        now = service.work()
        done, self.mark = (now - self.mark if self.mark is not None else now), now
        log.info("%s: lvlm work (this process): %s", what, done.describe())
