"""The demo world's LVLM workload through the kit against the study's loop, counted in Qwen2.5-VL-3B FLOPs.

Workload (the demo world, whose LVLM is a simulator: it decides the answers and scores, so both sides walk the
same beam search; nothing here depends on a machine's speed):
  beams       InfoScore beam search (icl_kit.train.sft_data) for 200 training queries x pools of 64 x 2 shots,
              beam 3 (sft_data defaults otherwise: construct_order left, the most frequent answer);
  evaluation  6 checkpoints (3 distinct selectors, each saved for two epochs, as in bench_eval.py) x shots 1-4
              x 200 test questions: each selector's 4 ICDs per question drawn from the question's 64-candidate
              pool, shot k = the first k, asked in the evaluator's order (system, question, shot; chunks of 128).

  kit         the answer cache (rewards.sqlite), length-sorted batches of 16, each prompt's KV shared by its
              beams and answers, the prefix cache and the vision-feature cache (their default sizes);
  study       the study's loop: every prompt from scratch, one at a time, no answer cache, no image cache, no
              prefix reuse (beams: each beam's own P recomputed, one score per call, as in bench_sft_data.py;
              evaluation: one generate per cell).

Both sides count what the Qwen backend would compute with `QwenWorkModel` (icl_kit.lvlm.work_model): the
backend's own prompt preparation, batching, prefix and image-cache decisions at Qwen2.5-VL-3B's size
(benchmarks/qwen2_5_vl_3b_config.json; bf16 KV and features), every image COCO-sized (640 x 480: 234 tokens
at the kit's pixel budget, the same on both sides), text tokenized by the tiny fixture's tokenizer (a few
tokens more than Qwen's), 3 beams x 5 new tokens. FLOPs: icl_kit.lvlm.work.flops. Prints both sides'
prompts and FLOPs per part, the images each side's image processor handles (the pixel cache's decisions,
modelled the same way), then as the LAST line

    flops ratio: <ratio>x (kit vs the study's loop, Qwen2.5-VL-3B FLOPs)

About 3 minutes on one CPU core (no model runs; the time is prompt preparation).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

from bench_sft_data import naive_search  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "qwen2_5_vl_3b_config.json"
TINY_QWEN = ROOT / "tests" / "fixtures" / "tiny-qwen2.5-vl"  # its processor (chat template, tokenizer) only
N_QUERIES, POOL, SHOTS, BEAM = 200, 64, 2, 3
N_QUESTIONS, EVAL_SHOTS, N_DISTINCT, COPIES, EVAL_CHUNK = 200, 4, 3, 2, 128
COCO = (640, 480)
SEED = 0


def work_model(inner, processor, kit: bool, sizes: dict[str, int | None]):
    """The work model of the kit's defaults (batch 16, shared KV, both caches; `sizes` overrides the caches'
    MiB) or of the study's loop."""
    from icl_kit.core.config import LVLMConfig, QwenConfig
    from icl_kit.lvlm.work_model import QwenWorkModel

    qwen = QwenConfig() if kit else QwenConfig(vision_cache_mb=0, prefix_cache_mb=0)
    for key, mb in sizes.items():
        if kit and mb is not None:
            setattr(qwen, key, mb)
    cfg = LVLMConfig(batch_size=16, shared_prefill="on", qwen=qwen) if kit else \
        LVLMConfig(batch_size=1, shared_prefill="off", qwen=qwen)
    return QwenWorkModel(inner, cfg, processor, json.loads(CONFIG.read_text()), dtype_bytes=2, image_size=COCO)


