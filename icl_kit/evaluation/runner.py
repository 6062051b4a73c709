"""Per-epoch evaluation: systems × shots × test questions -> eval/predictions.jsonl + summary.csv.

    cells  = every (system, shot, question) of this evaluation
    calls  = distinct prompts (question, ICD ids) not yet in the answer cache

Identical prompts (zero-shot at every shot, two checkpoints that pick the same
ICDs, a re-run) go to the LVLM once through the shared answer cache, so
calls <= cells. Cells are answered in chunks of `eval.chunk` and appended as
whole lines after each chunk: a killed run loses at most the chunk in flight,
and a re-run skips every cell already written.

Several processes (`torchrun` / `accelerate launch`): questions are sharded by
rank (questions[rank::world]); each rank appends to eval/predictions.rank{r}.jsonl;
after a barrier rank 0 merges everything into predictions.jsonl in canonical
order (system, shot, question_id), byte-identical to a one-process run. All
ranks share one rewards.sqlite: each write is one short transaction and
sqlite's busy timeout (rewards.AnswerCache, 60 s) serialises the writers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from icl_kit.core.config import Params
from icl_kit.core.devices import set_deterministic
from icl_kit.core.dist import Ranks
from icl_kit.core.errors import KitError
from icl_kit.core.runs import append_jsonl
from icl_kit.evaluation.io import CellKey, merge_predictions, read_done, shard_path, write_summary
from icl_kit.evaluation.systems import System, check_input_dims, resolve_systems, select, shot_icds
from icl_kit.lvlm.work_record import add_work
from icl_kit.run_context import DataWorld, RunContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One (system, shot, question) to answer with the first `shot` ICDs of the system's selection."""

    system: System
    shot: int
    question_id: int
    icd_ids: tuple[int, ...]
    image_id: int | None = None  # the question's image: stats.cluster: image clusters by it

    @property
    def key(self) -> CellKey:
        return self.system.name, self.shot, self.question_id


@dataclass
class EvalResult:
    """What `evaluate` did. `calls`, `cells` and `skipped` are totals over all ranks."""

    predictions: Path
    summary: Path
    calls: int  # prompts sent to the LVLM
    cells: int  # cells filled in this run
    skipped: int  # cells already present (resume)
    systems: list[str]
    n_questions: int
    seconds: float
    table: pd.DataFrame | None = field(default=None, repr=False)  # summary.csv (rank 0 only)
    work: Any = field(default=None, repr=False)  # icl_kit.lvlm.work.Work: what the LVLM did (all ranks)


# ------------------------------------------------------------------ processes
# ------------------------------------------------------------------ questions and cells
def test_question_ids(records: Sequence[Any], how: str, n: int, seed: int) -> list[int]:
    """eval.questions: first N by id, random N (seeded), or all; returned sorted by id."""
    from icl_kit.data.okvqa import select_questions

    chosen = select_questions(list(records), how, n, seed)
    ids = sorted(int(getattr(r, "question_id", r)) for r in chosen)
    if not ids:
        raise KitError("The test split has no questions to evaluate; check data.root and data.test_split.")
    return ids


def plan_cells(
    systems: Sequence[System],
    world: DataWorld,
    qids: Sequence[int],
    shots: Sequence[int],
    done: dict[CellKey, dict[str, Any]],
    *,
    seed: int,
    pool_spec: str,
    similarity_order: str = "first",
) -> tuple[list[Cell], int]:
    """(cells still to answer, cells already done); one selection at max(shots) per system.

    Cells go question by question, its shots together (shot k's prompt extends shot k-1's: the LVLM's prefix
    cache reuses the shared part while it is fresh); predictions.jsonl is rewritten in canonical order at the end.
    """
    shots = sorted(set(shots))
    images = question_images(world.test_records)
    todo: list[Cell] = []
    skipped = 0
    for system in systems:
        selection = select(system, world, qids, max(shots), seed=seed, pool_spec=pool_spec)
        for q in qids:
            for shot in shots:
                icds = shot_icds(system, selection[q], shot, similarity_order)
                cell = Cell(system, shot, q, icds, images.get(q))
                if cell.key in done:
                    _check_same_icds(cell, done[cell.key])
                    skipped += 1
                else:
                    todo.append(cell)
    return todo, skipped


def _check_same_icds(cell: Cell, row: dict[str, Any]) -> None:
    if [int(i) for i in row["icd_ids"]] != list(cell.icd_ids):
        raise KitError(
            f"eval/predictions.jsonl holds {cell.system.name} shot {cell.shot} question {cell.question_id} "
            f"with other ICDs than it selects now (checkpoint, seed or pools changed); "
            f"delete the eval folder or rename the system."
        )


