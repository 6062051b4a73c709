"""Import the existing study's InfoScore beam JSON (docs/study.md, "InfoScore beam data") as `sft_data.jsonl`.

Source: {"<anchor position>": {"id_list": [[icd_2, icd_1, anchor], ...] (best first, prompt order),
         "score_list": [float, ...], "shot_scores": [[s_step1, s_step2], ...], "beams"?, "few_shot_num"?}}
Every key and `id_list` entry is a POSITION in the question-id-sorted train split (docs/study.md, "Pools"), mapped to
question ids with `SplitPositions`. Cross-checks, each a KitError naming the anchor: the last entry of
every id_list is the key; a position lies in the split; `few_shot_num` (when present) is the number of
ICDs; `beams[i].shots` (when present, selection order) is id_list[i] without the anchor, reversed; the ICDs
lie in the anchor's pool. The pool is the study's candidate-set cache when given (`pools_file`, docs/study.md "Pools":
{anchor position: [K positions]}, the pool the beams were searched in), else the run's pools.json.

Output lines (the format icl_kit.train.sft_data writes): positions and ids in prompt order (what the
study's SFT sequence and the kit's `construct_order: left` both hold), step_scores = shot_scores,
score = score_list. The study's Qwen scores are stored as they are (docs/study.md "InfoScore beam data": not answer-only
probabilities); the trainer uses only their order (beams best first). Everything is validated before
the file is written atomically, so a bad source leaves no partial output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icl_kit.core.errors import KitError, joined
from icl_kit.core.runs import atomic_open, read_json_object
from icl_kit.core.sidecars import replace_with_sidecar
from icl_kit.study.formats.positions import SplitPositions

if TYPE_CHECKING:
    from icl_kit.run_context import RunContext


def _read_json(path: str | Path, what: str) -> dict[str, Any]:
    return read_json_object(path, what, "pass the study's file", "an object keyed by anchor position")


def _pos(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).lstrip("-").isdigit():
        raise KitError(f"{where} holds {value!r}, not a train-split position.")
    return int(value)


def convert_entry(key: str, entry: Any, split: SplitPositions, pool: list[int]) -> dict[str, Any]:
    """One anchor of the study's beam JSON -> one sft_data.jsonl line (module doc)."""
    where = f"anchor {key}"
    anchor = _pos(key, where)
    if not isinstance(entry, dict) or not isinstance(entry.get("id_list"), list) or not entry["id_list"]:
        raise KitError(f"{where}: 'id_list' is missing or empty; is this the study's generated_data JSON?")
    ids, scores = entry["id_list"], entry.get("score_list", [])
    steps = entry.get("shot_scores", [[]] * len(ids))
    if len(scores) != len(ids) or len(steps) != len(ids):
        raise KitError(f"{where}: id_list, score_list and shot_scores have {len(ids)}, {len(scores)} and "
                       f"{len(steps)} entries; they must match.")
    qid = split.qid(anchor, where)
    index = {c: j for j, c in enumerate(pool)}
    beams = []
    for i, seq in enumerate(ids):
        at = f"{where}, id_list[{i}]"
        if not isinstance(seq, list) or len(seq) < 2 or _pos(seq[-1], at) != anchor:
            raise KitError(f"{at} = {seq!r} must be [icd_k, ..., icd_1, anchor] ending with the anchor {anchor}.")
        icds = split.qids([_pos(p, at) for p in seq[:-1]], at)
        _check_beam(entry, i, seq, at)
        missing = [c for c in icds if c not in index]
        if missing:
            raise KitError(f"{at}: ICD {missing[0]} is not in the pool of question {qid}; pass the study's "
                           "candidate-set cache (--pools) the beams were searched in.")
        beams.append({"icd_ids": icds, "positions": [index[c] for c in icds],
                      "step_scores": [float(s) for s in steps[i]], "score": float(scores[i])})
    return {"question_id": qid, "pool": pool, "beams": beams}


def _check_beam(entry: dict[str, Any], i: int, seq: list[Any], at: str) -> None:
    """few_shot_num and beams[i].shots (selection order) must agree with id_list[i] (prompt order)."""
    n = entry.get("few_shot_num")
    if n is not None and int(n) != len(seq) - 1:
        raise KitError(f"{at} has {len(seq) - 1} ICDs but few_shot_num is {n}.")
    beams = entry.get("beams")
    if isinstance(beams, list) and i < len(beams) and isinstance(beams[i], dict) and "shots" in beams[i]:
        shots = [_pos(s.get("id") if isinstance(s, dict) else s, at) for s in beams[i]["shots"]]
        if shots != [_pos(p, at) for p in reversed(seq[:-1])]:
            raise KitError(f"{at}: beams[{i}].shots {shots} is not id_list[{i}] without the anchor, reversed; "
                           "the file is inconsistent.")


def study_pools(path: str | Path, split: SplitPositions) -> dict[int, list[int]]:
    """The study's candidate-set cache ({anchor position: [K positions]}) as {question id: [ids]}."""
    raw = _read_json(path, "Candidate-set file")
    return {split.qid(_pos(k, f"candidate set {k}"), f"candidate set {k}"):
            split.qids([_pos(p, f"candidate set {k}") for p in v], f"candidate set {k}") for k, v in raw.items()}


def import_sft_data(src: str | Path, ctx: RunContext, pools_file: str | Path | None = None,
                    force: bool = False) -> tuple[Path, int, int]:
    """Validate the whole source, then write the run's sft_data.jsonl; -> (path, queries, beams).

    `ctx` is the run's RunContext, built uncommitted (`commit=False`) so a failed import changes no file;
    it is committed (params.yaml, provenance.json) just before the output is written."""
    out = ctx.paths.sft_data
    if out.exists() and not force:
        raise KitError(f"{out} already exists; pass --force to replace it.")
    raw = _read_json(src, "Beam data file")
    split = SplitPositions(ctx.world.pool_records)
    pools = study_pools(pools_file, split) if pools_file else ctx.world.pools
    lines, bad = [], []
    for key, entry in raw.items():
        try:
            qid = split.qid(_pos(key, f"anchor {key}"), f"anchor {key}")
            if qid not in pools:
                raise KitError(f"anchor {key} (question {qid}) has no pool in the candidate-set file.")
            lines.append(convert_entry(key, entry, split, list(pools[qid])))
        except KitError as exc:
            bad.append(str(exc))
    if bad:
        raise KitError(f"{src}: {len(bad)} anchors do not import: {joined(bad, sep=' ')}")
    if not lines:
        raise KitError(f"{src} holds no anchor; nothing to import.")
    lines.sort(key=lambda r: r["question_id"])
    ctx.store.commit()

    def write() -> None:
        with atomic_open(out, "w") as fh:
            fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines))

    replace_with_sidecar("sft_data", out, ctx.store.record("sft_data", f"imported: {Path(src).name}"), write)
    return out, len(lines), sum(len(r["beams"]) for r in lines)
