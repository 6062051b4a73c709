"""The headroom stage (`icl-kit headroom --params P`, notebook 00_headroom, the first stage of `icl-kit run` when
headroom.enabled): measure, then summarise.

Questions: the first headroom.n training queries (the training split of train.rollouts by sorted id, as SFT data
and GRPO take them) and the first headroom.n test questions (by id, as eval.questions: first takes them).
Files (icl_kit.core.artefacts): headroom/questions.jsonl, one line per question (icl_kit.headroom.measure),
appended chunk by chunk after its sidecar headroom/questions.meta.json, so a killed stage resumes where it
stopped and ends with the same bytes, and a file made with other params or questions is refused, never
extended; headroom/summary.json (icl_kit.headroom.summary), written atomically from the complete lines.
Every refusal comes before the run folder is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from icl_kit.core.artefacts import record
from icl_kit.core.config import Params
from icl_kit.core.errors import KitError
from icl_kit.core.runs import append_jsonl, atomic_write_json, read_jsonl
from icl_kit.core.sidecars import begin_lines, check_current
from icl_kit.evaluation.systems import similarity_selection
from icl_kit.headroom.measure import Plan, measure_chunk
from icl_kit.headroom.summary import summarise
from icl_kit.run_context import RunContext
from icl_kit.train.queries import split_queries

log = logging.getLogger(__name__)
LINES = "headroom_questions"  # artefact-table rows (RunPaths attributes)
SUMMARY = "headroom_summary"


@dataclass
class HeadroomResult:
    """What the stage did, and the summary it wrote."""

    questions: Path
    summary_path: Path
    summary: dict[str, Any] = field(repr=False)
    measured: int  # questions measured by this call (the rest were in questions.jsonl)
    calls: int  # prompts sent to the LVLM
    score_calls: int  # answer scores computed by the LVLM (InfoScore, gt_prob)
    seconds: float


def chosen_questions(params: Params, train_queries: Sequence[int], test_ids: Sequence[int]) -> dict[str, list[int]]:
    """{'train': the first headroom.n training queries, 'test': the first headroom.n test questions}; a headroom.n
    larger than a split is refused in one sentence naming the split and the fix."""
    n = params.headroom.n
    r = params.train.rollouts
    if n > len(train_queries):
        raise KitError(f"headroom.n={n} exceeds the {len(train_queries)} training queries (the demonstration split "
                       f"{params.data.train_split!r} less train.rollouts.val_fraction={r.val_fraction}"
                       + (f", within train.rollouts.max_queries={r.max_queries}" if r.max_queries else "")
                       + f"); set headroom.n to at most {min(len(train_queries), len(test_ids))}.")
    if n > len(test_ids):
        raise KitError(f"headroom.n={n} exceeds the {len(test_ids)} test questions of data.test_split="
                       f"{params.data.test_split!r}; set headroom.n to at most {len(test_ids)}.")
    return {"train": sorted(train_queries)[:n], "test": sorted(test_ids)[:n]}


def questions_identity(train_queries: Sequence[int], test_ids: Sequence[int]) -> dict[str, Any]:
    """The questions questions.jsonl draws its lines from (its sidecar's data): how many training queries and test
    questions there are, and a hash of their sorted ids. headroom.n is not part of it: a larger n extends the file,
    a smaller one reads its first lines."""
    ids = [sorted(int(q) for q in train_queries), sorted(int(q) for q in test_ids)]
    digest = hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]
    return {"training queries": len(ids[0]), "test questions": len(ids[1]), "question ids": digest}


def run_headroom(ctx: RunContext, progress: bool = True) -> HeadroomResult:
    """The stage on a built, not yet committed run (`RunContext.build(params, commit=False)`): checks, then the
    missing lines, then summary.json."""
    start, params, world, paths = time.time(), ctx.params, ctx.world, ctx.paths
    r = params.train.rollouts
    train_queries = split_queries(world.pool_ids, r.val_fraction, r.max_queries).train
    test_ids = [q.question_id for q in world.test_records]
    chosen = chosen_questions(params, train_queries, test_ids)
    sidecar = record(LINES, params, questions_identity(train_queries, test_ids))
    check_current({LINES: (paths.headroom_questions, sidecar)})  # a stale file: refused before anything is written
    pools = world.pools
    plan = Plan.of(params)
    similar = {s: similarity_selection(world, ids, max(plan.shots)) for s, ids in chosen.items()}
    ctx.store.commit()
    begin_lines(LINES, paths.headroom_questions, sidecar)
    answers, rewards = ctx.answer_service(), ctx.answer_service(params.train.reward)
    calls0, scores0 = answers.calls + rewards.calls, answers.score_calls + rewards.score_calls
    done = {(row["split"], int(row["question_id"])) for row in read_jsonl(paths.headroom_questions)}
    chunk = params.headroom.chunk
    todo = [(s, [q for q in ids if (s, q) not in done]) for s, ids in chosen.items()]
    steps = [(s, ids[i : i + chunk]) for s, ids in todo for i in range(0, len(ids), chunk)]
    for split, qids in tqdm(steps, desc="headroom", disable=not progress):
        append_jsonl(paths.headroom_questions, measure_chunk(answers, rewards if split == "train" else None, split,
                                                             qids, pools, similar[split], plan))
    wanted = {(s, q) for s, ids in chosen.items() for q in ids}
    lines = [row for row in read_jsonl(paths.headroom_questions) if (row["split"], row["question_id"]) in wanted]
    summary = summarise(lines, params)
    atomic_write_json(paths.headroom_summary, summary)
    calls = answers.calls + rewards.calls - calls0
    result = HeadroomResult(paths.headroom_questions, paths.headroom_summary, summary, sum(len(q) for _, q in todo),
                            calls, answers.score_calls + rewards.score_calls - scores0, time.time() - start)
    log.info("headroom: %d questions measured, %d LVLM prompts, %d scores, %.1f s", result.measured, calls,
             result.score_calls, result.seconds)
    return result


def headroom(params: Params, progress: bool = True) -> HeadroomResult:
    """`icl-kit headroom`: read the run's data (nothing written until the checks pass) and run the stage."""
    return run_headroom(RunContext.build(params, commit=False), progress=progress)


def read_summary(path: str | Path) -> dict[str, Any] | None:
    """headroom/summary.json, or None when the stage has not run (the report then has no headroom section)."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
