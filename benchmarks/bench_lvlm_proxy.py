"""Wall-clock: the kit against the study's loop on a FLOP-proportional proxy of Qwen2.5-VL-3B, on CPU.

The proxy (benchmarks/make_proxy_qwen.py, built into `--proxy`, by default icl_kit-proxy-qwen2.5-vl-3b in the system
temp folder, when missing): random weights, a 2-layer 256-wide language model and a 4-block 96-wide vision tower
whose FLOPs per merged image token over the language model's per token are within 1% of the 3B's, and the 3B's patch
and merge sizes, so a COCO-sized image (every demo-world image is resized to 640 x 480, as bench_lvlm_work.py
assumes) is 234 image tokens at the kit's pixel budget: the vision tower's share of the FLOPs is the 3B's. Per
round, each workload is timed on the same cells on both sides:

  beams       InfoScore beam search, `--queries` demo-world training queries (default 1) x pools of 64 x 2 shots,
              beam 3 (sft_data defaults otherwise): the kit's `build_sft_data` through a fresh answer cache
              (batches of 16, each prompt's KV shared, prefix and vision-feature caches at their default sizes)
              against the study's loop, `naive_search` of bench_sft_data.py (one score per call, each beam's own
              P recomputed, batch 1, no cache), 257 scores a query. Fewer queries than bench_lvlm_work.py's 200:
              the loop takes about 35 s a query here.
  evaluation  6 checkpoints (3 distinct selectors, each saved for two epochs) x shots 1-4 x `--questions` test
              questions (default 3) as bench_lvlm_work.py's `eval_cells` draws them from 64-candidate pools: the
              kit's AnswerService.answers in chunks of 128 (a fresh answer cache, batch 16, shared KV, both caches)
              against one plain `generate` a cell (batch 1, no cache: every beam prefills the prompt), 72 cells.

Both sides run on the same weights in this process, 1 torch thread (as bench_sft_data.py: more on a shared CPU
swamp the comparison). The vision tower's patch embedding runs as the matmul it is (`matmul_patch_embed`;
`--conv3d` keeps transformers' Conv3d, which torch runs 3.6x slower on a CPU and which is 20% of the proxy's
vision FLOPs but 0.2% of the 3B's). Set-up prints the split measured in time (the vision tower's seconds per
merged token of one image over the language model's per token of an 820-token prompt, attention included)
next to the FLOP split. The resized-image cache of icl_kit.lvlm.qwen (by path) is emptied before each side, so
each pays its own image loading; within its side the study's loop keeps it, as in bench_sft_data.py and
bench_eval.py (generous to the loop). The sides alternate in `--rounds` rounds (default 3; odd rounds the
kit first, even rounds the loop first), each round on its own queries and questions, and the median of the
rounds' ratios is reported per workload, so a change of machine load between two timings cannot decide it.
Prints the rounds, the work both sides' backends counted in FLOPs at the 3B's and the proxy's size (what the
FLOPs allow), the CPU time of this process per side, and, as the LAST line:

    proxy speedup: beams <x>x, evaluation <y>x (kit vs the study's loop, FLOP-proportional Qwen2.5-VL-3B proxy,
    median of N interleaved rounds)

About 4-5 minutes on one core (the loop's beams are half of it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from bench_lvlm_work import COCO, EVAL_CHUNK, EVAL_SHOTS, N_DISTINCT, POOL, SHOTS, eval_cells
from bench_sft_data import BATCH, THREADS, naive_search
from make_proxy_qwen import CONFIG_3B, ensure, split

BEAM, ROUNDS, QUERIES, QUESTIONS = 3, 3, 1, 3
PROXY = Path(tempfile.gettempdir()) / "icl_kit-proxy-qwen2.5-vl-3b"
SEED = 0
PROMPT_TOKENS = 820  # a step-2 beam prompt: three 234-token images and their text


def coco_world(out: Path, n_train: int, n_test: int) -> Path:
    """The demo world with every image resized to COCO's 640 x 480 (the image tokens of the real data)."""
    from PIL import Image

    from icl_kit.data.demo.world import build_demo_world

    root = build_demo_world(out, n_train=n_train, n_test=n_test, seed=SEED)
    for path in sorted(root.rglob("*.jpg")):
        with Image.open(path) as im:
            big = im.convert("RGB").resize(COCO, Image.BICUBIC)
        big.save(path, quality=90)
    return root


