"""A tiny hand-made training world, and the torchrun worker of the two-process training test.

    torchrun --standalone --nproc_per_node 2 tests/grpo_ddp_worker.py RUN_DIR [key=value ...]

The world: 60 demonstrations (ids 1000..1059) that are also the training queries, seeded
8-d embeddings, pools of 8, and an LVLM whose answer is a fixed hash of the prompt (right
about 40% of the time), behind the real AnswerService and sqlite cache.
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

N_POOL, POOL_SIZE, DIM = 60, 8, 8
POOL_BASE = 1000
HASH_MOD, RIGHT_BELOW = 5, 2  # right iff hash % 5 < 2


def record(qid: int) -> Record:
    return Record(qid, qid, f"question {qid}?", ("yes",) * 10, "yes", "other", "other", Path("none.jpg"))


def fake_answer(req: Request) -> str:
    """A fixed function of the ordered prompt."""
    h = req.query.question_id * 31 + sum((i + 1) * 17 * r.question_id for i, r in enumerate(req.icds))
    return "yes" if h % HASH_MOD < RIGHT_BELOW else "no"


class HashLVLM(LVLM):
    """Answers `fake_answer`; counts prompts; raises KeyboardInterrupt after `fail_after` prompts."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.seen = 0
        self.fail_after = fail_after

    def fingerprint(self) -> str:
        return "hash-v1"

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        if self.fail_after is not None and self.seen + len(requests) > self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.seen += len(requests)
        return [Generation(text=fake_answer(r), answer=fake_answer(r)) for r in requests]

    def score(self, requests: Sequence[Request], answers: Sequence[str]) -> list[Score]:
        raise NotImplementedError


@dataclass
class TinyWorld:
    """Duck-types RunContext for `train(params, ctx=...)`."""

    params: Params
    lvlm: LVLM

    @cached_property
    def paths(self) -> RunPaths:
        return RunPaths(Path(self.params.run_dir))

    @cached_property
    def records(self) -> dict[int, Record]:
        return {POOL_BASE + i: record(POOL_BASE + i) for i in range(N_POOL)}

    @cached_property
    def pool_ids(self) -> list[int]:
        return sorted(self.records)

    @cached_property
    def _emb(self) -> torch.Tensor:
        return torch.randn(N_POOL, DIM, generator=torch.Generator().manual_seed(0))

    def emb(self, qids: list[int] | torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(qids)
        return self._emb[ids.flatten() - POOL_BASE].reshape(*ids.shape, DIM)

    @cached_property
    def pools(self) -> dict[int, list[int]]:
        g = torch.Generator().manual_seed(1)
        out = {}
        for q in self.pool_ids:
            others = [i for i in self.pool_ids if i != q]
            out[q] = [others[j] for j in torch.randperm(len(others), generator=g)[:POOL_SIZE].tolist()]
        return out

    @cached_property
    def service(self) -> AnswerService:
        return AnswerService(self.lvlm, self.records, self.paths.rewards, batch_size=16)


def tiny_params(run_dir: Path, overrides: Sequence[str] = ()) -> Params:
    """2 RCE + 2 GRPO epochs of 6 steps (48 training, 12 validation queries), selector 8 -> 16."""
    base = {"runs_dir": str(run_dir.parent), "run_name": run_dir.name, "pools.size": POOL_SIZE,
            "selector.input_dim": DIM, "selector.hidden_dim": 16, "selector.dropout": 0.0,
            "train.device": "cpu", "train.reward.shots": [2], "train.val_shots": [1, 2],
            "train.rollouts.group_size": 4, "train.rollouts.beam_size": 2, "train.rollouts.samples_per_temperature": 2,
            "train.rce.epochs": 2, "train.rce.batch_groups": 8, "train.grpo.epochs": 2, "train.grpo.batch_groups": 8,
            "train.grpo.lr": 1e-2, "train.rce.lr": 1e-2, "train.save_every_steps": 4}
    return load_params(None, [f"{k}={v}" for k, v in base.items()] + list(overrides))


def main(run_dir: str, *overrides: str) -> None:
    from icl_kit.grpo import train

    torch.set_num_threads(1)
    params = tiny_params(Path(run_dir), overrides)
    result = train(params, ctx=TinyWorld(params, HashLVLM()), progress=False)
    print(f"steps={result.steps} checkpoints={len(result.checkpoints)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
