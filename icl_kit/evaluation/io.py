"""Evaluation outputs: per-rank shard files, the canonical merge, and the summary table.

predictions.jsonl holds one line per (system, shot, question); a finished run
leaves it sorted in the canonical order (system, shot, question_id), so a
resumed run and a sharded run end with the same bytes as one uninterrupted
process. summary.csv is derived from predictions.jsonl alone. Each line carries its question's image_id
(stats.cluster: image); lines written before it was recorded get it at the next merge (`icl-kit eval` again).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from icl_kit.core.names import POINTS, natural_key
from icl_kit.core.runs import RunPaths, atomic_open, read_jsonl

CellKey = tuple[str, int, int]  # (system, shot, question id)
PRED_FIELDS = ("system", "checkpoint", "epoch", "shot", "question_id", "image_id", "icd_ids", "raw", "pred", "acc")
SUMMARY_FIELDS = ["system", "epoch", "shot", "n", "accuracy"]
SHARD_GLOB = "predictions.rank*.jsonl"
IMPORTED_FILE = RunPaths(Path()).imported.name  # eval/imported.csv (the artefact table)
IMPORTED_FIELDS = ["system", "shot", "n", "accuracy", "source", "world"]
# The world of an imported system: the study's reported numbers on the first N test questions, or on the
# whole split. Systems of different worlds are never compared (stats refuses it); every system of
# predictions.jsonl lives in the run's own world (RUN_WORLD).
STUDY_WORLD_PREFIX = "study_"
RUN_WORLD = "run"


def imported_world(n: int, whole_split: bool) -> str:
    """'study_first100' (the study's first 100 test questions) or 'study_all' (its whole test split)."""
    return f"{STUDY_WORLD_PREFIX}all" if whole_split else f"{STUDY_WORLD_PREFIX}first{int(n)}"


def shard_path(eval_dir: Path, rank: int) -> Path:
    """Where rank `rank` appends its lines during a multi-process run."""
    return eval_dir / f"predictions.rank{rank}.jsonl"


def shard_files(eval_dir: Path) -> list[Path]:
    return sorted(eval_dir.glob(SHARD_GLOB))


def cell_key(row: dict[str, Any]) -> CellKey:
    return str(row["system"]), int(row["shot"]), int(row["question_id"])


def canonical_key(row: dict[str, Any]) -> tuple:
    system, shot, qid = cell_key(row)
    return natural_key(system), shot, qid


def read_done(predictions: Path) -> dict[CellKey, dict[str, Any]]:
    """Every finished cell: the main file plus any shard files left by a killed multi-process run."""
    rows: dict[CellKey, dict[str, Any]] = {}
    for path in [predictions, *shard_files(predictions.parent)]:
        for row in read_jsonl(path):
            rows.setdefault(cell_key(row), row)
    return rows


def write_canonical(predictions: Path, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write rows (duplicates dropped, canonical order) atomically; remove shard files after."""
    unique = {cell_key(r): r for r in rows}
    ordered = sorted(unique.values(), key=canonical_key)
    with atomic_open(predictions) as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered)
    for shard in shard_files(predictions.parent):
        shard.unlink()
    return ordered


def with_image_id(row: dict[str, Any], images: Mapping[int, int]) -> dict[str, Any]:
    """The row with `image_id` after `question_id`, where the row lacks it (lines written before the evaluation
    recorded it) and `images` knows the question: the line a fresh evaluation writes."""
    qid = int(row["question_id"])
    if "image_id" in row or qid not in images:
        return row
    out: dict[str, Any] = {}
    for key, value in row.items():
        out[key] = value
        if key == "question_id":
            out["image_id"] = images[qid]
    return out


def merge_predictions(predictions: Path, images: Mapping[int, int] | None = None) -> list[dict[str, Any]]:
    """Fold shard files into predictions.jsonl in canonical order, adding `image_id` from `images` (question_id
    -> image_id) to lines without it; return the rows."""
    rows = read_done(predictions).values()
    return write_canonical(predictions, [with_image_id(r, images) for r in rows] if images else rows)


def summarize(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """(system, epoch, shot, n, accuracy): accuracy = 100 · mean acc over the system's questions."""
    df = pd.DataFrame(list(rows), columns=list(PRED_FIELDS))
    if df.empty:
        return pd.DataFrame(columns=SUMMARY_FIELDS)
    df["epoch"] = df["epoch"].astype("Int64")
    out = (df.groupby(["system", "shot"], sort=False)
             .agg(epoch=("epoch", "first"), n=("acc", "size"), accuracy=("acc", "mean"))
             .reset_index())
    out["accuracy"] = out["accuracy"] * POINTS
    order = sorted(range(len(out)), key=lambda i: (natural_key(out["system"].iat[i]), int(out["shot"].iat[i])))
    return out.iloc[order][SUMMARY_FIELDS].reset_index(drop=True)


def write_summary(path: Path, rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    table = summarize(rows)
    with atomic_open(path) as fh:
        table.to_csv(fh, index=False)
    return table


# ------------------------------------------------------------ imported results
def imported_path(run_dir: str | Path) -> Path:
    return RunPaths(Path(run_dir)).imported


def read_imported(run_dir: str | Path) -> pd.DataFrame:
    """eval/imported.csv of a run (an empty table when nothing was imported)."""
    path = imported_path(run_dir)
    if not path.is_file():
        return pd.DataFrame(columns=IMPORTED_FIELDS)
    table = pd.read_csv(path)
    if "world" not in table.columns:  # written before worlds were recorded: the study's first n questions
        table["world"] = [imported_world(n, False) for n in table["n"]]
    return table