def kit_backend(lvlm):
    """The kit's defaults on the shared weights, with fresh prefix and vision-feature caches."""
    from icl_kit.lvlm.qwen import QwenLVLM

    return QwenLVLM(lvlm.cfg, model=lvlm.model, processor=lvlm.processor)


def matmul_patch_embed(model) -> None:
    """Run the vision tower's patch embedding, a Conv3d whose kernel is its stride, as the same matmul (equal up
    to float round-off). It is 20% of the proxy's vision FLOPs (0.2% of the 3B's) and torch's CPU conv3d runs it
    about 3.6x slower than the matmul, which would make the proxy's vision cost more than its FLOPs say."""
    weight = model.model.visual.patch_embed.proj.weight
    flat = weight.reshape(weight.shape[0], -1)

    def forward(hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states.to(weight.dtype).reshape(-1, flat.shape[1]) @ flat.T

    model.model.visual.patch_embed.forward = forward


@torch.inference_mode()
def time_split(model, image_tokens: int, prompt_tokens: int, repeats: int = 7) -> float:
    """Measured: the vision tower's seconds per merged image token (one COCO-sized image) over the language model's
    per token (one prompt of `prompt_tokens`), the median of `repeats` alternating pairs (the FLOP split's
    counterpart in time)."""
    visual, lm = model.model.visual, model.model.language_model
    merge = visual.spatial_merge_size
    side = int(image_tokens**0.5)
    while image_tokens % side:
        side -= 1
    grid = torch.tensor([[1, side * merge, image_tokens // side * merge]])
    pixels = torch.randn(image_tokens * merge**2, visual.patch_embed.proj.weight[0].numel())
    embeds = torch.randn(1, prompt_tokens, model.config.text_config.hidden_size)

    def seconds(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    def vision():
        return visual(pixels, grid_thw=grid)

    def language():
        return lm(inputs_embeds=embeds, use_cache=False)

    vision(), language()
    return statistics.median(seconds(vision) / image_tokens / (seconds(language) / prompt_tokens)
                             for _ in range(repeats))


def study_backend(lvlm):
    """The study's path on the same weights and pixel budget: one prompt at a time, plain generate and scoring,
    no prefix or vision-feature cache."""
    from icl_kit.lvlm.qwen import QwenLVLM

    cfg = replace(lvlm.cfg, batch_size=1, shared_prefill="off",
                  qwen=replace(lvlm.cfg.qwen, vision_cache_mb=0, prefix_cache_mb=0))
    return QwenLVLM(cfg, model=lvlm.model, processor=lvlm.processor)


class Clock:
    """Wall and this process's CPU seconds of one side, summed over rounds."""

    def __init__(self) -> None:
        self.wall, self.cpu = 0.0, 0.0

    def run(self, fn):
        from icl_kit.lvlm.qwen_images import resized_image

        resized_image.cache_clear()  # each side loads its own images
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall = time.perf_counter() - start
        self.wall, self.cpu = self.wall + wall, self.cpu + time.process_time() - start_cpu
        return wall, out


def added(a, b):
    """The sum of two Works' counts (icl_kit.lvlm.work)."""
    return a.with_counts([x + y for x, y in zip(a.counts(), b.counts(), strict=True)])


def flop_line(work: dict, arch, name: str, unit: float, unit_name: str) -> str:
    """The FLOPs both sides' counted work costs at `arch`'s size, and the loop's over the kit's."""
    from icl_kit.lvlm.work import flops

    f = {k: flops(w, arch) for k, w in work.items()}
    parts = []
    for side in ("beams", "eval"):
        kit, loop = f[f"kit {side}"], f[f"loop {side}"]
        parts.append(f"{side} kit {kit['total'] / unit:,.1f} (vision {kit['vision'] / unit:,.1f}) vs loop "
                     f"{loop['total'] / unit:,.1f} (vision {loop['vision'] / unit:,.1f}) {unit_name}: "
                     f"{loop['total'] / kit['total']:.2f}x")
    return f"  at {name}'s size: " + "; ".join(parts)


def interleaved(r: int, kit: Clock, loop: Clock, kit_fn, loop_fn):
    """(kit seconds, its result, loop seconds, its result), the kit first in odd rounds, the loop in even."""
    if r % 2 == 0:
        k = kit.run(kit_fn)
        lo = loop.run(loop_fn)
    else:
        lo = loop.run(loop_fn)
        k = kit.run(kit_fn)
    return (*k, *lo)


def main() -> int:
    from icl_kit.core.config import LVLMConfig, SFTDataConfig
    from icl_kit.data.okvqa import load_split
    from icl_kit.lvlm.answers import AnswerService
    from icl_kit.lvlm.base import Request
    from icl_kit.lvlm.qwen import QwenLVLM
    from icl_kit.lvlm.qwen_images import image_tokens
    from icl_kit.lvlm.work import QWEN2_5_VL_3B, Work, qwen_arch
    from icl_kit.selection.pools import rand_pools
    from icl_kit.train.sft_data import build_sft_data, read_sft_data

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds (kit and loop on the same cells)")
    ap.add_argument("--queries", type=int, default=QUERIES, help="beam-search queries a round")
    ap.add_argument("--questions", type=int, default=QUESTIONS,
                    help="test questions a round (x 6 checkpoints x shots 1-4)")
    ap.add_argument("--proxy", type=Path, default=PROXY, help="the proxy's folder (built when missing)")
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--conv3d", action="store_true",
                    help="keep transformers' Conv3d patch embedding (see matmul_patch_embed)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    proxy = ensure(args.proxy)
    sft = SFTDataConfig(beam_size=BEAM, max_shots=SHOTS)
    clocks = {k: Clock() for k in ("kit beams", "loop beams", "kit eval", "loop eval")}
    work = {k: Work() for k in clocks}  # the work each side counted (icl_kit.lvlm.work), summed over rounds
    ratios: dict[str, list[float]] = {"beams": [], "evaluation": []}
    same_beams, same_answers, n_scores, n_calls = [], [], 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        n_queries, n_questions = args.rounds * args.queries, args.rounds * args.questions
        root = coco_world(Path(tmp) / "demo", n_train=max(n_queries, POOL + 1) + 40, n_test=n_questions + 1)
        train = sorted(load_split(root, "train"), key=lambda r: r.question_id)
        test = sorted(load_split(root, "val"), key=lambda r: r.question_id)
        records = {r.question_id: r for r in (*train, *test)}
        pool_ids = [r.question_id for r in train]
        qids = pool_ids[:n_queries]
        pools = rand_pools([*qids, *(r.question_id for r in test)], pool_ids, size=POOL, seed=42)
        lvlm = QwenLVLM(LVLMConfig(model=str(proxy), device="cpu", dtype="float32", batch_size=BATCH,
                                   shared_prefill="on"))
        if not args.conv3d:
            matmul_patch_embed(lvlm.model)
        study = study_backend(lvlm)
        tokens = image_tokens(COCO[1], COCO[0], lvlm.cfg.qwen.min_pixels, lvlm.cfg.qwen.max_pixels)
        config = json.loads((proxy / "config.json").read_text())
        flop_split = split(config)
        warm = test[-1]  # not timed: load and warm both paths
        icds = tuple(records[i] for i in pools[warm.question_id][:2])
        for side in (kit_backend(lvlm), study):
            side.score([Request(icds, warm)], [warm.answer])
            side.generate([Request(icds, warm)])
        print(f"proxy {proxy}: {COCO[0]}x{COCO[1]} images = {tokens} image tokens; vision per merged image token / "
              f"LM per token: FLOPs {flop_split:.3f} (Qwen2.5-VL-3B {split(json.loads(CONFIG_3B.read_text())):.3f}), "
              f"measured time {time_split(lvlm.model, tokens, PROMPT_TOKENS):.3f} (LM at {PROMPT_TOKENS} tokens, "
              f"patch embedding as {'conv3d' if args.conv3d else 'matmul'}); set-up "
              f"{time.perf_counter() - began:.0f} s", flush=True)
        for r in range(args.rounds):
            part = qids[r * args.queries : (r + 1) * args.queries]
            out = Path(tmp) / f"sft_data{r}.jsonl"

            def kit_beams(part=part, out=out, r=r):
                service = AnswerService(kit_backend(lvlm), records, Path(tmp) / f"beams{r}.sqlite", batch_size=BATCH)
                stats = build_sft_data(service, part, pools, sft, out, progress=False)
                work["kit beams"] = added(work["kit beams"], service.work())
                return stats

            def loop_beams(part=part):
                before = study.work_done()
                found = [naive_search(study, records, q, pools[q], sft) for q in part]
                work["loop beams"] = added(work["loop beams"], study.work_done() - before)
                return found

            kit_s, stats, loop_s, found = interleaved(r, clocks["kit beams"], clocks["loop beams"], kit_beams,
                                                      loop_beams)
            lines = read_sft_data(out)
            same_beams += [b == [x["positions"] for x in lines[q]["beams"]] for q, b in zip(part, found, strict=True)]
            n_scores += stats.score_calls
            ratios["beams"].append(loop_s / kit_s)
            print(f"  round {r + 1} beams ({len(part)} queries, {'kit' if r % 2 == 0 else 'loop'} first): kit "
                  f"{kit_s:.1f} s, loop {loop_s:.1f} s: {loop_s / kit_s:.2f}x", flush=True)

            cells = eval_cells(test[r * args.questions : (r + 1) * args.questions], pools)

            def kit_eval(cells=cells, r=r):
                service = AnswerService(kit_backend(lvlm), records, Path(tmp) / f"eval{r}.sqlite", batch_size=BATCH)
                got = []
                for start in range(0, len(cells), EVAL_CHUNK):
                    got += service.answers(cells[start : start + EVAL_CHUNK])
                work["kit eval"] = added(work["kit eval"], service.work())
                return service.calls, [a.pred for a in got]

            def loop_eval(cells=cells):
                before = study.work_done()
                got = [study.generate([Request(tuple(records[i] for i in c), records[q])])[0].answer
                       for q, c in cells]
                work["loop eval"] = added(work["loop eval"], study.work_done() - before)
                return got

            kit_s, (calls, preds), loop_s, answers = interleaved(r, clocks["kit eval"], clocks["loop eval"],
                                                                 kit_eval, loop_eval)
            same_answers += [a == b for a, b in zip(preds, answers, strict=True)]
            n_calls += calls
            ratios["evaluation"].append(loop_s / kit_s)
            print(f"  round {r + 1} evaluation ({len(cells)} cells, {calls} prompts asked by the kit): kit "
                  f"{kit_s:.1f} s, loop {loop_s:.1f} s: {loop_s / kit_s:.2f}x", flush=True)
    n_cells = len(same_answers)
    print(f"beams: {n_queries} queries x {POOL} candidates x {SHOTS} shots, beam {BEAM}: kit {n_scores:,} LVLM scores, "
          f"the loop {n_queries * (1 + POOL + BEAM * POOL * (SHOTS - 1)):,}; same beams on {sum(same_beams)}/"
          f"{len(same_beams)} queries (batch-1 and padded-batch scores differ by float round-off near ties)")
    print(f"evaluation: {N_DISTINCT * 2} checkpoints ({N_DISTINCT} distinct) x shots 1-{EVAL_SHOTS} x {n_questions} "
          f"questions = {n_cells} cells: kit {n_calls} prompts, the loop {n_cells}; same answers on "
          f"{sum(same_answers)}/{n_cells}")
    print("work counted by the backends (icl_kit.lvlm.work), FLOPs: weights only, attention left out")
    print(flop_line(work, QWEN2_5_VL_3B, QWEN2_5_VL_3B.name, 1e12, "TFLOP"))
    print(flop_line(work, qwen_arch(config, "the proxy"), "the proxy", 1e9, "GFLOP"))
    cpu = {k: c.cpu for k, c in clocks.items()}
    print(f"CPU time of this process, all rounds: beams kit {cpu['kit beams']:.1f} s, loop {cpu['loop beams']:.1f} s "
          f"({cpu['loop beams'] / cpu['kit beams']:.2f}x); evaluation kit {cpu['kit eval']:.1f} s, loop "
          f"{cpu['loop eval']:.1f} s ({cpu['loop eval'] / cpu['kit eval']:.2f}x); {args.threads} torch thread(s); "
          f"whole run {time.perf_counter() - began:.0f} s")
    print(f"proxy speedup: beams {statistics.median(ratios['beams']):.2f}x, evaluation "
          f"{statistics.median(ratios['evaluation']):.2f}x (kit vs the study's loop, FLOP-proportional Qwen2.5-VL-3B "
          f"proxy, median of {args.rounds} interleaved rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
