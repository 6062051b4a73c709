"""GPU throughput of Qwen2.5-VL-3B's architecture: the study's one-at-a-time path vs the kit's (batched, caches).

Needs no download: the model is built from benchmarks/qwen2_5_vl_3b_config.json (the checkpoint's
config.json; random weights, bf16) and prompts are made with the tiny fixture's processor (same
image processing, a smaller tokenizer: texts are a few more tokens than with Qwen's; the image
tokens, most of every prompt, are exact). Images are COCO-sized (640 x 480: 391 tokens each with
qwen-vl-utils' default budget, as in the study); prompts are N_QUESTIONS questions x shots 1-4.
min_new_tokens = max_new_tokens, so every configuration decodes the same number of steps.

Measured (prompts per second, peak CUDA memory), after one warm-up batch each:
  1. batch 1, plain generate, no cache (the study's path);
  2. batch 16, each prompt's KV shared by its beams (the shared prefill), no prefix or vision-feature cache;
  3. batch 16 with the prefix and vision-feature caches (the kit's default: a question's 4 prompts show 5
     distinct images 14 times, and shot k's prompt starts with shot k-1's ICDs), and the work it counted
     (icl_kit.lvlm.work);
  4. the largest batch that fits (doubling from 16 on the longest prompts), with the caches.
Prints the GPU name and the numbers, and as the LAST line
    speedup: <ratio>x (batched+caches vs study path)
(the kit's default, row 3, against row 1). `--json PATH` also writes the figures there (gpu_check.sh).
Without CUDA it prints one line saying it was skipped and exits 0 (`--device cpu` with
`--config tests/fixtures/tiny-qwen2.5-vl/config.json` runs the same code on CPU as a smoke check).
About 2-3 minutes on one H100-class GPU.
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
CONFIG = ROOT / "benchmarks" / "qwen2_5_vl_3b_config.json"
TINY_QWEN = ROOT / "tests" / "fixtures" / "tiny-qwen2.5-vl"  # its processor only
N_QUESTIONS = 32
MAX_SHOTS = 4
COCO_SIZE = (640, 480)
BATCH = 16
MAX_PROBE_BATCH = 512
NUM_BEAMS, NEW_TOKENS = 3, 5  # the study's decoding length and beams
TOKEN_ID_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
SEED = 0


def coco_sized_requests(folder: Path, n_questions: int, size: tuple[int, int] = COCO_SIZE) -> list:
    """Demo-world questions with their images re-saved at COCO size; shot k = first k of one draw of 4."""
    from PIL import Image

    from icl_kit.data.demo.world import build_demo_world
    from icl_kit.data.okvqa import load_split
    from icl_kit.lvlm.base import Request

    root = build_demo_world(folder, n_train=200, n_test=max(n_questions, 10), seed=SEED)
    pool, test = load_split(root, "train"), sorted(load_split(root, "val"), key=lambda r: r.question_id)
    for r in pool + test:
        Image.open(r.image_path).convert("RGB").resize(size).save(r.image_path, quality=90)
    rng = random.Random(SEED)
    requests = []
    for q in test[:n_questions]:
        icds = tuple(rng.sample(pool, MAX_SHOTS))
        requests += [Request(icds[:k], q) for k in range(1, MAX_SHOTS + 1)]
    return requests


def build_model(config_path: Path, device: torch.device, dtype: torch.dtype = torch.bfloat16):
    """The architecture of `config_path`, random weights, bf16, its special token ids set to the processor's."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from icl_kit.lvlm.qwen_loading import resolve_attn

    config = Qwen2_5_VLConfig.from_json_file(str(config_path))
    tiny = json.loads((TINY_QWEN / "config.json").read_text())
    for key in TOKEN_ID_KEYS:
        setattr(config, key, tiny[key])
    torch.manual_seed(SEED)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation=resolve_attn("auto", device))
    return model.eval()


def make_lvlm(model, processor, device: torch.device, batch_size: int, prefill: bool, caches: bool = True,
              dtype: str = "bfloat16"):
    from icl_kit.core.config import GenerationConfig, LVLMConfig, QwenConfig
    from icl_kit.lvlm.qwen import QwenLVLM

    sizes = {} if caches else {"vision_cache_mb": 0, "prefix_cache_mb": 0}  # True: the defaults
    cfg = LVLMConfig(model=str(TINY_QWEN), device=str(device), dtype=dtype, batch_size=batch_size,
                     shared_prefill="on" if prefill else "off",
                     qwen=QwenConfig(min_pixels=None, max_pixels=None, **sizes),
                     generation=GenerationConfig(num_beams=NUM_BEAMS, max_new_tokens=NEW_TOKENS,
                                                 min_new_tokens=NEW_TOKENS))
    return QwenLVLM(cfg, model=model, processor=processor)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(lvlm, requests: list, device: torch.device) -> tuple[float, float | None]:
    """(prompts per second, peak memory in GiB or None on CPU) of answering `requests`, after a warm-up."""
    lvlm.generate(requests[: lvlm.cfg.batch_size])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    lvlm.generate(requests)
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return len(requests) / seconds, peak


