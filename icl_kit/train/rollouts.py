"""Groups of ICD sequences with rewards: offline (built once per run) or online (sampled per step).

A sequence is L positions into a query's candidate pool (L = max(train.reward.shots));
its reward is the mean LVLM reward of its prefixes of length `train.reward.shots`.

Offline (`rollouts.jsonl`, one line per query, the format `icl_kit.study.rollouts` writes):
    {"question_id": int, "pool": [K ids], "candidates": [{"icd_ids": [L ids], "positions": [L ints],
     "gen_method": str, "pred": str, "acc": float, "correct": bool, "gt_prob": float | null}]}
built from the selector at the start of the run: `beam_size` beam sequences, `samples_per_temperature`
samples at each temperature, the similarity top-L, `n_random` random sequences; de-duplicated in
that order; pred/acc/correct/gt_prob describe the full-length (L-shot) prompt. Queries are generated
in fixed chunks, each from its own seeded generator, and appended as whole lines, so a killed build
resumes and ends with the same file. Its sidecar rollouts.meta.json (written before the first line) names
the params that shaped the lines (icl_kit.core.artefacts); a file made with others is refused, never extended.

Online: each step draws G sequences per query from the current policy (`online_temperature`) and scores
them through the answer cache.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from icl_kit.core.config import TrainConfig
from icl_kit.core.devices import training_mode
from icl_kit.core.errors import KitError, few
from icl_kit.core.runs import append_jsonl, read_jsonl
from icl_kit.core.sidecars import begin_lines
from icl_kit.lvlm.answers import Answer, AnswerService
from icl_kit.train.queries import QueryTable
from icl_kit.train.rewards import batch_sequence_rewards, reward_value

log = logging.getLogger(__name__)

CHUNK = 64  # queries per offline generation chunk (one seeded generator and one append each)
CHUNK_SEED_STRIDE = 1_000_003  # chunk c draws from seed + c·stride


def sequence_length(cfg: TrainConfig) -> int:
    """L: picks per training sequence, the longest prefix a reward looks at."""
    return max(cfg.reward.shots)


# ------------------------------------------------------------------- groups
@dataclass
class Groups:
    """B groups of up to G sequences: seqs (B, G, L) pool positions, rewards (B, G), mask (B, G)."""

    rows: Tensor
    seqs: Tensor
    rewards: Tensor
    mask: Tensor

    def take(self, idx: Tensor) -> Groups:
        return Groups(self.rows[idx], self.seqs[idx], self.rewards[idx], self.mask[idx])


def score_groups(service: AnswerService, table: QueryTable, rows: Tensor, seqs: Tensor,
                 kind: str, shots: Sequence[int]) -> Tensor:
    """Rewards (B, G) of sequences (B, G, L) through the answer cache (one batched pass)."""
    values = batch_sequence_rewards(service, table.icd_ids(rows, seqs), kind, shots)
    return torch.tensor(values, dtype=torch.float32).view(seqs.shape[:2])


def sample_sequences(policy: torch.nn.Module, table: QueryTable, rows: Tensor, group_size: int, length: int,
                     generator: torch.Generator, temperature: float) -> Tensor:
    """G sequences per query from the policy (eval mode, no dropout). rows (B,) -> (B, G, L) on CPU."""
    q, c = table.batch(rows, _device(policy))
    q, c = q.repeat_interleave(group_size, 0), c.repeat_interleave(group_size, 0)  # (B·G, d), (B·G, K, d)
    with training_mode(policy, False):
        seqs = policy.select(q, c, length, mode="sample", temperature=temperature, generator=generator)
    return seqs.cpu().view(len(rows), group_size, length)


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


# ------------------------------------------------------------------ offline
def _dedupe(seqs: list[list[int]], methods: list[str]) -> list[tuple[list[int], str]]:
    """Keep the first occurrence of each ordered sequence with its generation method."""
    seen: dict[tuple[int, ...], str] = {}
    for s, m in zip(seqs, methods, strict=True):
        seen.setdefault(tuple(s), m)
    return [(list(s), m) for s, m in seen.items()]


def similarity_positions(q: Tensor, c: Tensor, length: int) -> Tensor:
    """The L candidates most cosine-similar to the query, most similar first. (B, d), (B, K, d) -> (B, L)"""
    sim = F.cosine_similarity(q.unsqueeze(1), c, dim=-1)  # (B, K)
    return sim.topk(length, dim=1).indices


def _chunk_candidates(selector: torch.nn.Module, q: Tensor, c: Tensor, cfg: TrainConfig, length: int,
                      gen: torch.Generator) -> list[list[tuple[list[int], str]]]:
    """Every generation method for one chunk of queries; per query a de-duplicated (positions, method) list."""
    r = cfg.rollouts
    bsz, n_cand = c.shape[:2]
    parts: list[tuple[Tensor, str]] = []  # (B, n, L) each
    if r.beam_size:
        parts.append((selector.beam_search(q, c, length, min(r.beam_size, n_cand))[0], "beam"))
    for tau in r.temperatures:
        if r.samples_per_temperature:
            n = r.samples_per_temperature
            s = selector.select(q.repeat_interleave(n, 0), c.repeat_interleave(n, 0), length,
                                mode="sample", temperature=tau, generator=gen)
            parts.append((s.view(bsz, n, length), f"sample_t{tau:g}"))
    parts.append((similarity_positions(q, c, length).unsqueeze(1), "similarity"))
    if r.n_random:
        noise = torch.rand(bsz, r.n_random, n_cand, generator=gen, device=gen.device)
        parts.append((noise.argsort(dim=-1)[..., :length], "random"))
    out = []
    for b in range(bsz):
        seqs = [s for t, _ in parts for s in t[b].tolist()]
        methods = [m for t, m in parts for _ in range(t.shape[1])]
        out.append(_dedupe(seqs, methods))
    return out


def build_offline_rollouts(selector: torch.nn.Module, table: QueryTable, qids: Sequence[int],
                           service: AnswerService, cfg: TrainConfig, path: Any, progress: bool = True,
                           record: dict[str, Any] | None = None) -> int:
    """Append rollouts for every query of `qids` not yet in `path`; return how many were written.

    `record`: the sidecar of this build (ArtefactStore.record("rollouts")); lines made with another are
    refused before anything is written, and an empty file takes it before its first line."""
    if record is not None:
        begin_lines("rollouts", path, record)
    done = {int(r["question_id"]) for r in read_jsonl(path)}
    qids = [int(q) for q in qids]
    length = sequence_length(cfg)
    chunks = [qids[i : i + CHUNK] for i in range(0, len(qids), CHUNK)]
    written = 0
    with training_mode(selector, False):
        device = _device(selector)
        for ci, chunk in enumerate(tqdm(chunks, desc="rollouts", disable=not progress)):
            if all(q in done for q in chunk):
                continue
            gen = torch.Generator(device=device).manual_seed(cfg.seed + ci * CHUNK_SEED_STRIDE)
            rows = torch.tensor([table.row[q] for q in chunk])
            q, c = table.batch(rows, device)
            cands = _chunk_candidates(selector, q, c, cfg, length, gen)
            todo = [(i, qid) for i, qid in enumerate(chunk) if qid not in done]
            keys = [(qid, tuple(table.pool_ids[table.row[qid], p].tolist())) for i, qid in todo for p, _ in cands[i]]
            answers = iter(service.answers(keys))
            lines = [_rollout_line(qid, table.pool_ids[table.row[qid]].tolist(), cands[i], answers) for i, qid in todo]
            append_jsonl(path, lines)
            written += len(lines)
    return written


def _rollout_line(qid: int, pool: list[int], cands: list[tuple[list[int], str]], answers: Any) -> dict[str, Any]:
    out = []
    for pos, method in cands:
        a = next(answers)
        out.append({"icd_ids": [pool[p] for p in pos], "positions": pos, "gen_method": method,
                    "pred": a.pred, "acc": a.acc, "correct": a.correct, "gt_prob": a.gt_prob})
    return {"question_id": qid, "pool": pool, "candidates": out}


def load_offline_groups(path: Any, table: QueryTable, qids: Sequence[int], service: AnswerService | None,
                        kind: str, shots: Sequence[int]) -> Groups:
    """Padded groups for `qids` (table order) from rollouts.jsonl.

    Rewards come from the stored full-length answer when shots == [L] (so imported rollouts need no
    LVLM), otherwise from the answer cache for each prefix.
    """
    rows_by_q = {int(r["question_id"]): r for r in read_jsonl(path)}
    missing = [q for q in qids if q not in rows_by_q]
    if missing:
        raise KitError(f"{path} has no rollouts for query {missing[0]}; delete it to rebuild, or re-import.")
    lines = [rows_by_q[int(q)] for q in qids]
    for line in lines:
        if [int(i) for i in line["pool"]] != table.pool_ids[table.row[int(line["question_id"])]].tolist():
            raise KitError(f"{path}: the pool of query {line['question_id']} differs from pools.json; "
                           "delete rollouts.jsonl (or pools.json) so both are rebuilt together.")
    length = max(shots)
    _check_lengths(path, lines, length)
    width = max(len(line["candidates"]) for line in lines)
    seqs = torch.zeros(len(lines), width, length, dtype=torch.long)
    seqs[:] = torch.arange(length)  # padding: any valid repeat-free sequence
    rewards = torch.zeros(len(lines), width)
    mask = torch.zeros(len(lines), width, dtype=torch.bool)
    for b, line in enumerate(lines):
        cands = line["candidates"]
        seqs[b, : len(cands)] = torch.tensor([cd["positions"] for cd in cands], dtype=torch.long)
        mask[b, : len(cands)] = True
        rewards[b, : len(cands)] = torch.tensor(_rewards(line, service, kind, shots, length))
    rows = torch.tensor([table.row[int(q)] for q in qids], dtype=torch.long)
    return Groups(rows, seqs, rewards, mask)


def check_rollouts(path: Any, pool_ids: Sequence[int], length: int) -> None:
    """rollouts.jsonl (built or imported) must describe this data: every query and candidate a question of the
    demonstration split, every sequence L picks. Checked before training writes anything, so a file made for
    other data is refused instead of being extended with lines built here."""
    rows = read_jsonl(path)
    for i, row in enumerate(rows, 1):
        if not _is_rollout_line(row):
            raise KitError(f"{path} line {i} is not a rollouts line (question_id, pool, candidates with positions); "
                           "re-import it with `icl-kit study import-rollouts`, or delete it to build rollouts from "
                           "the data.")
    known = {int(q) for q in pool_ids}
    for what, ids in (("query", {int(r["question_id"]) for r in rows}),
                      ("candidate", {int(i) for r in rows for i in r["pool"]})):
        foreign = sorted(ids - known)
        if foreign:
            raise KitError(f"{path} holds {few(foreign, what)} outside the demonstration split; check data.root "
                           "and data.train_split, or re-import or delete it.")
    _check_lengths(path, rows, length)


def _is_rollout_line(row: Any) -> bool:
    return (isinstance(row, dict) and isinstance(row.get("question_id"), int) and isinstance(row.get("pool"), list)
            and isinstance(row.get("candidates"), list)
            and all(isinstance(c, dict) and isinstance(c.get("positions"), list) for c in row["candidates"]))


def _check_lengths(path: Any, lines: list[dict[str, Any]], length: int) -> None:
    """Every stored sequence must have L = max(shots) picks: a shorter one would be scored on truncated prefixes."""
    for line in lines:
        bad = {len(cd["positions"]) for cd in line["candidates"]} - {length}
        if bad:
            raise KitError(
                f"{path}: query {line['question_id']} has sequences of {min(bad)} ICDs, but train.reward.shots "
                f"needs {length}; set train.reward.shots to match (imported study data has 2) or delete "
                "rollouts.jsonl to rebuild it."
            )


def _rewards(line: dict[str, Any], service: AnswerService | None, kind: str, shots: Sequence[int],
             length: int) -> list[float]:
    cands = line["candidates"]
    if set(shots) == {length}:
        return [reward_value(Answer("", cd["pred"], float(cd["acc"]), cd.get("gt_prob")), kind) for cd in cands]
    if service is None:
        raise KitError("Rewards at shots other than the rollout length need the LVLM answer service.")
    return batch_sequence_rewards(service, [(int(line["question_id"]), tuple(cd["icd_ids"])) for cd in cands],
                                  kind, shots)
