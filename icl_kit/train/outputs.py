"""What training leaves besides its files: the `TrainResult`, the best checkpoint by validation reward,
the optional TensorBoard writer, and the LVLM's work logged per epoch."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from icl_kit.lvlm.answers import AnswerService
from icl_kit.lvlm.work import Work
from icl_kit.lvlm.work_record import add_work

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


def combine(results: list[TrainResult]) -> TrainResult:
    """The seeds of train.seeds as one result: every seed's checkpoints in training order, their epoch tables
    one below the other, the best checkpoint by validation reward over all of them, the steps of all seeds;
    `last` is the last seed's. One result is itself."""
    if len(results) == 1:
        return results[0]
    tables = [r.val_table for r in results if not r.val_table.empty]
    table = pd.concat(tables, ignore_index=True) if tables else results[0].val_table
    shots = [int(c.split("@")[1]) for c in table.columns if str(c).startswith("val/reward@")]
    last = results[-1]
    return TrainResult(last.run_dir, [c for r in results for c in r.checkpoints], last.last, table,
                       best_checkpoint(table, last.run_dir, shots), sum(r.steps for r in results),
                       any(r.stopped for r in results))


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
    """What this process's LVLM did: one log line per epoch (icl_kit.lvlm.work) and, per step, the train_log
    keys `lvlm/prompts` (prompts asked), `lvlm/calls` (sent to the LVLM), `lvlm/cache_hits` (answered from
    rewards.sqlite) and `time/prompts_per_s` (prompts asked per second of the step).

    `lvlm/calls` and `lvlm/cache_hits` describe this process, not the training trajectory: a step re-run after a
    kill finds the answers its first try stored. Nothing is counted while the service is not open (it is
    opened on first use; counting never opens it); no collective, so ranks cannot wait on each other.
    """

    def __init__(self, record: Path | None = None) -> None:
        self.record = record  # lvlm_work.json (rank 0), where each epoch's work is added (icl_kit.lvlm.work_record)
        self.mark: Work | None = None
        self.asked = self.sent = 0  # the service's lookups and calls at the last step

    def log(self, service: AnswerService | None, what: str) -> None:
        if service is None:
            return
        now = service.work()
        done, self.mark = (now - self.mark if self.mark is not None else now), now
        log.info("%s: lvlm work (this process): %s", what, done.describe())
        if self.record is not None:
            add_work(self.record, "train", done)

    def begin_step(self, service: AnswerService | None) -> None:
        """Count from here (not what validation or an earlier phase asked)."""
        self.asked, self.sent = (service.lookups, service.calls) if service is not None else (0, 0)

    def step(self, service: AnswerService | None, seconds: float) -> dict[str, float]:
        """The step's train_log keys (class doc) since `begin_step`; {} while the service is not open."""
        if service is None:
            return {}
        asked, sent = service.lookups - self.asked, service.calls - self.sent
        return {"lvlm/prompts": asked, "lvlm/calls": sent, "lvlm/cache_hits": asked - sent,
                "time/prompts_per_s": asked / seconds if seconds > 0 else 0.0}
