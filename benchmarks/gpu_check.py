"""Agreement on a device: batched against one at a time, cached against uncached, in bf16 and fp32 (gpu_check.sh).

For each model (the tiny fixture checkpoint; with `--big`, Qwen2.5-VL-3B's architecture with random weights from
benchmarks/qwen2_5_vl_3b_config.json, as bench_gpu_lvlm.py builds it) and each dtype, prompts at shots 1-4 go
through four backends:

    kit       batch 16, each prompt's KV shared by its beams and answers, prefix and vision-feature caches
    uncached  batch 16, shared KV, no prefix or vision cache
    alone     batch 1, the kit's caches
    study     batch 1, plain generate, one forward per (prompt, answer), no cache

and each is asked for its answers and for the scores of two answers per prompt. Written to `--json`: per model and
dtype, how many answers of kit / uncached / alone equal the study's, the largest |difference| of a summed log p
from the study's (absolute, and relative to the score), each backend's seconds and work counts
(icl_kit.lvlm.work). Random weights answer nonsense; what is measured is whether the paths agree.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
TINY_QWEN = ROOT / "tests" / "fixtures" / "tiny-qwen2.5-vl"
ANSWERS = ["two dogs", "a large white bus"]
BACKENDS = {"kit": (16, "on", True), "uncached": (16, "on", False), "alone": (1, "on", True),
            "study": (1, "off", False)}


def requests_for(folder: Path, n_questions: int, coco: bool) -> list:
    from bench_gpu_lvlm import coco_sized_requests

    from icl_kit.data.demo.world import build_demo_world
    from icl_kit.data.okvqa import load_split
    from icl_kit.lvlm.base import Request

    if coco:
        return coco_sized_requests(folder, n_questions)
    root = build_demo_world(folder, n_train=60, n_test=max(n_questions, 10), seed=0)
    pool, test = load_split(root, "train"), sorted(load_split(root, "val"), key=lambda r: r.question_id)
    rng = random.Random(0)
    out = []
    for q in test[:n_questions]:
        icds = tuple(rng.sample(pool, 4))
        out += [Request(icds[:k], q) for k in range(1, 5)]
    return out


def backend(model, processor, device, dtype: str, batch: int, prefill: str, caches: bool, big: bool):
    from icl_kit.core.config import LVLMConfig, QwenConfig
    from icl_kit.lvlm.qwen import QwenLVLM

    mb = {} if caches else {"vision_cache_mb": 0, "prefix_cache_mb": 0}
    pixels = {"min_pixels": None, "max_pixels": None} if big else {"max_pixels": 28 * 28 * 16}
    cfg = LVLMConfig(model=str(TINY_QWEN), device=str(device), dtype=dtype, batch_size=batch, shared_prefill=prefill,
                     qwen=QwenConfig(**pixels, **mb))
    return QwenLVLM(cfg, model=model, processor=processor)


def compare(model, processor, device, dtype: str, requests: list, big: bool) -> dict:
    reqs = [r for r in requests for _ in ANSWERS]
    answers = [a for _ in requests for a in ANSWERS]
    out, got = {}, {}
    for name, (batch, prefill, caches) in BACKENDS.items():
        lvlm = backend(model, processor, device, dtype, batch, prefill, caches, big)
        start = time.perf_counter()
        got[name] = ([g.text for g in lvlm.generate(requests)], lvlm.score(reqs, answers))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out[name] = {"seconds": round(time.perf_counter() - start, 2), "work": lvlm.work.as_dict()}
    texts, scores = got["study"]
    for name in ("kit", "uncached", "alone"):
        t, s = got[name]
        diff = [abs(a.sum_logprob - b.sum_logprob) for a, b in zip(s, scores, strict=True)]
        rel = [d / max(1.0, abs(b.sum_logprob)) for d, b in zip(diff, scores, strict=True)]
        out[name] |= {"answers_equal_study": sum(a == b for a, b in zip(t, texts, strict=True)),
                      "max_abs_logp_diff": max(diff), "max_rel_logp_diff": max(rel)}
    out["n_prompts"], out["n_scores"] = len(requests), len(reqs)
    return out


def main() -> int:
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--questions", type=int, default=8, help="questions; prompts = 4x this")
    ap.add_argument("--big", action="store_true", help="also Qwen2.5-VL-3B's architecture (random weights)")
    ap.add_argument("--dtypes", default="bfloat16,float32")
    args = ap.parse_args()
    device = torch.device(args.device)
    processor = AutoProcessor.from_pretrained(TINY_QWEN)
    processor.tokenizer.padding_side = "left"
    record: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"}
    with tempfile.TemporaryDirectory() as tmp:
        models = [("tiny", False)] + ([("qwen2.5-vl-3b-architecture", True)] if args.big else [])
        for name, big in models:
            requests = requests_for(Path(tmp) / name, args.questions, coco=big)
            for dtype in args.dtypes.split(","):
                if big:
                    from bench_gpu_lvlm import CONFIG, build_model

                    model = build_model(CONFIG, device, getattr(torch, dtype))
                else:
                    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                        TINY_QWEN, dtype=getattr(torch, dtype)).to(device).eval()
                record.setdefault(name, {})[dtype] = compare(model, processor, device, dtype, requests, big)
                del model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                args.json.write_text(json.dumps(record, indent=1))  # what is done survives a timeout
                print(f"gpu_check: {name} {dtype}: " + ", ".join(
                    f"{k} {v['answers_equal_study']}/{len(requests)} answers, |dlogp| <= {v['max_abs_logp_diff']:.2e}"
                    for k, v in record[name][dtype].items() if isinstance(v, dict) and "max_abs_logp_diff" in v),
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
