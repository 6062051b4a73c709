"""Import the existing study's RL data into a run's `rollouts.jsonl` (docs/study.md, "RL data").

Source (the study's JSON), two layouts:

    {"_meta": {...},
     "<key>": {"query": {"query_id", "question_id", "image_id", "question", "gt_answers_raw", ...},
               "candidate_pool_ids": [64 ids],          # k64 / fix-v3 files only (496 onward)
               "pointer_candidates": [{"pointer": [i, j], "pointer_global"?: [a, b], "gen_method",
                                       "vqa_pred_answer", "vqa_correct", "vqa_acc_score",
                                       "vqa_eval_mode"?, "eval_failed"?, ...}]}}

- With `candidate_pool_ids`, `pointer` holds local positions into that pool (`pointer_global` = the ids).
- Without it (the d33 generator), `pointer` holds global ids and there is no pool. Each such query gets one:
  the distinct ICDs of its pointers in first-seen order, then its RandSampler pool from the run's
  pools.json (`pools.sampler: study_rand` gives the study's own draws) in pool order, skipping repeats and
  the query itself, up to `pools.size`; `positions` index that pool.
- Ids: the study's keys, `query_id`, `pointer_global`, `candidate_pool_ids` and global pointers are
  positions in the question-id-sorted train split (docs/study.md, "Pools").
  `ids="auto"` reads them as positions when some
  entry's `query.question_id` differs from its key, else as question ids. Every entry is cross-checked:
  the position's question id must equal `query.question_id` (else the file was made on another split).
- `vqa_acc_score` is recomputed with the kit's official VQA accuracy from `vqa_pred_answer` and the split's
  answers: `acc` is the official score (the trainer's reward), `study_acc` the stored one. The summary counts
  candidates whose stored score differs, and those the study scored in `fallback` or `error` mode.

Output: one line per training query, ascending question id (THE line format the trainer reads):

    {"question_id": int, "pool": [int, ...],
     "candidates": [{"icd_ids": [...], "positions": [...], "gen_method": str, "pred": str,
                     "acc": float (official), "study_acc": float, "correct": bool (acc > 0, the study's rule),
                     "gt_prob": float | null, "eval_mode": str | null}]}

Candidates flagged `eval_failed` are dropped and counted; a query left with none is dropped too. Every
entry is validated before anything is written, and the file is written atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from icl_kit.core.errors import KitError, joined
from icl_kit.core.runs import RunPaths, atomic_open, read_json_object
from icl_kit.core.sidecars import replace_with_sidecar
from icl_kit.data.vqa_accuracy import vqa_accuracy
from icl_kit.study.formats.positions import SplitPositions

if TYPE_CHECKING:
    from icl_kit.run_context import DataWorld

META_KEY = "_meta"
ACC_TOLERANCE = 1e-6  # stored vs official score: the study stored percent/100 of 2-decimal percentages
IDS = ("auto", "positions", "question_ids")
StudyIds = Literal["auto", "positions", "question_ids"]


@dataclass(frozen=True)
class TrainSplit:
    """What the import reads from the run: the sorted train split, its answers, RandSampler pools, pools.size."""

    positions: SplitPositions
    answers: dict[int, tuple[str, ...]]
    pools: dict[int, list[int]]
    pool_size: int


def train_split(world: DataWorld) -> TrainSplit:
    """The TrainSplit of a run's data world: its sorted train split, answers, pools (pools.json) and pools.size."""
    return TrainSplit(SplitPositions(world.pool_records), {r.question_id: r.answers for r in world.pool_records},
                      world.pools, world.params.pools.size)


@dataclass
class ImportSummary:
    """What an import wrote, what it dropped, and what it found in the study's scores."""

    path: Path
    ids: str = ""
    n_queries: int = 0
    n_candidates: int = 0
    n_failed_dropped: int = 0  # candidates flagged eval_failed
    n_empty_queries: int = 0  # queries whose every candidate failed
    n_acc_differs: int = 0  # stored vqa_acc_score != the official metric
    n_fallback: int = 0  # kept candidates the study scored in fallback mode
    n_error: int = 0  # candidates in error mode
    n_pools_built: int = 0  # queries without candidate_pool_ids
    pointer_lengths: dict[int, int] = field(default_factory=dict)


class _Bad(Exception):
    """A malformed entry: the message says which field and why."""


def resolve_ids(raw: dict[str, Any], ids: str) -> str:
    """'positions' or 'question_ids' (see module doc)."""
    if ids not in IDS:
        raise KitError(f"--ids {ids!r} is unknown; use one of {IDS}.")
    if ids != "auto":
        return ids
    for key, entry in raw.items():
        query = entry.get("query") if isinstance(entry, dict) else None
        if key != META_KEY and isinstance(query, dict) and "question_id" in query and str(query["question_id"]) != key:
            return "positions"
    return "question_ids"


