"""Per-question measurements of the headroom stage, all through the run's answer cache (rewards.sqlite), so
evaluation, SFT data and training later reuse every prompt answered or scored here.

For a question q with candidate pool C_q (pools.json) and each shot k of eval.shots:

    zero_shot    acc(q, ())
    similarity   acc(q, the evaluation's `similarity` selection, shot k)    (the k most similar of the split)
    random       acc(q, first k of R_m), m = 1..M                             (headroom.draws)
    oracle       acc(q, the best InfoScore beam of C_q with k ICDs)

R_1..R_M are sets of max(shots, train.reward.shots) distinct ids drawn uniformly from C_q, a seeded generator per
question (headroom.seed), so a question's sets never depend on the others. The oracle is the beam search of
`icl_kit.train.sft_data.search_chunk` with the sft_data settings (score, answer, prob_norm, beam_size,
construct_order), run to k steps and ranked `cumulative`: the beam whose prompt gives the query's answer the
highest probability, not Lever-LM's largest last step. Its steps share every prompt with the SFT data's search
(the children of a step do not depend on how the beams are ranked), so `sft-data` finds them cached.
A training query also gets the training reward of each random set: the mean over train.reward.shots of
`reward_value` of the answer to its first s ids (train.reward.kind).

Line format (headroom/questions.jsonl, one per question; accuracies in 0..1, lists per shot in eval.shots order):
    {"split": "train" | "test", "question_id": int, "zero_shot": float, "similarity": [S], "oracle": [S],
     "oracle_icds": [[k ids in prompt order] per shot], "random": [[S] per draw], "reward": [M] | null}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from icl_kit.core.config import Params, SFTDataConfig
from icl_kit.lvlm.answers import AnswerService
from icl_kit.train.rewards import reward_value
from icl_kit.train.sft_data import search_chunk

STREAM_SETS = 7  # the random sets' generator stream (pools and the evaluation's random ICDs use others)
ORACLE_RANKING = "cumulative"  # with score prob or logprob: rank beams by P(y | beam), the oracle's question


@dataclass(frozen=True)
class Plan:
    """What the stage measures, from the params."""

    shots: tuple[int, ...]  # eval.shots, sorted
    reward_shots: tuple[int, ...]  # train.reward.shots
    reward_kind: str
    draws: int  # M
    seed: int
    search: SFTDataConfig  # the oracle's beam search (max_shots set per shot)
    similarity_order: str

    @property
    def set_size(self) -> int:
        """Ids per random set: enough for every shot and every reward prefix."""
        return max(*self.shots, *self.reward_shots)

    @classmethod
    def of(cls, params: Params) -> Plan:
        h = params.headroom
        search = dataclasses.replace(params.sft_data, beam_score=ORACLE_RANKING)
        return cls(tuple(sorted(set(params.eval.shots))), tuple(params.train.reward.shots),
                   params.train.reward.kind, h.draws, h.seed, search, params.eval.similarity_order)


def random_sets(qid: int, pool: Sequence[int], size: int, draws: int, seed: int) -> list[tuple[int, ...]]:
    """`draws` sets of `size` distinct ids of `pool`, in draw order, from the generator (seed, stream, qid)."""
    rng = np.random.default_rng([seed, STREAM_SETS, int(qid)])
    return [tuple(int(pool[i]) for i in rng.choice(len(pool), size=size, replace=False)) for _ in range(draws)]


def oracle_beams(service: AnswerService, qids: Sequence[int], pools: Mapping[int, Sequence[int]],
                 plan: Plan) -> dict[int, list[tuple[int, ...]]]:
    """{question: [the best beam's ids in prompt order, per shot]}: one search per shot, whose earlier steps are
    the cached steps of the shorter searches (a search to k steps makes the same first k − 1 steps)."""
    best: dict[int, list[tuple[int, ...]]] = {int(q): [] for q in qids}
    for k in plan.shots:
        lines = search_chunk(service, list(qids), pools, dataclasses.replace(plan.search, max_shots=k))
        for line in lines:
            best[int(line["question_id"])].append(tuple(int(i) for i in line["beams"][0]["icd_ids"]))
    return best


def _prefix(icds: Sequence[int], k: int, order: str, retrieved: bool) -> tuple[int, ...]:
    """The first k of a selection in prompt order (a similarity selection reversed under `last`, as evaluated)."""
    first = tuple(icds[:k])
    return first[::-1] if retrieved and order == "last" else first


def measure_chunk(answers: AnswerService, rewards: AnswerService | None, split: str, qids: Sequence[int],
                  pools: Mapping[int, Sequence[int]], similar: Mapping[int, Sequence[int]],
                  plan: Plan) -> list[dict[str, Any]]:
    """The lines (module doc) of questions `qids` of one split: every prompt of the chunk in one batched call.

    `answers` gives the accuracies; `rewards` (training queries only) the training reward, whose service computes
    gt_prob when train.reward.kind asks for it."""
    oracle = oracle_beams(answers, qids, pools, plan)
    sets = {q: random_sets(q, pools[q], plan.set_size, plan.draws, plan.seed) for q in qids}
    keys: list[tuple[int, tuple[int, ...]]] = []
    for q in qids:
        keys.append((q, ()))
        keys += [(q, _prefix(similar[q], k, plan.similarity_order, True)) for k in plan.shots]
        keys += [(q, icds) for icds in oracle[q]]
        keys += [(q, s[:k]) for s in sets[q] for k in plan.shots]
    acc = iter(a.acc for a in answers.answers(keys))
    lines = []
    for q in qids:
        zero = next(acc)
        sim = [next(acc) for _ in plan.shots]
        best = [next(acc) for _ in plan.shots]
        rand = [[next(acc) for _ in plan.shots] for _ in sets[q]]
        lines.append({"split": split, "question_id": int(q), "zero_shot": zero, "similarity": sim, "oracle": best,
                      "oracle_icds": [list(i) for i in oracle[q]], "random": rand, "reward": None})
    if rewards is not None:
        for line, values in zip(lines, set_rewards(rewards, sets, plan), strict=True):
            line["reward"] = values
    return lines


def set_rewards(service: AnswerService, sets: Mapping[int, Sequence[tuple[int, ...]]], plan: Plan) -> list[list[float]]:
    """The training reward of each set of each question (in `sets` order), in one batched call: the mean over
    train.reward.shots of the reward of the set's first s ids."""
    keys = [(q, s[:k]) for q, qsets in sets.items() for s in qsets for k in plan.reward_shots]
    values = iter(reward_value(a, plan.reward_kind) for a in service.answers(keys))
    n = len(plan.reward_shots)
    return [[sum(next(values) for _ in range(n)) / n for _ in qsets] for qsets in sets.values()]
