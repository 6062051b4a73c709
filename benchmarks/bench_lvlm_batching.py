"""Batched vs one-at-a-time generation with the tiny local Qwen2.5-VL on CPU.

64 demo-world test questions x shots 1-4 with random ICDs (shot k = first k of one draw
of 4), generated with batch 16 (length-sorted, left-padded) and with batch 1. Asserts
the answers are identical, and prints the speedup as the LAST line:

    speedup: <ratio>x (batch 16 vs batch 1)

Reference: batch 1 in the same run, same requests, after one warm-up batch; the best of
ROUNDS alternating rounds counts (the CPUs are shared). Batch 16 in request order
(shots 1-4 of 4 questions per batch, lengths mixed) is printed too.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TINY_QWEN = ROOT / "tests" / "fixtures" / "tiny-qwen2.5-vl"
N_QUESTIONS = 64
MAX_SHOTS = 4
BATCH = 16
MAX_PIXELS = 28 * 28 * 16  # small images: the demo world's 96 px images stay 84 px
SEED = 0
THREADS = 1  # torch threads (--threads): the tiny ops gain little from 2, and 2 threads on a
# shared, busy CPU run up to 10x slower (OpenMP waits), which swamps the comparison
ROUNDS = 3  # alternate batch 16 / batch 1 rounds; the best time of each counts (shared CPUs)


def build_requests(data_root: Path) -> list:
    from icl_kit.data.demo.world import build_demo_world
    from icl_kit.data.okvqa import load_split
    from icl_kit.lvlm.base import Request

    build_demo_world(data_root, n_train=200, n_test=N_QUESTIONS, seed=SEED)
    pool = load_split(data_root, "train")
    test = sorted(load_split(data_root, "val"), key=lambda r: r.question_id)[:N_QUESTIONS]
    rng = random.Random(SEED)
    requests = []
    for q in test:
        icds = tuple(rng.sample(pool, MAX_SHOTS))
        requests += [Request(icds[:k], q) for k in range(1, MAX_SHOTS + 1)]
    return requests


def timed_generate(lvlm, requests: list, batch_size: int) -> tuple[list, float]:
    lvlm.cfg.batch_size = batch_size
    start = time.perf_counter()
    out = lvlm.generate(requests)
    return out, time.perf_counter() - start


def timed_unsorted(lvlm, requests: list) -> tuple[list, float]:
    """Batch 16 in request order (no length sorting): what sorting saves in padding."""
    from icl_kit.lvlm.qwen import run_in_batches

    lvlm.cfg.batch_size = BATCH
    start = time.perf_counter()
    out = run_in_batches([(i, lvlm.prepare(r)) for i, r in enumerate(requests)], BATCH,
                         lvlm._generate_batch)
    return out, time.perf_counter() - start


def main() -> int:
    from icl_kit.core.config import LVLMConfig, QwenConfig
    from icl_kit.lvlm.qwen import QwenLVLM

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=THREADS, help=f"torch threads (default {THREADS})")
    threads = parser.parse_args().threads
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        requests = build_requests(Path(tmp) / "demo")
        cfg = LVLMConfig(model=str(TINY_QWEN), device="cpu", dtype="float32", qwen=QwenConfig(max_pixels=MAX_PIXELS),
                         batch_size=BATCH)
        lvlm = QwenLVLM(cfg)
        lvlm.generate(requests[:BATCH])  # warm-up: first-call allocations and lazy imports
        times: dict[str, list[float]] = {"sorted": [], "unsorted": [], "single": []}
        for _ in range(ROUNDS):
            batched, t = timed_generate(lvlm, requests, BATCH)
            times["sorted"].append(t)
            unsorted, t = timed_unsorted(lvlm, requests)
            times["unsorted"].append(t)
            single, t = timed_generate(lvlm, requests, 1)
            times["single"].append(t)
    best = {k: min(v) for k, v in times.items()}
    t_batched, t_single = best["sorted"], best["single"]
    differ = [i for i, (a, b) in enumerate(zip(batched, single, strict=True)) if a != b]
    differ += [i for i, (a, b) in enumerate(zip(unsorted, single, strict=True)) if a != b.text]
    print(f"requests: {len(requests)} ({N_QUESTIONS} questions x shots 1-{MAX_SHOTS}), "
          f"torch threads {threads}")
    labels = {"sorted": f"batch {BATCH} (length-sorted)", "unsorted": f"batch {BATCH} (request order)",
              "single": "batch 1"}
    for key, label in labels.items():
        rounds = ", ".join(f"{x:.2f}" for x in times[key])
        print(f"{label}: best {best[key]:.2f} s ({len(requests) / best[key]:.1f} prompts/s); "
              f"rounds: {rounds} s")
    print(f"unsorted speedup: {t_single / best['unsorted']:.2f}x (batch {BATCH} in request order vs batch 1)")
    print(f"answers differing from batch 1: {len(differ)}")
    if differ:
        print(f"FAILED: batched answers differ at request indices {differ[:10]}", file=sys.stderr)
        return 1
    print(f"speedup: {t_single / t_batched:.2f}x (batch {BATCH} vs batch 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
