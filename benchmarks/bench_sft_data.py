"""InfoScore beam data: cached and batched vs the study's one-score-at-a-time loop, tiny Qwen2.5-VL on CPU.

200 demo-world training queries x pools of 64 x 2 shots (beam `--beam`, default 2). The kit's path
(`icl_kit.train.sft_data.build_sft_data`: every step of a chunk of queries is one batched, length-sorted
request through the answer cache, each prompt's KV shared, prefix and vision-feature caches) against a
re-implementation of the study's loop (generate_data.py, docs/study.md, "InfoScore beam data") on the same
weights with no cache of any kind: for each query, each step, each beam, P(y | beam) and then P(y | [c] + beam)
for every candidate, one LVLM score at a time. The two alternate: the queries are split into `--rounds`
slices; each round builds its slice's beams through the kit (fresh caches) and then runs the loop on the
slice's first `--naive` queries (the beams found are compared); a round's ratio is the loop's time per query
over the kit's, and the median of the rounds is reported, so a change of machine load between two timings
cannot decide it. Prints the LVLM scores made against the unique prompts and the naive count, then as the LAST
line:

    speedup: <ratio>x (cached + batched vs one score at a time, median of N interleaved rounds)
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TINY_QWEN = ROOT / "tests" / "fixtures" / "tiny-qwen2.5-vl"
N_QUERIES, POOL, SHOTS, BEAM, N_NAIVE, ROUNDS = 200, 64, 2, 2, 2, 4
BATCH = 16
MAX_PIXELS = 28 * 28 * 16  # small images: the demo world's 96 px images stay 84 px
THREADS = 1  # as bench_lvlm_batching: 2 threads on a shared CPU swamp the comparison


def naive_search(lvlm, records, qid: int, pool: list[int], cfg) -> list[list[int]]:
    """The study's loop: one score per call, the beam's own P recomputed for each beam, no cache."""
    from icl_kit.lvlm.base import Request
    from icl_kit.train.infoscore import answer_weights, beam_rank_score, extend, info_score, top_beams

    weights = answer_weights(records[qid], cfg.answer)

    def prob(ids: tuple[int, ...]) -> float:
        req = Request(tuple(records[i] for i in ids), records[qid])
        return sum(w * math.exp(lvlm.score([req], [a])[0].sum_logprob) for a, w in weights.items())

    beams: list[tuple[tuple[int, ...], tuple[float, ...]]] = [((), ())]
    for _ in range(cfg.max_shots):
        children = []
        for pos, steps in beams:
            base = prob(tuple(pool[p] for p in pos))
            for j in range(len(pool)):
                if j not in pos:
                    new = extend(pos, j, cfg.construct_order)
                    children.append((new, (*steps, info_score(prob(tuple(pool[p] for p in new)), base, cfg.score))))
        ranks = [beam_rank_score(s, cfg.beam_score) for _, s in children]
        beams = [children[i] for i in top_beams(ranks, cfg.beam_size)]
    return [list(p) for p, _ in beams]


def study_backend(lvlm):
    """The study's path on the same weights: one prompt at a time, from scratch, no cache of any kind."""
    from dataclasses import replace

    from icl_kit.core.config import QwenConfig
    from icl_kit.lvlm.qwen import QwenLVLM

    cfg = replace(lvlm.cfg, batch_size=1, shared_prefill="off",
                  qwen=QwenConfig(max_pixels=MAX_PIXELS, vision_cache_mb=0, prefix_cache_mb=0))
    return QwenLVLM(cfg, model=lvlm.model, processor=lvlm.processor)