def _id_mapper(split: TrainSplit, ids: str) -> Callable[[int, str], int]:
    """position or question id in the file -> question id of the train split."""
    def to_qid(value: int, where: str) -> int:
        if ids == "positions":
            try:
                return split.positions.qid(value)
            except KitError:
                raise _Bad(f"{where} holds {value}, outside the {len(split.positions)} positions of the train split "
                           "(a file made on another split or subsample)") from None
        if not split.positions.has_id(value):
            raise _Bad(f"{where} holds {value}, which is not a question id of the train split")
        return value
    return to_qid


def parse_query(key: str, entry: Any, split: TrainSplit, ids: str, s: ImportSummary) -> dict[str, Any]:
    """One source entry -> its rollouts.jsonl row (counts go into `s`)."""
    if not isinstance(entry, dict):
        raise _Bad("entry is not an object")
    to_qid = _id_mapper(split, ids)
    qid = to_qid(_int(key, "key"), "key")
    query = entry.get("query", {})
    if not isinstance(query, dict):
        raise _Bad("'query' is not an object")
    if "question_id" in query and _int(query["question_id"], "query.question_id") != qid:
        if ids == "positions":
            raise _Bad(f"position {key} of the sorted train split is question {qid}, but query.question_id is "
                       f"{query['question_id']} (a file made on another split or subsample)")
        raise _Bad(f"query.question_id {query['question_id']} differs from its key")
    raw = entry.get("pointer_candidates")
    if not isinstance(raw, list):
        raise _Bad("'pointer_candidates' is missing or not a list")
    kept = [c for c in raw if not (isinstance(c, dict) and c.get("eval_failed"))]
    s.n_failed_dropped += len(raw) - len(kept)
    s.n_error += sum(isinstance(c, dict) and c.get("vqa_eval_mode") == "error" for c in raw)
    if "candidate_pool_ids" in entry:
        study_pool = entry["candidate_pool_ids"]
        if not isinstance(study_pool, list) or not study_pool:
            raise _Bad("'candidate_pool_ids' is empty or not a list")
        raw_pool = [_int(i, "candidate_pool_ids") for i in study_pool]
        pool = [to_qid(i, "candidate_pool_ids") for i in raw_pool]
        local = [_local_pointer(c, raw_pool, j) for j, c in enumerate(kept)]
    else:
        s.n_pools_built += 1
        icds = [[to_qid(_int(p, f"pointer_candidates[{j}].pointer"), f"pointer_candidates[{j}].pointer")
                 for p in _pointer(c, j)] for j, c in enumerate(kept)]
        pool = _fill_pool(qid, icds, split)
        local = [[pool.index(i) for i in row] for row in icds]
    answers = split.answers[qid]
    cands = [parse_candidate(c, pool, positions, j, answers, s) for j, (c, positions) in
             enumerate(zip(kept, local, strict=True))]
    return {"question_id": qid, "pool": pool, "candidates": cands}


def _pointer(c: Any, j: int) -> list[Any]:
    if not isinstance(c, dict):
        raise _Bad(f"pointer_candidates[{j}] is not an object")
    pointer = c.get("pointer")
    if not isinstance(pointer, list) or not pointer:
        raise _Bad(f"pointer_candidates[{j}].pointer is missing or empty")
    return pointer


def _local_pointer(c: Any, raw_pool: list[int], j: int) -> list[int]:
    """Local positions of a k64/fix-v3 candidate, checked against `pointer_global` when present."""
    where = f"pointer_candidates[{j}]"
    positions = [_int(p, f"{where}.pointer") for p in _pointer(c, j)]
    if min(positions) < 0 or max(positions) >= len(raw_pool):
        raise _Bad(f"{where}.pointer {positions} must be distinct positions in 0..{len(raw_pool) - 1}")
    glob = c.get("pointer_global")
    if glob is not None and [raw_pool[p] for p in positions] != glob:
        raise _Bad(f"{where}.pointer {positions} gives {[raw_pool[p] for p in positions]} in candidate_pool_ids, "
                   f"but pointer_global is {glob}")
    return positions


def _fill_pool(qid: int, icds: list[list[int]], split: TrainSplit) -> list[int]:
    """Distinct ICDs of the pointers (first seen first), then the query's RandSampler pool, up to pools.size."""
    pool = list(dict.fromkeys(i for row in icds for i in row))
    for i in split.pools.get(qid, []):
        if len(pool) >= split.pool_size:
            break
        if i != qid and i not in pool:
            pool.append(i)
    return pool


