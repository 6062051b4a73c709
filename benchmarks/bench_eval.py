"""The evaluator (cached + batched) against the study's naive loop, tiny local Qwen2.5-VL on CPU.

Workload: 200 demo-world test questions (ROUNDS rounds of 50) x shots 1-4 x 7 systems = 5,600 cells:
the random baseline and 6 checkpoints of which only 3 are distinct selectors,
each saved for two consecutive epochs (as a converged lineage is: consecutive
epochs that select the same ICDs). Checkpoints choose from 64-candidate
RandSampler pools.

  evaluator  `evaluate(params, ctx)`: one selection at max(shots) per system,
             identical prompts answered once through the sqlite answer cache,
             misses generated in length-sorted batches of 16, each prompt's KV
             shared by its beams, prefix and vision-feature caches. Fresh caches.
  naive      the study's way: for every (system, shot, question) one
             `generate([request])` call on the same weights with plain generate
             and no cache of any kind, so the naive count is
             systems x shots x questions LVLM calls.

The naive loop would take long on 2 shared cores, so it is TIMED ON A SAMPLE
(SAMPLE_PER_SHOT cells per shot, drawn from the evaluator's own cells) and
extrapolated per shot: naive time = sum over shots of mean time x cells of that shot.
The two alternate, ROUNDS times (each round a fresh run folder with its own 50 questions:
the evaluator first, then its sample of the loop), and the median of the rounds' ratios is
reported, so a change of machine load between two timings cannot decide it; the ratio of
this process's CPU time (which other processes' load barely moves) is printed too. Both
run in the same process after the model is loaded and warmed up. LAST line:

    speedup: <ratio>x (cached+batched vs naive, median of N interleaved rounds)
"""

from __future__ import annotations

import random
import shutil
import statistics
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
SAMPLE_PER_SHOT = 8  # a round's naive cells per shot
ROUNDS = 4  # each on its own N_QUESTIONS / ROUNDS questions
SEED = 0
THREADS = 1  # as bench_lvlm_batching: 2 threads on a shared, busy CPU run up to 10x slower (OpenMP waits)