def main() -> int:
    from icl_kit.core.config import LVLMConfig, QwenConfig, SFTDataConfig
    from icl_kit.data.demo.world import build_demo_world
    from icl_kit.data.okvqa import load_split
    from icl_kit.lvlm.answers import AnswerService
    from icl_kit.lvlm.qwen import QwenLVLM
    from icl_kit.selection.pools import rand_pools
    from icl_kit.train.sft_data import build_sft_data, read_sft_data

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=N_QUERIES)
    ap.add_argument("--beam", type=int, default=BEAM)
    ap.add_argument("--naive", type=int, default=N_NAIVE, help="queries the one-at-a-time loop is timed on, a round")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="rounds (kit, then loop) over slices of the queries")
    ap.add_argument("--threads", type=int, default=THREADS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = SFTDataConfig(beam_size=args.beam, max_shots=SHOTS)
    ratios, n_scores, same, cpu = [], 0, [], [0.0, 0.0]  # CPU seconds a query: kit, loop (summed over rounds)
    with tempfile.TemporaryDirectory() as tmp:
        root = build_demo_world(Path(tmp) / "demo", n_train=max(args.queries, POOL + 1) + 40, n_test=10, seed=0)
        train = sorted(load_split(root, "train"), key=lambda r: r.question_id)
        records = {r.question_id: r for r in train}
        qids = [r.question_id for r in train[: args.queries]]
        pools = rand_pools(qids, list(records), size=POOL, seed=42)
        lvlm = QwenLVLM(LVLMConfig(model=str(TINY_QWEN), device="cpu", dtype="float32",
                                   qwen=QwenConfig(max_pixels=MAX_PIXELS), batch_size=BATCH, shared_prefill="on"))
        study = study_backend(lvlm)
        AnswerService(lvlm, records, None).scores([(qids[0], (), records[qids[0]].answer)])  # warm-up
        size = math.ceil(len(qids) / args.rounds)
        for r in range(args.rounds):  # kit and loop alternate: a change of load hits both within a round
            part = qids[r * size : (r + 1) * size]
            service = AnswerService(QwenLVLM(lvlm.cfg, model=lvlm.model, processor=lvlm.processor), records,
                                    Path(tmp) / f"cache{r}.sqlite", batch_size=BATCH)  # fresh caches
            out = Path(tmp) / f"sft_data{r}.jsonl"
            start, start_cpu = time.perf_counter(), time.process_time()
            stats = build_sft_data(service, part, pools, cfg, out, progress=False)
            kit = (time.perf_counter() - start) / len(part)
            cpu[0] += (time.process_time() - start_cpu) / len(part)
            n_scores += stats.score_calls
            lines = read_sft_data(out)
            start, start_cpu = time.perf_counter(), time.process_time()
            same += [naive_search(study, records, q, pools[q], cfg) == [b["positions"] for b in lines[q]["beams"]]
                     for q in part[: args.naive]]
            loop = (time.perf_counter() - start) / len(part[: args.naive])
            cpu[1] += (time.process_time() - start_cpu) / len(part[: args.naive])
            ratios.append(loop / kit)
            print(f"  round {r + 1}: kit {kit:.2f} s/query ({len(part)} queries), loop {loop:.2f} s/query "
                  f"({len(part[: args.naive])} queries): {loop / kit:.2f}x", flush=True)
        again = AnswerService(lvlm, records, Path(tmp) / "cache0.sqlite", batch_size=BATCH)
        out.unlink()
        rerun = build_sft_data(again, qids[:size], pools, cfg, out, progress=False)
    unique = len(qids) * (1 + POOL + args.beam * (POOL - 1) * (SHOTS - 1))  # (), singles, each beam's children
    naive = len(qids) * (1 + POOL + args.beam * POOL * (SHOTS - 1))  # + each beam's own P, every step
    print(f"{len(qids)} queries x {POOL} candidates x {SHOTS} shots, beam {args.beam}, batch {BATCH}, "
          f"torch threads {args.threads}, {args.rounds} rounds")
    print(f"kit: {n_scores} LVLM scores (unique prompts {unique}); a re-run on a round's cache: {rerun.score_calls} "
          f"scores; the study's loop: {naive} LVLM scores")
    # batch-1 and padded-batch scores differ by float rounding, which may swap near-tied children
    print(f"same beams as the loop on {sum(same)}/{len(same)} timed queries")
    print(f"CPU time of this process a query, summed over rounds: kit {cpu[0]:.2f} s, loop {cpu[1]:.2f} s: "
          f"{cpu[1] / cpu[0]:.2f}x")
    if n_scores > unique:
        print(f"FAILED: {n_scores} LVLM scores for {unique} unique prompts", file=sys.stderr)
        return 1
    print(f"speedup: {statistics.median(ratios):.2f}x (cached + batched vs one score at a time, median of "
          f"{len(ratios)} interleaved rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
