"""Hand-made worlds for the trainer and evaluator tests.

A `FakeWorld` is a real `RunContext` (a store and a `FakeData` world) over records built here, with seeded
embeddings and pools instead of an encoder and a sampler, and a `ScriptedLVLM` whose answer is a known
function of the prompt behind the real AnswerService and sqlite cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from icl_kit.core.config import Params, RewardConfig
from icl_kit.core.runs import RunPaths
from icl_kit.data.records import Record
from icl_kit.lvlm.answers import AnswerService
from icl_kit.lvlm.base import LVLM, Generation, Request, Score
from icl_kit.run_context import ArtefactStore, DataWorld, RunContext, data_identity

EMB_SEED, POOL_SEED = 0, 1


def record(qid: int, answers: Sequence[str]) -> Record:
    return Record(qid, qid, f"question {qid}?", tuple(answers), answers[0], "other", "other", Path("none.jpg"))


class ScriptedLVLM(LVLM):
    """Answers `answer(request)` (raw text + `suffix`); counts prompts; after `fail_after`
    prompts it raises KeyboardInterrupt, a simulated kill. `logprob(request, answer)`, when given,
    is its teacher-forced score (one token per answer); `scored` counts score calls."""

    def __init__(self, answer: Callable[[Request], str], name: str, suffix: str = "",
                 fail_after: int | None = None, logprob: Callable[[Request, str], float] | None = None) -> None:
        self.answer, self.name, self.suffix = answer, name, suffix
        self.seen = 0
        self.fail_after = fail_after
        self.logprob = logprob
        self.scored = 0

    def fingerprint(self) -> str:
        return self.name

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        if self.fail_after is not None and self.seen + len(requests) > self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.seen += len(requests)
        return [Generation(text=self.answer(r) + self.suffix, answer=self.answer(r)) for r in requests]

    def score(self, requests: Sequence[Request], answers: Sequence[str]) -> list[Score]:
        if self.logprob is None:
            raise NotImplementedError
        self.scored += len(requests)
        return [Score(lp, lp, 1) for lp in (self.logprob(r, a) for r, a in zip(requests, answers, strict=True))]


@dataclass
class FakeData(DataWorld):
    """The data world over given records: seeded `dim`-d embeddings, seeded pools of `pool_size`."""

    dim: int = 8
    pool_size: int = 8

    @cached_property
    def _emb(self) -> dict:
        ids = sorted(self.records)
        g = torch.Generator().manual_seed(EMB_SEED)
        return {k: torch.randn(len(ids), self.dim, generator=g) for k in ("emb", "img", "txt")} | {"ids": ids}

    @cached_property
    def pools(self) -> dict[int, list[int]]:
        """Every query's pool: `pool_size` other pool ids, one seeded permutation per query in id order."""
        g = torch.Generator().manual_seed(POOL_SEED)
        out = {}
        for q in sorted(self.records):
            others = [i for i in self.pool_ids if i != q]
            out[q] = [others[j] for j in torch.randperm(len(others), generator=g)[: self.pool_size].tolist()]
        return out


@dataclass
class FakeWorld(RunContext):
    """A run over FakeData whose LVLM is the given one (behind the real AnswerService and sqlite cache)."""

    lvlm: LVLM | None = None  # replaces RunContext.lvlm (the registry's backend)
    batch_size: int = 16

    @classmethod
    def make(cls, params: Params, lvlm: LVLM, pool: list[Record], test: list[Record], dim: int = 8,
             pool_size: int = 8, batch_size: int = 16) -> FakeWorld:
        store = ArtefactStore(params, RunPaths(Path(params.run_dir)), data_identity(pool, test))
        world = FakeData(params, store, pool, test, dim=dim, pool_size=pool_size)
        return cls(world=world, store=store, lvlm=lvlm, batch_size=batch_size)

    def answer_service(self, reward: RewardConfig | None = None) -> AnswerService:
        service = super().answer_service(reward)
        service.batch_size = self.batch_size
        return service

    @property
    def service(self) -> AnswerService:
        """The evaluation's service (no gt_prob), as the tests' helpers use it."""
        return self.answer_service()

    # the data world's parts, as the tests' helpers use them
    @property
    def records(self) -> dict[int, Record]:
        return self.world.records

    @property
    def pool_ids(self) -> list[int]:
        return self.world.pool_ids

    @property
    def pools(self) -> dict[int, list[int]]:
        return self.world.pools

    def emb(self, qids: list[int] | torch.Tensor, part: str = "emb") -> torch.Tensor:
        return self.world.emb(qids, part)
