"""A small hand-made evaluation world, and the torchrun worker of the two-process test.

    torchrun --standalone --nproc_per_node 2 tests/eval_ddp_worker.py RUN_DIR   # checkpoints in RUN_DIR/checkpoints/

The world: 40 demonstrations (ids 1000..), 12 test questions (ids 1..12),
seeded 8-d embeddings, RandSampler-like pools of 8, and an LVLM whose answer is
a known function of the prompt, behind the real AnswerService and sqlite cache.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from fake_world import FakeWorld, ScriptedLVLM, record

from icl_kit.core.config import Params, load_params
from icl_kit.lvlm.base import LVLM, Request

N_POOL, N_TEST, POOL_SIZE, DIM = 40, 12, 8, 8
POOL_BASE = 1000
WORDS = ("yes", "no", "red")


def fake_answer(req: Request) -> str:
    """A known function of the prompt: depends on the query and the ICD ids."""
    return WORDS[(req.query.question_id + sum(r.question_id for r in req.icds)) % len(WORDS)]


def fake_lvlm(fail_after: int | None = None) -> ScriptedLVLM:
    """Answers `fake_answer` followed by " Question" (post-processing cuts it)."""
    return ScriptedLVLM(fake_answer, "fake-v1", suffix=" Question", fail_after=fail_after)


def eval_world(params: Params, lvlm: LVLM) -> FakeWorld:
    """40 demonstrations, 12 test questions whose answers are all 'yes' / two 'no' among 'yes' / all 'red'
    (acc of 'no' is 0.6 on the second kind)."""
    kinds = (["yes"] * 10, ["no"] * 2 + ["yes"] * 8, ["red"] * 10)
    pool = [record(POOL_BASE + i, [WORDS[i % 3]] * 10) for i in range(N_POOL)]
    test = [record(q, kinds[q % 3]) for q in range(1, N_TEST + 1)]
    return FakeWorld.make(params, lvlm, pool, test, dim=DIM, pool_size=POOL_SIZE, batch_size=4)


def world_params(run_dir: Path, systems: Sequence[str], **eval_overrides: object) -> Params:
    """Params for the fake world (only run_dir and eval.* matter)."""
    overrides = {"runs_dir": str(run_dir.parent), "run_name": run_dir.name, "eval.systems": list(systems),
                 "eval.n": 10, "eval.shots": [1, 2, 3], "eval.chunk": 5, "pools.size": POOL_SIZE,
                 **{f"eval.{k}": v for k, v in eval_overrides.items()}}
    return load_params(None, overrides)


DDP_SYSTEMS = ("zero_shot", "random", "similarity", "checkpoints/*.pt")


def main(run_dir: str) -> None:
    from icl_kit.evaluation.runner import evaluate

    params = world_params(Path(run_dir), DDP_SYSTEMS)
    result = evaluate(params, ctx=eval_world(params, fake_lvlm()), progress=False)
    print(f"calls={result.calls} cells={result.cells}")


if __name__ == "__main__":
    main(sys.argv[1])
