"""A tiny hand-made training world, and the torchrun worker of the two-process training test.

    torchrun --standalone --nproc_per_node 2 tests/grpo_ddp_worker.py RUN_DIR [key=value ...]

The world: 60 demonstrations (ids 1000..1059) that are also the training queries, seeded
8-d embeddings, pools of 8, and an LVLM whose answer is a fixed hash of the prompt (right
about 40% of the time), behind the real AnswerService and sqlite cache.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from fake_world import FakeWorld, ScriptedLVLM, record

from icl_kit.core.config import Params, load_params
from icl_kit.lvlm.base import LVLM, Request

N_POOL, POOL_SIZE, DIM = 60, 8, 8
POOL_BASE = 1000
HASH_MOD, RIGHT_BELOW = 5, 2  # right iff hash % 5 < 2


def fake_answer(req: Request) -> str:
    """A fixed function of the ordered prompt."""
    h = req.query.question_id * 31 + sum((i + 1) * 17 * r.question_id for i, r in enumerate(req.icds))
    return "yes" if h % HASH_MOD < RIGHT_BELOW else "no"


def hash_lvlm(fail_after: int | None = None) -> ScriptedLVLM:
    return ScriptedLVLM(fake_answer, "hash-v1", fail_after=fail_after)


def tiny_world(params: Params, lvlm: LVLM) -> FakeWorld:
    """60 demonstrations that are also the training queries; no test split."""
    pool = [record(POOL_BASE + i, ["yes"] * 10) for i in range(N_POOL)]
    return FakeWorld.make(params, lvlm, pool, [], dim=DIM, pool_size=POOL_SIZE, batch_size=16)


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
    from icl_kit.train.trainer import train

    torch.set_num_threads(1)
    params = tiny_params(Path(run_dir), overrides)
    result = train(params, ctx=tiny_world(params, hash_lvlm()), progress=False)
    print(f"steps={result.steps} checkpoints={len(result.checkpoints)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