def eval_cells(test: list, pools: dict[int, list[int]]) -> list[tuple[int, tuple[int, ...]]]:
    """(question, ICD ids) per cell in the evaluator's order (icl_kit.evaluation.runner.plan_cells): system,
    question, shot."""
    cells = []
    for s in range(N_DISTINCT * COPIES):
        rng = random.Random(SEED + s // COPIES)  # two epochs of one selector select alike
        selection = {r.question_id: rng.sample(pools[r.question_id], EVAL_SHOTS) for r in test}
        cells += [(r.question_id, tuple(selection[r.question_id][:shot])) for r in test
                  for shot in range(1, EVAL_SHOTS + 1)]
    return cells


def line(name: str, work, arch) -> str:
    from icl_kit.lvlm.work import flops

    f = flops(work, arch)
    return (f"  {name:<26} {work.prompts:>7,} prompts {work.images:>8,} images ({work.images_encoded:>7,} encoded) "
            f"{work.prefill_tokens / 1e6:7.2f}M prefill {work.prefix_tokens_reused / 1e6:6.2f}M reused | "
            f"{f['total'] / 1e15:8.1f} PFLOP (vision {f['vision'] / 1e15:.1f}, LM {f['llm'] / 1e15:.1f}, "
            f"head {f['lm_head'] / 1e15:.1f})")


def main() -> int:
    from transformers import AutoProcessor

    from icl_kit.core.config import LVLMConfig, SFTDataConfig
    from icl_kit.data.demo.world import build_demo_world
    from icl_kit.data.okvqa import load_split
    from icl_kit.lvlm.answers import AnswerService
    from icl_kit.lvlm.base import Request
    from icl_kit.lvlm.simulated import make_simulated
    from icl_kit.lvlm.work import QWEN2_5_VL_3B, flops
    from icl_kit.selection.pools import rand_pools
    from icl_kit.train.sft_data import build_sft_data

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=N_QUERIES, help="beam-search queries (and test questions)")
    ap.add_argument("--order", choices=["left", "right"], default="left", help="sft_data.construct_order")
    ap.add_argument("--prefix-mb", type=int, default=None, help="the kit's lvlm.qwen.prefix_cache_mb (default: its)")
    ap.add_argument("--vision-mb", type=int, default=None, help="the kit's lvlm.qwen.vision_cache_mb (default: its)")
    ap.add_argument("--chunk", type=int, default=None, help="sft_data.chunk (default: its)")
    args = ap.parse_args()
    processor = AutoProcessor.from_pretrained(TINY_QWEN)
    sft = SFTDataConfig(beam_size=BEAM, max_shots=SHOTS, construct_order=args.order)
    if args.chunk:
        sft.chunk = args.chunk
    sizes = {"prefix_cache_mb": args.prefix_mb, "vision_cache_mb": args.vision_mb}
    with tempfile.TemporaryDirectory() as tmp:
        root = build_demo_world(Path(tmp) / "demo", seed=SEED)
        train = sorted(load_split(root, "train"), key=lambda r: r.question_id)
        test = sorted(load_split(root, "val"), key=lambda r: r.question_id)[: args.queries]
        records = {r.question_id: r for r in (*train, *test)}
        pool_ids = [r.question_id for r in train]
        qids = pool_ids[: args.queries]
        pools = rand_pools([*qids, *(r.question_id for r in test)], pool_ids, size=POOL, seed=42)
        sim = make_simulated(LVLMConfig(backend="simulated"), root)
        kit, study = work_model(sim, processor, True, sizes), work_model(sim, processor, False, {})
        # the kit: beams through the answer cache, then the evaluation through the same cache
        service = AnswerService(kit, records, Path(tmp) / "rewards.sqlite", batch_size=16)
        build_sft_data(service, qids, pools, sft, Path(tmp) / "sft_data.jsonl", progress=False)
        kit_beams = kit.work - type(kit.work)()
        kit_processed = kit.images_processed
        cells = eval_cells(test, pools)
        for start in range(0, len(cells), EVAL_CHUNK):
            service.answers(cells[start : start + EVAL_CHUNK])
        kit_eval = kit.work - kit_beams
        # the study's loop
        for q in qids:
            naive_search(study, records, q, pools[q], sft)  # the study's loop (bench_sft_data)
        study_beams_work = study.work - type(study.work)()
        for q, icds in cells:
            study.generate([Request(tuple(records[i] for i in icds), records[q])])
        study_eval = study.work - study_beams_work
    arch = QWEN2_5_VL_3B
    total = {name: flops(w, arch)["total"] for name, w in
             (("kb", kit_beams), ("ke", kit_eval), ("sb", study_beams_work), ("se", study_eval))}
    print(f"bench_lvlm_work: {args.queries} queries x {POOL} candidates x {SHOTS} shots, beam {BEAM} "
          f"(construct_order {args.order}, chunk {sft.chunk}); evaluation {N_DISTINCT * COPIES} checkpoints "
          f"({N_DISTINCT} distinct) x shots 1-{EVAL_SHOTS} x {len(test)} questions; {COCO[0]}x{COCO[1]} images; "
          f"counted at {arch.name}'s size")
    print(f"  kit: batch 16, prefix cache {kit.cfg.qwen.prefix_cache_mb} MiB "
          f"({len(kit.prefix_cache)} blocks kept, {kit.prefix_cache.evictions:,} evicted), vision cache "
          f"{kit.cfg.qwen.vision_cache_mb} MiB ({kit.vision_cache.evictions:,} evicted)")
    print(line("kit, beams", kit_beams, arch))
    print(line("study's loop, beams", study_beams_work, arch))
    print(line("kit, evaluation", kit_eval, arch))
    print(line("study's loop, evaluation", study_eval, arch))
    print(f"  images through the image processor (resize, normalise, patch; CPU work in a GPU's critical path): "
          f"kit {kit.images_processed:,} (beams {kit_processed:,}), the study's loop {study.images_processed:,}")
    print(f"  beams: {total['sb'] / total['kb']:.2f}x fewer FLOPs, evaluation: {total['se'] / total['ke']:.2f}x; "
          f"prompts: {study.work.prompts:,} vs {kit.work.prompts:,} "
          f"({study.work.prompts / kit.work.prompts:.2f}x fewer)")
    print(f"flops ratio: {(total['sb'] + total['se']) / (total['kb'] + total['ke']):.2f}x "
          f"(kit vs the study's loop, {arch.name} FLOPs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
