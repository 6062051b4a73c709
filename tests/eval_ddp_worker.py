"""A small hand-made evaluation world, and the torchrun worker of the two-process test.

    torchrun --standalone --nproc_per_node 2 tests/eval_ddp_worker.py RUN_DIR   # checkpoints in RUN_DIR/checkpoints/

The world: 40 demonstrations (ids 1000..), 12 test questions (ids 1..12),
seeded 8-d embeddings, RandSampler-like pools of 8, and an LVLM whose answer is
a known function of the prompt, behind the real AnswerService and sqlite cache.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from icl_kit.config import Params, load_params
from icl_kit.data.records import Record
from icl_kit.lvlm.base import LVLM, Generation, Request, Score
from icl_kit.rewards import AnswerService
from icl_kit.runs import RunPaths

N_POOL, N_TEST, POOL_SIZE, DIM = 40, 12, 8, 8
POOL_BASE = 1000
WORDS = ("yes", "no", "red")


def record(qid: int, answers: Sequence[str]) -> Record:
    return Record(qid, qid, f"question {qid}?", tuple(answers), answers[0], "other", "other", Path("none.jpg"))


def fake_answer(req: Request) -> str:
    """A known function of the prompt: depends on the query and the ICD ids."""
    return WORDS[(req.query.question_id + sum(r.question_id for r in req.icds)) % len(WORDS)]


class FakeLVLM(LVLM):
    """Answers `fake_answer`; counts prompts; can fail after `fail_after` prompts (a simulated kill)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.seen = 0
        self.fail_after = fail_after

    def fingerprint(self) -> str:
        return "fake-v1"

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        if self.fail_after is not None and self.seen + len(requests) > self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.seen += len(requests)
        return [Generation(text=fake_answer(r) + " Question", answer=fake_answer(r)) for r in requests]

    def score(self, requests: Sequence[Request], answers: Sequence[str]) -> list[Score]:
        raise NotImplementedError


@dataclass
class FakeWorld:
    """Duck-types RunContext for `evaluate(params, ctx=...)`."""

    params: Params
    lvlm: LVLM

    @cached_property
    def paths(self) -> RunPaths:
        return RunPaths(Path(self.params.run_dir))

    @cached_property
    def pool_records(self) -> list[Record]:
        return [record(POOL_BASE + i, [WORDS[i % 3]] * 10) for i in range(N_POOL)]

    @cached_property
    def test_records(self) -> list[Record]:
        # answers: all 'yes' / two 'no' among 'yes' / all 'red' (acc of 'no' is 0.6 on the second kind)
        kinds = (["yes"] * 10, ["no"] * 2 + ["yes"] * 8, ["red"] * 10)
        return [record(q, kinds[q % 3]) for q in range(1, N_TEST + 1)]

    @cached_property
    def records(self) -> dict[int, Record]:
        return {r.question_id: r for r in self.pool_records + self.test_records}

    @cached_property
    def pool_ids(self) -> list[int]:
        return [r.question_id for r in self.pool_records]

    @cached_property
    def _emb(self) -> dict[int, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        ids = sorted(self.records)
        return dict(zip(ids, torch.randn(len(ids), DIM, generator=g), strict=True))

    def emb(self, qids: list[int] | torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(qids)
        return torch.stack([self._emb[int(q)] for q in ids.flatten()]).reshape(*ids.shape, DIM)

    @cached_property
    def pools(self) -> dict[int, list[int]]:
        g = torch.Generator().manual_seed(1)
        return {q: [self.pool_ids[i] for i in torch.randperm(N_POOL, generator=g)[:POOL_SIZE].tolist()]
                for q in sorted(self.records)}

    @cached_property
    def service(self) -> AnswerService:
        return AnswerService(self.lvlm, self.records, self.paths.rewards, batch_size=4)


def world_params(run_dir: Path, systems: Sequence[str], **eval_overrides: object) -> Params:
    """Params for the fake world (only run_dir and eval.* matter)."""
    overrides = {"runs_dir": str(run_dir.parent), "run_name": run_dir.name, "eval.systems": list(systems),
                 "eval.n": 10, "eval.shots": [1, 2, 3], "eval.chunk": 5, "pools.size": POOL_SIZE,
                 **{f"eval.{k}": v for k, v in eval_overrides.items()}}
    return load_params(None, overrides)


DDP_SYSTEMS = ("zero_shot", "random", "similarity", "checkpoints/*.pt")


def main(run_dir: str) -> None:
    from icl_kit.evaluate import evaluate

    params = world_params(Path(run_dir), DDP_SYSTEMS)
    result = evaluate(params, ctx=FakeWorld(params, FakeLVLM()), progress=False)
    print(f"calls={result.calls} cells={result.cells}")


if __name__ == "__main__":
    main(sys.argv[1])