def largest_batch(lvlm, requests: list, limit: int) -> int:
    """Largest batch (BATCH doubled) of the longest prompts that decodes without running out of memory."""
    longest = sorted((lvlm.prepare(r) for r in requests), key=lambda p: p.length)[-1]
    best, size = 0, BATCH
    while size <= limit:
        try:
            lvlm._generate_batch([(i, longest) for i in range(size)])
        except torch.OutOfMemoryError:
            break
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        best, size = size, size * 2
    return best


def row(name: str, rate: float, peak: float | None) -> str:
    mem = f"{peak:6.1f} GiB" if peak is not None else "   n/a"
    return f"  {name:<48} {rate:8.2f} prompts/s   peak {mem}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke check of this script)")
    parser.add_argument("--config", type=Path, default=CONFIG, help="model config.json (default: Qwen2.5-VL-3B's)")
    parser.add_argument("--questions", type=int, default=N_QUESTIONS, help="questions; prompts = 4x this")
    parser.add_argument("--max-batch", type=int, default=MAX_PROBE_BATCH, help="largest batch size probed")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--image-size", default="640x480", help="WxH of every image (default: COCO's)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        from icl_kit.core.devices import cuda_problem

        print(f"bench_gpu_lvlm: skipped, no usable CUDA device ({cuda_problem()}).")
        return 0
    from transformers import AutoProcessor

    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    processor = AutoProcessor.from_pretrained(TINY_QWEN)
    processor.tokenizer.padding_side = "left"
    model = build_model(args.config, device, getattr(torch, args.dtype))
    size = tuple(int(x) for x in args.image_size.split("x"))
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        requests = coco_sized_requests(Path(tmp) / "demo", args.questions, size)
        study = make_lvlm(model, processor, device, 1, prefill=False, caches=False, dtype=args.dtype)
        batched = make_lvlm(model, processor, device, BATCH, prefill=True, caches=False, dtype=args.dtype)
        fast = make_lvlm(model, processor, device, BATCH, prefill=True, dtype=args.dtype)
        lengths = sorted(study.prepare(r).length for r in requests)
        print(f"bench_gpu_lvlm: {name}; {args.config.name} ({n_params:,.0f}M parameters, random, {args.dtype}, "
              f"{model.config._attn_implementation}); torch {torch.__version__}")
        print(f"  {len(requests)} prompts (shots 1-{MAX_SHOTS}, {size[0]}x{size[1]} images), "
              f"{lengths[0]}-{lengths[-1]} tokens; beams {NUM_BEAMS}, {NEW_TOKENS} new tokens")
        figures = {"device": name, "config": args.config.name, "prompts": len(requests), "rows": {}}

        def report(label: str, rate: float, peak: float | None) -> None:
            print(row(label, rate, peak), flush=True)
            figures["rows"][label] = {"prompts_per_s": rate, "peak_gib": peak}

        study_rate, study_peak = timed(study, requests, device)
        report("batch 1, plain generate (study path)", study_rate, study_peak)
        report(f"batch {BATCH}, shared prefill, no caches", *timed(batched, requests, device))
        fast_rate, fast_peak = timed(fast, requests, device)
        report(f"batch {BATCH}, shared KV, prefix + vision caches", fast_rate, fast_peak)
        print(f"  work of that row (warm-up included): {fast.work.describe()}", flush=True)
        figures["kit_work"] = fast.work.as_dict()
        best = largest_batch(fast, requests, args.max_batch)
        what = "the probe's limit, --max-batch" if best * 2 > args.max_batch else "largest that fits"
        figures["largest_batch"] = best
        if best > BATCH:
            big = make_lvlm(model, processor, device, best, prefill=True, dtype=args.dtype)
            report(f"batch {best} ({what}), caches", *timed(big, requests * max(1, best // len(requests)), device))
        else:
            print(f"  largest batch that fits on the longest prompt: {best or 'below ' + str(BATCH)}")
    figures["speedup"] = fast_rate / study_rate
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    print(f"speedup: {fast_rate / study_rate:.2f}x (batched+caches vs study path)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