def question_images(records: Sequence[Any]) -> dict[int, int]:
    """question_id -> image_id of the test records."""
    return {int(r.question_id): int(r.image_id) for r in records}


def prediction_row(cell: Cell, answer: Any) -> dict[str, Any]:
    """One predictions.jsonl line (acc in 0..1)."""
    s = cell.system
    return {
        "system": s.name, "checkpoint": s.checkpoint, "epoch": s.epoch, "shot": cell.shot,
        "question_id": cell.question_id, "image_id": cell.image_id, "icd_ids": list(cell.icd_ids),
        "raw": answer.raw, "pred": answer.pred, "acc": float(answer.acc),
    }


def answer_cells(cells: Sequence[Cell], service: Any, out: Path, chunk: int, progress: bool) -> None:
    """Answer cells chunk by chunk through the cache; append each chunk's lines when it is done."""
    with tqdm(total=len(cells), desc="eval cells", unit="cell", disable=not progress) as bar:  # closed on errors too
        for start in range(0, len(cells), chunk):
            part = cells[start : start + chunk]
            answers = service.answers([(c.question_id, c.icd_ids) for c in part])
            append_jsonl(out, [prediction_row(c, a) for c, a in zip(part, answers, strict=True)])
            bar.update(len(part))


# ------------------------------------------------------------------ entry point
def evaluate(params: Params, *, ctx: RunContext | None = None, progress: bool = True) -> EvalResult:
    """Evaluate eval.systems at eval.shots on the chosen test questions; resumable and shardable."""
    t0 = time.perf_counter()
    cfg = params.eval
    set_deterministic(params.deterministic)
    ranks = Ranks.start()
    try:
        run_dir = Path(ctx.paths.root) if ctx is not None else Path(params.run_dir)
        systems = resolve_systems(cfg.systems, run_dir, names=cfg.names)
        planned: dict[str, tuple[list[Cell], int]] = {}

        def check(run: RunContext) -> None:  # every refusal before the run folder changes: dims, questions, cells
            world = run.world
            if any(s.kind == "checkpoint" for s in systems):
                check_input_dims(systems, int(world.emb(world.pool_ids[:1]).shape[-1]), run_dir)
            qids = test_question_ids(world.test_records, cfg.questions, cfg.n, cfg.seed)
            planned["all"] = plan_cells(systems, world, qids, cfg.shots, read_done(run.paths.predictions),
                                        seed=cfg.seed, pool_spec=cfg.pool, similarity_order=cfg.similarity_order)

        if ctx is None:
            need_emb = cfg.pool != "rand" or any(s.kind in ("checkpoint", "similarity") for s in systems)
            ctx = RunContext.for_ranks(params, ranks, need_emb, check=check)
        else:
            check(ctx)
        paths, world = ctx.paths, ctx.world
        service = ctx.answer_service()  # evaluation scores answers only: nothing of train.reward
        qids = test_question_ids(world.test_records, cfg.questions, cfg.n, cfg.seed)
        mine = qids[ranks.rank :: ranks.world]
        todo, skipped = planned["all"] if ranks.world == 1 else plan_cells(
            systems, world, mine, cfg.shots, read_done(paths.predictions), seed=cfg.seed, pool_spec=cfg.pool,
            similarity_order=cfg.similarity_order)
        out = paths.predictions if ranks.world == 1 else shard_path(paths.eval_dir, ranks.rank)
        calls_before, work_before = service.calls, service.work()
        answer_cells(todo, service, out, cfg.chunk, progress and ranks.rank == 0)
        calls, cells, skipped = ranks.total([service.calls - calls_before, len(todo), skipped])
        done = service.work() - work_before
        work = done.with_counts(ranks.total(done.counts()))  # summed over ranks
        ranks.barrier()
        table = None
        if ranks.rank == 0:
            merged = merge_predictions(paths.predictions, question_images(world.test_records))
            table = write_summary(paths.summary, merged)
            add_work(paths.lvlm_work, "eval", work)
        ranks.barrier()
    finally:
        ranks.close()
    result = EvalResult(paths.predictions, paths.summary, calls, cells, skipped, [s.name for s in systems],
                        len(qids), time.perf_counter() - t0, table, work)
    log.info("eval: %d cells filled with %d LVLM calls (%d already done); %d systems x %d shots x %d questions",
             cells, calls, skipped, len(systems), len(set(cfg.shots)), len(qids))
    log.info("eval: lvlm work: %s", work.describe())
    return result