def parse_candidate(c: dict[str, Any], pool: list[int], positions: list[int], j: int, answers: tuple[str, ...],
                    s: ImportSummary) -> dict[str, Any]:
    """One pointer candidate -> the output candidate dict (see module doc)."""
    where = f"pointer_candidates[{j}]"
    if len(set(positions)) != len(positions):
        raise _Bad(f"{where}.pointer {positions} must be distinct positions in 0..{len(pool) - 1}")
    stored = _number(c.get("vqa_acc_score"), f"{where}.vqa_acc_score")
    if not 0.0 <= stored <= 1.0:
        raise _Bad(f"{where}.vqa_acc_score={stored} is outside [0, 1]")
    if c.get("vqa_correct") not in (True, False, 0, 1):
        raise _Bad(f"{where}.vqa_correct={c.get('vqa_correct')!r} is not a boolean or 0/1")
    pred = c.get("vqa_pred_answer")
    if not isinstance(pred, str):
        raise _Bad(f"{where}.vqa_pred_answer is missing or not a string")
    acc = vqa_accuracy(pred, answers)
    s.n_acc_differs += abs(acc - stored) > ACC_TOLERANCE
    mode = c.get("vqa_eval_mode")
    s.n_fallback += mode == "fallback"
    s.pointer_lengths[len(positions)] = s.pointer_lengths.get(len(positions), 0) + 1
    gt_prob = c.get("vqa_gt_prob")
    return {
        "icd_ids": [pool[p] for p in positions], "positions": positions,
        "gen_method": str(c.get("gen_method", "unknown")), "pred": pred, "acc": acc, "study_acc": stored,
        "correct": acc > 0, "gt_prob": None if gt_prob is None else _number(gt_prob, f"{where}.vqa_gt_prob"),
        "eval_mode": mode if isinstance(mode, str) else None,
    }


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise _Bad(f"{what} holds {value!r}, not an integer id")
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise _Bad(f"{what} holds {value!r}, not an integer id") from None
    if isinstance(value, float) and value != out:
        raise _Bad(f"{what} holds {value!r}, not an integer id")
    return out


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Bad(f"{what}={value!r} is not a finite number")
    return float(value)


# ---------------------------------------------------------------------- files
def read_rl_data(src: str | Path) -> dict[str, Any]:
    """The source JSON object; a missing or non-JSON file is a KitError."""
    return read_json_object(src, "RL data file", "pass the study's rl_data_*.json", "an object of queries")


def convert_rl_data(raw: dict[str, Any], split: TrainSplit, ids: str = "auto",
                    src: str | Path = "RL data") -> tuple[list[dict[str, Any]], ImportSummary]:
    """Every query of the source -> (rows sorted by question id, summary without its path).

    All malformed entries are collected and reported in one KitError naming their keys.
    """
    s = ImportSummary(Path(), ids=resolve_ids(raw, ids))
    rows, bad = [], []
    for key, entry in raw.items():
        if key == META_KEY:
            continue
        try:
            row = parse_query(key, entry, split, s.ids, s)
        except _Bad as exc:
            bad.append(f"query {key}: {exc}")
            continue
        if row["candidates"]:
            rows.append(row)
        else:
            s.n_empty_queries += 1
    if bad:
        raise KitError(f"{src} has {len(bad)} malformed entries: {joined(bad)}; "
                       f"fix or remove them and import again (ids read as {s.ids}).")
    ids_seen = [r["question_id"] for r in rows]
    if len(set(ids_seen)) != len(ids_seen):
        raise KitError(f"{src} lists a question id twice (e.g. as '1' and '01'); keep one entry per query.")
    if not rows:
        raise KitError(f"{src} holds no query with a usable candidate; nothing to import.")
    s.n_queries, s.n_candidates = len(rows), sum(len(r["candidates"]) for r in rows)
    s.pointer_lengths = dict(sorted(s.pointer_lengths.items()))
    return sorted(rows, key=lambda r: r["question_id"]), s


def import_rollouts(src: str | Path, run_dir: str | Path, split: TrainSplit, ids: str = "auto",
                    force: bool = False, record: dict[str, Any] | None = None) -> ImportSummary:
    """Validate the whole source, then write `run_dir/rollouts.jsonl` atomically; with `record` (the run's
    sidecar, ArtefactStore.record), rollouts.meta.json is written before it."""
    out = RunPaths(Path(run_dir)).rollouts
    if out.exists() and not force:
        raise KitError(f"{out} already exists; pass --force (force=True) to replace it.")
    rows, summary = convert_rl_data(read_rl_data(src), split, ids, src)

    def write() -> None:
        with atomic_open(out, "w") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    if record is None:
        write()
    else:
        replace_with_sidecar("rollouts", out, record, write)
    summary.path = out
    return summary
