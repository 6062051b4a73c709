"""Hand-made worlds for the trainer and evaluator tests.

A `FakeWorld` is a real `RunContext` over records built here, with seeded embeddings and
pools instead of an encoder and a sampler, and a `ScriptedLVLM` whose answer is a known
function of the prompt behind the real AnswerService and sqlite cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from icl_kit.core.config import Params
from icl_kit.core.runs import RunPaths
from icl_kit.data.records import Record
from icl_kit.lvlm.answers import AnswerService
from icl_kit.lvlm.base import LVLM, Generation, Request, Score
from icl_kit.run_context import RunContext

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
class FakeWorld(RunContext):
    """RunContext over given records: seeded `dim`-d embeddings, seeded pools of `pool_size`."""

    lvlm: LVLM | None = None
    dim: int = 8
    pool_size: int = 8
    batch_size: int = 16

    @classmethod
    def make(cls, params: Params, lvlm: LVLM, pool: list[Record], test: list[Record], **kw: int) -> FakeWorld:
        return cls(params=params, paths=RunPaths(Path(params.run_dir)), pool_records=pool, test_records=test,
                   lvlm=lvlm, **kw)

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

    @cached_property
    def service(self) -> AnswerService:
        return AnswerService(self.lvlm, self.records, self.paths.rewards, batch_size=self.batch_size)
