"""InfoScore beam-search data for SFT (`sft_data.jsonl`), made through the answer cache.

For each query x with pool C (Lever-LM's generate_data, without the study's defects):
    beams_0 = [()]; for step 1..sft.max_shots:
        children = every beam extended (sft_data.construct_order) by every pool item it does not hold,
        each scored InfoScore(c | beam, x) (icl_kit.train.infoscore),
        beams = the best sft_data.beam_size children by sft_data.beam_score (ties: earlier parent, lower position).
All queries of a chunk are searched together: every step is ONE batched request for the
probabilities of all children of all beams of the chunk, through `AnswerService.answer_probs`,
so an identical prompt is scored once across beams, queries, runs and stages (the cache is the
run's rewards.sqlite, shared with rewards and evaluation).

Line format (one per query, ascending question id within each chunk):
    {"question_id": int, "pool": [K ids],
     "beams": [{"icd_ids": [ids], "positions": [ints into pool], "step_scores": [InfoScore per step],
                "score": float}]}          # best first; ids/positions in selection (= prompt) order
`score` is what the beams were ranked by. Chunks are appended as whole lines, so a killed build
resumes where it stopped and ends with the same file. Its sidecar sft_data.meta.json (written before the
first line) names the params that shaped the lines (icl_kit.core.artefacts); a file made with others is
refused, never extended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from icl_kit.core.artefacts import ARTEFACTS
from icl_kit.core.config import SFTDataConfig
from icl_kit.core.errors import KitError
from icl_kit.core.runs import append_jsonl, read_jsonl
from icl_kit.core.sidecars import begin_lines
from icl_kit.lvlm.answers import AnswerService
from icl_kit.lvlm.work_record import add_work
from icl_kit.train.infoscore import answer_weights, beam_rank_score, extend, info_score, top_beams
from icl_kit.train.queries import QuerySplit, QueryTable
from icl_kit.train.rollouts import Groups

if TYPE_CHECKING:  # the stage's context, for its signature only
    from icl_kit.run_context import RunContext

log = logging.getLogger(__name__)

SFT_FILE = ARTEFACTS["sft_data"].path  # in the run folder (RunPaths.sft_data)


@dataclass
class _Beam:
    positions: tuple[int, ...]  # selection order
    step_scores: tuple[float, ...]
    prob: float  # P(y | this context, x)


@dataclass(frozen=True)
class BuildStats:
    """What a build did: queries written, LVLM scores made, scores asked for (the rest were cache hits)."""

    written: int
    score_calls: int
    score_lookups: int

    @property
    def cache_hits(self) -> int:
        return self.score_lookups - self.score_calls


def sft_queries(split: QuerySplit, max_queries: int) -> list[int]:
    """The first `max_queries` training and the first `max_queries` validation queries (0 = all)."""
    n = max_queries or None
    return sorted(split.train[:n] + split.val[:n])


def search_chunk(service: AnswerService, qids: Sequence[int], pools: Mapping[int, Sequence[int]],
                 cfg: SFTDataConfig) -> list[dict[str, Any]]:
    """Beam search (module doc) for the queries `qids` at once; one output line per query."""
    weights = [answer_weights(service.records[q], cfg.answer) for q in qids]
    base = service.answer_probs([(q, ()) for q in qids], weights, cfg.prob_norm)
    beams = [[_Beam((), (), p)] for p in base]
    for _ in range(cfg.max_shots):
        children, keys, owner = [], [], []
        for i, q in enumerate(qids):
            pool = pools[q]
            mine = [(b, extend(b.positions, j, cfg.construct_order)) for b in beams[i]
                    for j in range(len(pool)) if j not in b.positions]
            children.append(mine)
            keys += [(q, tuple(pool[p] for p in pos)) for _, pos in mine]
            owner += [i] * len(mine)
        probs = iter(service.answer_probs(keys, [weights[i] for i in owner], cfg.prob_norm))
        for i, mine in enumerate(children):
            made = []
            for parent, pos in mine:
                p = next(probs)
                made.append(_Beam(pos, (*parent.step_scores, info_score(p, parent.prob, cfg.score)), p))
            ranks = [beam_rank_score(b.step_scores, cfg.beam_score) for b in made]
            beams[i] = [made[j] for j in top_beams(ranks, cfg.beam_size)]
    return [_line(q, list(pools[q]), bs, cfg.beam_score) for q, bs in zip(qids, beams, strict=True)]


def _line(qid: int, pool: list[int], beams: list[_Beam], rule: str) -> dict[str, Any]:
    return {"question_id": int(qid), "pool": pool, "beams": [
        {"icd_ids": [pool[p] for p in b.positions], "positions": list(b.positions),
         "step_scores": list(b.step_scores), "score": beam_rank_score(b.step_scores, rule)} for b in beams]}


def build_sft_data(service: AnswerService, qids: Sequence[int], pools: Mapping[int, Sequence[int]],
                   cfg: SFTDataConfig, path: Path, progress: bool = True,
                   record: dict[str, Any] | None = None) -> BuildStats:
    """Append beam data for every query of `qids` not yet in `path` (module doc), chunk by chunk.

    `record`: the sidecar of this build (ArtefactStore.record("sft_data")); lines made with another are
    refused before anything is written, and an empty file takes it before its first line."""
    if record is not None:
        begin_lines("sft_data", path, record)
    done = {int(r["question_id"]) for r in read_jsonl(path)}
    qids = [int(q) for q in qids]
    calls0, lookups0 = service.score_calls, service.score_lookups
    work0 = service.work() if hasattr(service, "work") else None  # icl_kit.lvlm.work
    written = 0
    chunks = [qids[i : i + cfg.chunk] for i in range(0, len(qids), cfg.chunk)]
    for chunk in tqdm(chunks, desc="sft beams", disable=not progress):
        todo = [q for q in chunk if q not in done]
        if todo:
            append_jsonl(path, search_chunk(service, todo, pools, cfg))
            written += len(todo)
    stats = BuildStats(written, service.score_calls - calls0, service.score_lookups - lookups0)
    if written:
        log.info("sft data: %d queries -> %s; %d LVLM scores, %d cache hits", written, path, stats.score_calls,
                 stats.cache_hits)
        if work0 is not None:
            log.info("sft data: lvlm work: %s", (service.work() - work0).describe())
    return stats


def make_sft_data(ctx: RunContext, progress: bool = True) -> tuple[Path, BuildStats]:
    """`icl-kit sft-data`: the beams of the queries the trainer's SFT uses (sft_data.max_queries), resumable.

    `ctx` is the run (its data world, artefact store and the answer service of the training reward)."""
    from icl_kit.train.queries import split_queries

    params = ctx.params
    r = params.train.rollouts
    qids = sft_queries(split_queries(ctx.world.pool_ids, r.val_fraction, r.max_queries), params.sft_data.max_queries)
    ctx.store.check("pools", "sft_data")  # before the run folder is committed (opening the service does)
    path = ctx.paths.sft_data
    service = ctx.answer_service(params.train.reward)
    before = service.work()
    built = build_sft_data(service, qids, ctx.world.pools, params.sft_data, path, progress=progress,
                           record=ctx.store.record("sft_data"))
    add_work(ctx.paths.lvlm_work, "sft-data", service.work() - before)
    return path, built


# ------------------------------------------------------------------- reading
def read_sft_data(path: Path) -> dict[int, dict[str, Any]]:
    """{question id: line} of sft_data.jsonl; a missing file is a KitError naming how to make it."""
    if not Path(path).is_file():
        raise KitError(f"{path} does not exist; make it with `icl-kit sft-data --params P` (or import the "
                       "study's beams with `icl-kit study import-sft-data FILE --params P`), or set "
                       "sft_data.build: true.")
    return {int(r["question_id"]): r for r in read_jsonl(path)}


def sft_groups(lines: Sequence[dict[str, Any]], rows: Sequence[int], beams_used: int) -> Groups:
    """Padded beams of `lines` as Groups: seqs (B, W, L) pool positions best first, rewards = beam scores,
    mask (B, W); `rows` are the lines' rows in the table built over their pools."""
    kept = [line["beams"][: beams_used or None] for line in lines]
    lengths = {len(b["positions"]) for bs in kept for b in bs}
    if len(lengths) != 1:
        raise KitError(f"sft_data.jsonl mixes beams of {sorted(lengths)} ICDs; rebuild it with one sft_data.max_shots.")
    (length,) = lengths
    width = max(len(bs) for bs in kept)
    seqs = torch.arange(length).repeat(len(kept), width, 1)  # padding: any valid repeat-free sequence
    scores = torch.zeros(len(kept), width)
    mask = torch.zeros(len(kept), width, dtype=torch.bool)
    for i, bs in enumerate(kept):
        seqs[i, : len(bs)] = torch.tensor([b["positions"] for b in bs], dtype=torch.long)
        scores[i, : len(bs)] = torch.tensor([float(b["score"]) for b in bs])
        mask[i, : len(bs)] = True
    return Groups(torch.tensor(list(rows), dtype=torch.long), seqs, scores, mask)


def check_sft_data(path: Path, split: QuerySplit) -> dict[int, dict[str, Any]]:
    """The lines of `path` (`read_sft_data`); a KitError unless one of them is a training-split query."""
    lines, train = read_sft_data(path), set(split.train)
    if not any(q in train for q in lines):
        raise KitError(f"{path} holds no query of the training split; rebuild it (sft_data.build: true) or import "
                       "beams made on this split.")
    return lines


def load_sft_split(path: Path, split: QuerySplit, emb_fn: Callable[[Any], torch.Tensor],
                   beams_used: int) -> tuple[QueryTable, Groups, Groups | None]:
    """The beams of `path` as (table over their own pools, training groups, validation groups or None)."""
    lines = check_sft_data(path, split)
    train, val = set(split.train), set(split.val)
    qids = sorted(q for q in lines if q in train or q in val)
    table = QueryTable(qids, {q: [int(i) for i in lines[q]["pool"]] for q in qids}, emb_fn)

    def groups(part: set[int]) -> Groups | None:
        mine = [q for q in qids if q in part]
        return sft_groups([lines[q] for q in mine], [table.row[q] for q in mine], beams_used) if mine else None

    return table, groups(train), groups(val)
