"""The evaluator (cached + batched) against the study's naive loop, tiny local Qwen2.5-VL on CPU.

Workload: 200 demo-world test questions x shots 1-4 x 7 systems = 5,600 cells:
the random baseline and 6 checkpoints of which only 3 are distinct selectors,
each saved for two consecutive epochs (as a converged lineage is: consecutive
epochs that select the same ICDs). Checkpoints choose from 64-candidate
RandSampler pools.

  evaluator  `evaluate(params, ctx)`: one selection at max(shots) per system,
             identical prompts answered once through the sqlite answer cache,
             misses generated in length-sorted batches of 16. Fresh cache.
  naive      the study's way: for every (system, shot, question) one
             `generate([request])` call, no cache, so the naive count is
             systems x shots x questions LVLM calls.

The naive loop would take long on 2 shared cores, so it is TIMED ON A SAMPLE
(SAMPLE_PER_SHOT cells per shot, drawn from the evaluator's own cells) and
extrapolated per shot: naive time = sum over shots of mean time x cells of that shot.
Both run in the same process after the model is loaded and warmed up.
LAST line:

    speedup: <ratio>x (cached+batched vs naive)
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TINY_QWEN = ROOT / "tests" / "fixtures" / "tiny-qwen2.5-vl"
N_QUESTIONS = 200
N_POOL = 300  # demonstration split of the demo world
SHOTS = [1, 2, 3, 4]
N_DISTINCT, COPIES = 3, 2  # 6 checkpoints, 3 distinct selectors
EMB_DIM, HIDDEN = 128, 64
BATCH = 16
MAX_PIXELS = 28 * 28 * 16  # the demo world's 96 px images stay 84 px (as bench_lvlm_batching)
SAMPLE_PER_SHOT = 25
SEED = 0
THREADS = 2


def make_params(work: Path):
    from icl_kit.core.config import load_params

    return load_params(None, {
        "run_name": "bench_eval", "runs_dir": str(work), "seed": SEED,
        "data.root": str(work / "data"), "data.demo": True, "data.demo_train": N_POOL,
        "data.demo_test": N_QUESTIONS, "encoder.backend": "simple", "encoder.dim": EMB_DIM,
        "selector.input_dim": EMB_DIM, "selector.hidden_dim": HIDDEN,
        "lvlm.backend": "qwen", "lvlm.model": str(TINY_QWEN), "lvlm.device": "cpu",
        "lvlm.batch_size": BATCH, "lvlm.qwen.max_pixels": MAX_PIXELS,
        "eval.systems": ["random", "checkpoints/*.pt"], "eval.shots": SHOTS,
        "eval.questions": "first", "eval.n": N_QUESTIONS,
    })


def write_checkpoints(folder: Path) -> None:
    """Epochs 1..6: selector s = (epoch - 1) // COPIES, so epochs 1-2, 3-4 and 5-6 pick alike."""
    from icl_kit.selection.checkpoints import save_v3
    from icl_kit.selection.selector import PointerSelector

    for s in range(N_DISTINCT):
        torch.manual_seed(SEED + s)
        sel = PointerSelector(input_dim=EMB_DIM, hidden_dim=HIDDEN)
        first = folder / f"grpo_epoch{s * COPIES + 1}.pt"
        save_v3(first, sel, epoch=s * COPIES, phase="grpo", kl_beta=0.1, metrics={})
        for c in range(1, COPIES):
            shutil.copy(first, folder / f"grpo_epoch{s * COPIES + c + 1}.pt")


def time_naive(ctx, rows: list[dict]) -> tuple[float, int, int]:
    """(extrapolated seconds, cells timed, answers equal to the evaluator's) for one-at-a-time calls."""
    from icl_kit.lvlm.base import Request

    by_shot: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_shot[r["shot"]].append(r)
    rng = random.Random(SEED)
    lvlm, total, timed, same = ctx.service.lvlm, 0.0, 0, 0
    for shot, cells in sorted(by_shot.items()):
        sample = rng.sample(cells, SAMPLE_PER_SHOT)
        start = time.perf_counter()
        for r in sample:
            req = Request(icds=tuple(ctx.records[i] for i in r["icd_ids"]), query=ctx.records[r["question_id"]])
            same += lvlm.generate([req])[0].answer == r["pred"]
        per_cell = (time.perf_counter() - start) / len(sample)
        total += per_cell * len(cells)
        timed += len(sample)
        print(f"  naive shot {shot}: {per_cell * 1000:.0f} ms/cell x {len(cells)} cells")
    return total, timed, same


def main() -> int:
    from icl_kit.core.runs import read_jsonl
    from icl_kit.evaluation.runner import evaluate
    from icl_kit.run_context import RunContext

    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        params = make_params(Path(tmp))
        write_checkpoints(params.run_dir / "checkpoints")
        ctx = RunContext.build(params)
        _ = ctx.pools, ctx.embeddings  # world set-up, not part of either way
        warm = [(r.question_id, ()) for r in ctx.test_records[:BATCH]]
        ctx.service.lvlm.generate([ctx.service.request(k) for k in warm])  # load + warm the model
        start = time.perf_counter()
        res = evaluate(params, ctx=ctx, progress=False)
        ours = time.perf_counter() - start
        rows = read_jsonl(res.predictions)
        naive_calls = len(res.systems) * len(SHOTS) * res.n_questions
        assert res.cells == len(rows) == naive_calls, (res.cells, len(rows), naive_calls)
        naive, timed, same = time_naive(ctx, rows)
    print(f"systems: {len(res.systems)} (random + {N_DISTINCT * COPIES} checkpoints, {N_DISTINCT} distinct), "
          f"shots {SHOTS}, {res.n_questions} questions, tiny Qwen2.5-VL on CPU, {THREADS} threads")
    print(f"LVLM calls: {res.calls} made vs {naive_calls} naive (systems x shots x questions): "
          f"{naive_calls / res.calls:.2f}x fewer")
    print(f"wall time: evaluator {ours:.1f} s vs naive {naive:.1f} s "
          f"(naive EXTRAPOLATED from {timed} timed one-at-a-time cells)")
    print(f"naive answers equal to the evaluator's on {same}/{timed} sampled cells (batching round-off aside)")
    print(f"speedup: {naive / ours:.1f}x (cached+batched vs naive)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