def make_params(work: Path, name: str = "bench_eval", part: int = 0):
    """A round's run: its own N_QUESTIONS / ROUNDS questions (a seeded draw: round `part`'s)."""
    from icl_kit.core.config import load_params

    return load_params(None, {
        "run_name": name, "runs_dir": str(work), "seed": SEED, "eval.seed": SEED + part,
        "data.root": str(work / "data"), "data.demo": True, "data.demo_train": N_POOL,
        "data.demo_test": N_QUESTIONS, "encoder.backend": "simple", "encoder.dim": EMB_DIM,
        "selector.input_dim": EMB_DIM, "selector.hidden_dim": HIDDEN,
        "lvlm.backend": "qwen", "lvlm.model": str(TINY_QWEN), "lvlm.device": "cpu",
        "lvlm.batch_size": BATCH, "lvlm.qwen.max_pixels": MAX_PIXELS,
        "eval.systems": ["random", "checkpoints/*.pt"], "eval.shots": SHOTS,
        "eval.questions": "random", "eval.n": N_QUESTIONS // ROUNDS,
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


def study_backend(lvlm):
    """The study's path on the same weights: one prompt at a time, plain generate, no cache of any kind."""
    from dataclasses import replace

    from icl_kit.core.config import QwenConfig
    from icl_kit.lvlm.qwen import QwenLVLM

    cfg = replace(lvlm.cfg, batch_size=1, shared_prefill="off",
                  qwen=QwenConfig(max_pixels=MAX_PIXELS, vision_cache_mb=0, prefix_cache_mb=0))
    return QwenLVLM(cfg, model=lvlm.model, processor=lvlm.processor)


def time_naive(study, records, rows: list[dict], rng: random.Random) -> tuple[float, float, int, int]:
    """(extrapolated seconds, extrapolated CPU seconds of this process, cells timed, answers equal to the
    evaluator's) for one-at-a-time calls on a sample of SAMPLE_PER_SHOT cells of each shot."""
    from icl_kit.lvlm.base import Request

    by_shot: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_shot[r["shot"]].append(r)
    total, cpu, timed, same = 0.0, 0.0, 0, 0
    for _, cells in sorted(by_shot.items()):
        sample = rng.sample(cells, SAMPLE_PER_SHOT)
        start, start_cpu = time.perf_counter(), time.process_time()
        for r in sample:
            req = Request(icds=tuple(records[i] for i in r["icd_ids"]), query=records[r["question_id"]])
            same += study.generate([req])[0].answer == r["pred"]
        total += (time.perf_counter() - start) / len(sample) * len(cells)
        cpu += (time.process_time() - start_cpu) / len(sample) * len(cells)
        timed += len(sample)
    return total, cpu, timed, same


def main() -> int:
    from icl_kit.core.runs import read_jsonl
    from icl_kit.evaluation.runner import evaluate
    from icl_kit.run_context import RunContext

    torch.set_num_threads(THREADS)
    rng = random.Random(SEED)
    ratios, timed, same, calls, cells, cpu = [], 0, 0, 0, 0, [0.0, 0.0]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(ROUNDS):  # evaluator and loop alternate: a change of load hits both within a round
            params = make_params(Path(tmp), f"bench_eval_{r}", r)  # a fresh run folder: an empty answer cache
            write_checkpoints(params.run_dir / "checkpoints")
            ctx = RunContext.build(params)
            world, service = ctx.world, ctx.answer_service()
            _ = world.pools, world.embeddings  # world set-up, not part of either way
            warm = [(q.question_id, ()) for q in world.test_records[:BATCH]]
            service.lvlm.generate([service.request(k) for k in warm])  # load + warm the model
            for cache in (service.lvlm.vision_cache, service.lvlm.prefix_cache):  # the evaluation starts empty
                cache.entries.clear()
                cache.bytes = 0
            start, start_cpu = time.perf_counter(), time.process_time()
            res = evaluate(params, ctx=ctx, progress=False)
            ours, ours_cpu = time.perf_counter() - start, time.process_time() - start_cpu
            rows = read_jsonl(res.predictions)
            naive_calls = len(res.systems) * len(SHOTS) * res.n_questions
            assert res.cells == len(rows) == naive_calls, (res.cells, len(rows), naive_calls)
            naive, naive_cpu, n, ok = time_naive(study_backend(service.lvlm), world.records, rows, rng)
            timed, same, calls, cells = timed + n, same + ok, calls + res.calls, cells + res.cells
            cpu = [cpu[0] + ours_cpu, cpu[1] + naive_cpu]
            ratios.append(naive / ours)
            print(f"  round {r + 1}: evaluator {ours:.1f} s, naive {naive:.1f} s (extrapolated from {n} cells): "
                  f"{naive / ours:.2f}x; CPU time of this process {naive_cpu / ours_cpu:.2f}x", flush=True)
    print(f"systems: {len(res.systems)} (random + {N_DISTINCT * COPIES} checkpoints, {N_DISTINCT} distinct), "
          f"shots {SHOTS}, {ROUNDS} x {res.n_questions} questions, tiny Qwen2.5-VL on CPU, {THREADS} thread")
    print(f"LVLM calls: {calls} made vs {cells} naive (systems x shots x questions): {cells / calls:.2f}x fewer")
    print(f"naive answers equal to the evaluator's on {same}/{timed} sampled cells (batching round-off aside)")
    print(f"CPU time of this process, all rounds: evaluator {cpu[0]:.1f} s, naive {cpu[1]:.1f} s "
          f"(extrapolated): {cpu[1] / cpu[0]:.2f}x")
    print(f"speedup: {statistics.median(ratios):.1f}x (cached+batched vs naive, wall time, median of {ROUNDS} "
          "interleaved rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
