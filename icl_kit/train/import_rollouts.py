"""Import the existing study's RL data into a run's `rollouts.jsonl`.

Source (the study's JSON):

    {"_meta": {...},
     "<qid>": {"query": {"question_id", "image_id", "question", "gt_answers_raw", ...},
               "candidate_pool_ids": [64 ids],
               "pointer_candidates": [{"pointer": [i, j], "gen_method", "vqa_pred_answer",
                                       "vqa_correct", "vqa_acc_score", "vqa_gt_prob"?,
                                       "eval_failed"?, ...}]}}

`pointer` holds positions in `candidate_pool_ids`.

Output: `rollouts.jsonl`, THE line format the GRPO trainer reads (its offline
mode writes the same). One line per training query, ascending question id:

    {"question_id": int,
     "pool": [int, ...],                 # candidate ids; positions index this list
     "candidates": [{"icd_ids": [int, ...],     # pool[p] for p in positions, in order
                     "positions": [int, ...],   # indexes into pool, distinct
                     "gen_method": str,         # e.g. "beam", "sample", "random"
                     "pred": str,               # the LVLM's post-processed answer
                     "acc": float,              # VQA accuracy in [0, 1]
                     "correct": bool,           # the study's hard label
                     "gt_prob": float | null}]} # P(ground truth), when scored

Candidates flagged `eval_failed` are dropped and counted; a query left with
none is dropped too. Every entry is validated before anything is written, and
the file is written atomically, so a bad source leaves no partial output.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icl_kit.core.errors import KitError
from icl_kit.core.runs import RunPaths, atomic_open

META_KEY = "_meta"
MAX_REPORTED = 10  # malformed entries named in the error message


@dataclass(frozen=True)
class ImportSummary:
    """What an import wrote and what it dropped."""

    path: Path
    n_queries: int
    n_candidates: int
    n_failed_dropped: int  # candidates flagged eval_failed
    n_empty_queries: int  # queries whose every candidate failed


class _Bad(Exception):
    """A malformed entry: the message says which field and why."""


def parse_query(qid_key: str, entry: Any) -> tuple[dict[str, Any], int]:
    """One source entry -> (rollouts.jsonl row, candidates dropped as eval_failed)."""
    if not isinstance(entry, dict):
        raise _Bad("entry is not an object")
    qid = _int(qid_key, "key")
    query = entry.get("query", {})
    if not isinstance(query, dict):
        raise _Bad("'query' is not an object")
    if "question_id" in query and _int(query["question_id"], "query.question_id") != qid:
        raise _Bad(f"query.question_id {query['question_id']} differs from its key")
    pool = entry.get("candidate_pool_ids")
    if not isinstance(pool, list) or not pool:
        raise _Bad("'candidate_pool_ids' is missing or empty")
    pool = [_int(i, "candidate_pool_ids") for i in pool]
    raw = entry.get("pointer_candidates")
    if not isinstance(raw, list):
        raise _Bad("'pointer_candidates' is missing or not a list")
    cands = [parse_candidate(c, pool, j) for j, c in enumerate(raw) if not _failed(c)]
    return {"question_id": qid, "pool": pool, "candidates": cands}, len(raw) - len(cands)


def parse_candidate(c: Any, pool: list[int], j: int) -> dict[str, Any]:
    """One pointer candidate -> the output candidate dict (see module doc)."""
    where = f"pointer_candidates[{j}]"
    if not isinstance(c, dict):
        raise _Bad(f"{where} is not an object")
    pointer = c.get("pointer")
    if not isinstance(pointer, list) or not pointer:
        raise _Bad(f"{where}.pointer is missing or empty")
    positions = [_int(p, f"{where}.pointer") for p in pointer]
    if min(positions) < 0 or max(positions) >= len(pool) or len(set(positions)) != len(positions):
        raise _Bad(f"{where}.pointer {positions} must be distinct positions in 0..{len(pool) - 1}")
    acc = _number(c.get("vqa_acc_score"), f"{where}.vqa_acc_score")
    if not 0.0 <= acc <= 1.0:
        raise _Bad(f"{where}.vqa_acc_score={acc} is outside [0, 1]")
    correct = c.get("vqa_correct")
    if correct not in (True, False, 0, 1):
        raise _Bad(f"{where}.vqa_correct={correct!r} is not a boolean or 0/1")
    pred = c.get("vqa_pred_answer")
    if not isinstance(pred, str):
        raise _Bad(f"{where}.vqa_pred_answer is missing or not a string")
    gt_prob = c.get("vqa_gt_prob")
    return {
        "icd_ids": [pool[p] for p in positions],
        "positions": positions,
        "gen_method": str(c.get("gen_method", "unknown")),
        "pred": pred,
        "acc": acc,
        "correct": bool(correct),
        "gt_prob": None if gt_prob is None else _number(gt_prob, f"{where}.vqa_gt_prob"),
    }


def _failed(c: Any) -> bool:
    return isinstance(c, dict) and bool(c.get("eval_failed"))


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
    src = Path(src)
    if not src.is_file():
        raise KitError(f"RL data file {src} does not exist; pass the study's rl_data_*.json.")
    try:
        raw = json.loads(src.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise KitError(f"RL data file {src} is not valid JSON ({exc}); re-copy it.") from None
    if not isinstance(raw, dict):
        raise KitError(f"RL data file {src} must hold an object of queries, not {type(raw).__name__}.")
    return raw


def convert_rl_data(raw: dict[str, Any], src: str | Path = "RL data") -> tuple[list[dict[str, Any]], int, int]:
    """Every query of the source -> (rows sorted by question id, failed dropped, empty queries dropped).

    All malformed entries are collected and reported in one KitError naming their query ids.
    """
    rows, bad, n_failed, n_empty = [], [], 0, 0
    for key, entry in raw.items():
        if key == META_KEY:
            continue
        try:
            row, dropped = parse_query(key, entry)
        except _Bad as exc:
            bad.append(f"query {key}: {exc}")
            continue
        n_failed += dropped
        if row["candidates"]:
            rows.append(row)
        else:
            n_empty += 1
    if bad:
        more = f" (and {len(bad) - MAX_REPORTED} more)" if len(bad) > MAX_REPORTED else ""
        raise KitError(
            f"{src} has {len(bad)} malformed entries: {'; '.join(bad[:MAX_REPORTED])}{more}; "
            "fix or remove them and import again."
        )
    ids = [r["question_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise KitError(f"{src} lists a question id twice (e.g. as '1' and '01'); keep one entry per query.")
    if not rows:
        raise KitError(f"{src} holds no query with a usable candidate; nothing to import.")
    return sorted(rows, key=lambda r: r["question_id"]), n_failed, n_empty


def import_rollouts(src: str | Path, run_dir: str | Path, force: bool = False) -> ImportSummary:
    """Validate the whole source, then write `run_dir/rollouts.jsonl` atomically."""
    out = RunPaths(Path(run_dir)).rollouts
    if out.exists() and not force:
        raise KitError(f"{out} already exists; pass --force (force=True) to replace it.")
    rows, n_failed, n_empty = convert_rl_data(read_rl_data(src), src)
    with atomic_open(out, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return ImportSummary(out, len(rows), sum(len(r["candidates"]) for r in rows), n_failed, n_empty)
