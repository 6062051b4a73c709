"""The vision-feature cache (icl_kit.lvlm.qwen_vision) and the counted work (icl_kit.lvlm.work).

On the tiny Qwen2.5-VL checkpoint, fp32, ONE intra-op thread: there the tower's output for an image does not
depend on the other images of its call (its attention is per image, and a one-thread CPU matrix product
rounds each row the same whatever the number of rows, from 3 rows up: 1 or 2 rows take another kernel, and an
image has at least 16 patches and 4 merged tokens), so cached answers and scores must equal uncached ones
exactly. With two threads they need not: the merger's small products (patches/4 rows an image) round
differently, by ~1e-5, alone than in a batch of ten images; `test_answers_do_not_depend_on_the_caches_history`
runs there and shows why the cache encodes each image alone.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from icl_kit.core.config import LVLMConfig, QwenConfig
from icl_kit.data.demo.world import build_demo_world
from icl_kit.data.okvqa import load_split
from icl_kit.lvlm.base import Request
from icl_kit.lvlm.qwen import QwenLVLM
from icl_kit.lvlm.qwen_images import resized_image
from icl_kit.lvlm.qwen_prefix import kv_of
from icl_kit.lvlm.qwen_vision import FeatureLRU, hooked
from icl_kit.lvlm.work import QWEN2_5_VL_3B, Work, flops, qwen_arch

TINY_QWEN = Path(__file__).parents[1] / "fixtures" / "tiny-qwen2.5-vl"
DEVICE = os.environ.get("ICL_KIT_TEST_DEVICE", "cpu")  # benchmarks/gpu_check.sh runs these on CUDA
BENCH_CONFIG = Path(__file__).parents[2] / "benchmarks" / "qwen2_5_vl_3b_config.json"
PIXELS = 28 * 28 * 16  # 16 LLM tokens (64 patches) an image at most
ANSWERS = ["red", "two dogs", "a large white bus", ""]


def cfg(mb: int = 512, **kw) -> LVLMConfig:
    """The vision cache alone: no prefix cache (tests/lvlm/test_prefix_cache.py has both)."""
    return LVLMConfig(model=str(TINY_QWEN), device=DEVICE, dtype="float32", batch_size=16,
                      qwen=QwenConfig(max_pixels=PIXELS, vision_cache_mb=mb, prefix_cache_mb=0), **kw)


@pytest.fixture(scope="module")
def model(one_thread):
    first = QwenLVLM(cfg())
    return first.model, first.processor


def backend(model, mb: int = 512, **kw) -> QwenLVLM:
    return QwenLVLM(cfg(mb, **kw), model=model[0], processor=model[1])


@pytest.fixture(scope="module")
def requests(data) -> list[Request]:
    """Prompts at shots 1-4 drawn from 8 pool images, so images recur across and within batches."""
    pool, test = data
    rng = random.Random(0)
    return [Request(tuple(rng.sample(pool[:8], 1 + i % 4)), test[i]) for i in range(16)]


# ------------------------------------------------------------------ cached == uncached
@pytest.mark.parametrize("prefill", ["on", "off"])
def test_cached_answers_and_scores_equal_uncached(model, requests, prefill):
    """Generation (beam search, shared prefill or transformers' own generate) and teacher-forced scores."""
    cached, plain = backend(model, shared_prefill=prefill), backend(model, mb=0, shared_prefill=prefill)
    answers = [ANSWERS[i % 4] for i in range(len(requests))]
    assert cached.generate(requests) == plain.generate(requests)
    assert cached.score(requests, answers) == plain.score(requests, answers)  # exact, float for float
    distinct = len({r.image_path for q in requests for r in (*q.icds, q.query)})
    w, u = cached.work, plain.work
    assert w.images_encoded == distinct and w.images == u.images == u.images_encoded > 2 * distinct
    assert w.images_encoded + w.image_cache_hits == w.images and u.image_cache_hits == 0
    assert len(cached.vision_cache) == distinct and plain.vision_cache is None
    assert w.vision_patches < u.vision_patches and w.vision_patches % distinct == 0  # the demo's images: one size
    assert (w.prefill_tokens, w.pad_tokens, w.decode_tokens, w.logit_tokens) == (
        u.prefill_tokens, u.pad_tokens, u.decode_tokens, u.logit_tokens)  # the language model's work is the same


def test_a_prompt_repeating_an_image_encodes_it_once(model, data):
    pool, test = data
    again = Request((pool[0], pool[1], pool[0]), test[0])  # pool[0] twice in one prompt
    lvlm = backend(model, shared_prefill="on")
    lvlm.generate([again])
    w = lvlm.work
    patches = 4 * lvlm._image_tokens(pool[0])  # 2x2 patches merge into one token
    assert (w.prompts, w.images, w.images_encoded, w.image_cache_hits, w.vision_patches) == (1, 4, 3, 1, 3 * patches)
    lvlm.score([again, Request((pool[1],), test[0])], ["red", "blue"])  # every image known: nothing encoded
    assert (w.prompts, w.images, w.images_encoded, w.image_cache_hits) == (3, 10, 3, 7)
    off = backend(model, shared_prefill="off")  # transformers' generate; 5.17 repeats the pixels per beam
    off.generate([again])
    assert off.work.images_encoded == 3 and off.work.images == off.work.images_encoded + off.work.image_cache_hits


def test_the_processors_output_is_the_same_from_the_pixel_cache(model, requests):
    """Each image's processor output is kept by (path, budget): batches encoded through the cache, in several
    orders of first sight, equal the processor's own output on the same prompts, tensor for tensor; images
    seen before are not processed again."""
    lvlm = backend(model)
    prepared = [lvlm.prepare(r) for r in requests]
    for batch in (prepared[:5], prepared[3:11], prepared[::-1]):
        images = [resized_image(str(it["image"]), it.get("min_pixels"), it.get("max_pixels"))
                  for p in batch for m in p.messages for it in m["content"] if it["type"] == "image"]
        direct = lvlm.processor(text=[p.text for p in batch], images=images, padding=True, padding_side="left",
                                return_tensors="pt", **lvlm._processor_budget())
        got = lvlm.encode(batch)
        assert set(got) == set(direct) and all(torch.equal(got[k], direct[k].to(got[k].device)) for k in direct)
        apart = lvlm.encode(batch, apart=True)  # the same without the pixels, which stay per image on the host
        assert set(apart) == set(direct) - {"pixel_values"}
        assert all(torch.equal(apart[k], direct[k].to(apart[k].device)) for k in apart)
        sizes = [int(t * h * w) for t, h, w in direct["image_grid_thw"].tolist()]
        parts = lvlm._encoded_images(apart)[1]
        assert [p.device.type for p in parts] == ["cpu"] * len(sizes)
        assert all(torch.equal(a, b) for a, b in zip(parts, torch.split(direct["pixel_values"], sizes), strict=True))
    hits = lvlm.pixel_cache.hits
    lvlm.encode(prepared[:5])
    assert lvlm.pixel_cache.hits - hits == sum(len(p.images) for p in prepared[:5])  # every image seen before


@pytest.mark.parametrize("prefill", ["on", "off"])
def test_pixels_are_hashed_once_per_image_and_key_the_features_as_hashing_would(model, requests, prefill,
                                                                                 monkeypatch):
    """The feature cache's keys come from the digests the pixel cache computed when each image was first
    processed: no forward hashes pixels again, and the keys equal sha256 of each image's processor output."""
    import hashlib

    from icl_kit.lvlm import qwen_images, qwen_vision

    hashed = []
    real = qwen_images.pixel_digest
    monkeypatch.setattr(qwen_images, "pixel_digest", lambda p: hashed.append("images") or real(p))
    monkeypatch.setattr(qwen_vision, "pixel_digest", lambda p: hashed.append("forward") or real(p))
    lvlm = backend(model, shared_prefill=prefill)
    lvlm.score(requests, ["red"] * len(requests))
    records = {str(r.image_path): r for q in requests for r in (*q.icds, q.query)}
    assert hashed == ["images"] * len(records)  # each image once, when first processed; no forward hashed
    lvlm.generate(requests)
    if prefill == "on":  # transformers' own generate (off) may repeat a prompt's pixels per beam (5.17 does),
        assert hashed == ["images"] * len(records)  # and then the digests do not line up: it hashes
    budget = lvlm._processor_budget()
    expected = set()
    for path in records:
        image = resized_image(path, None, PIXELS)
        out = lvlm.processor.image_processor(images=[image], return_tensors="pt", **budget.get("images_kwargs", {}))
        digest = hashlib.sha256(out["pixel_values"].contiguous().view(torch.uint8).numpy()).hexdigest()
        expected.add((digest, tuple(out["image_grid_thw"][0].tolist()), "torch.float32->torch.float32"))
    assert set(lvlm.vision_cache.entries) == expected


def test_a_batch_gets_its_own_images_pixels_whatever_was_encoded_since(model, requests):
    """The digests and host pixels travel with the batch `encode` made: a batch with its pixels, used after
    another encode, takes them from itself (the same KV as used at once); one encoded apart is refused."""
    lvlm = backend(model, shared_prefill="on")
    a = [lvlm.prepare(r) for r in requests[:2]]
    b = [lvlm.prepare(r) for r in requests[2:4]]
    with hooked(lvlm.model, lvlm.vision_cache, lvlm.work) as lvlm._counting:
        fresh = lvlm.prefill(lvlm.encode(a), a)
        batch = lvlm.encode(a)
        lvlm.encode(b)
        late = lvlm.prefill(batch, a)
        assert all(torch.equal(x, y) for (x, _), (y, _) in zip(kv_of(fresh[lvlm.runner.kw]),
                                                               kv_of(late[lvlm.runner.kw]), strict=True))
        apart = lvlm.encode(a, apart=True)
        lvlm.encode(b)
        with pytest.raises(RuntimeError, match="encoded apart is used after another encode"):
            lvlm.prefill(apart, a)


def test_images_whose_features_are_kept_are_not_processed_again(model, requests):
    """The pixel cache keeps two images' pixels but every image's digest and grid: with the feature cache warm,
    the same prompts asked again (pixels served apart) load and process no image; with the features dropped,
    each image a forward needs is processed again. Answers and scores equal the uncached backend's throughout."""
    plain, lvlm = backend(model, mb=0), backend(model, shared_prefill="on")
    lvlm.pixel_cache.max_entries = 2
    answers = [ANSWERS[i % 4] for i in range(len(requests))]
    scores, texts = plain.score(requests, answers), plain.generate(requests)
    distinct = len({r.image_path for q in requests for r in (*q.icds, q.query)})
    assert lvlm.score(requests, answers) == scores and lvlm.pixel_cache.processed == distinct
    assert lvlm.generate(requests) == texts and lvlm.score(requests, answers) == scores
    assert lvlm.pixel_cache.processed == distinct and len(lvlm.pixel_cache.entries) == 2  # none processed again
    lvlm.vision_cache.entries.clear()
    lvlm.vision_cache.bytes = 0
    assert lvlm.score(requests, answers) == scores
    assert lvlm.pixel_cache.processed == 2 * distinct - 2  # all but the two whose pixels were kept


def test_with_the_prefix_cache_dropped_pixels_are_made_again_for_the_blocks_that_need_them(model, requests):
    """With the prefix cache as well, prefix blocks are computed alone (`_extend`) from pixels served apart: after
    both caches and all but two images' pixels are dropped, the blocks recomputed make their images' pixels again
    and give the same scores, bit for bit (a prefix's KV depends on the prefix only)."""
    c = cfg(shared_prefill="on")
    lvlm = QwenLVLM(replace(c, qwen=replace(c.qwen, prefix_cache_mb=64)), model=model[0], processor=model[1])
    lvlm.pixel_cache.max_entries = 2
    answers = [ANSWERS[i % 4] for i in range(len(requests))]
    first = lvlm.score(requests, answers)
    distinct = len({r.image_path for q in requests for r in (*q.icds, q.query)})
    assert lvlm.pixel_cache.processed == distinct and lvlm.work.prefix_hits > 0
    for cache in (lvlm.vision_cache, lvlm.prefix_cache):
        cache.entries.clear()
        cache.bytes = 0
    assert lvlm.score(requests, answers) == first
    assert lvlm.pixel_cache.processed == 2 * distinct - 2


def test_an_image_file_changed_during_a_run_is_refused(model, data, tmp_path):
    """An image whose pixels must be made again (dropped from both caches) but no longer match the digest it
    was first read with stops the call with one sentence naming the file, instead of mixing two images."""
    from icl_kit.core.errors import KitError

    pool, test = data
    copy = tmp_path / "query.jpg"
    copy.write_bytes(Path(test[0].image_path).read_bytes())
    request = Request((pool[0],), replace(test[0], image_path=copy))
    lvlm = backend(model, shared_prefill="on")
    lvlm.pixel_cache.max_entries = 0  # keep no pixels: every image known by its digest only
    lvlm.score([request], ["red"])
    from PIL import Image

    with Image.open(copy) as im:
        Image.new("RGB", im.size, (200, 30, 30)).save(copy)
    resized_image.cache_clear()
    lvlm.vision_cache.entries.clear()
    with pytest.raises(KitError, match=r"query\.jpg changed while the run read it"):
        lvlm.score([request], ["red"])


def test_lru_eviction_under_a_tiny_budget_gives_equal_results(model, requests):
    plain = backend(model, mb=0)
    small = backend(model)
    records = {r.image_path: r for q in requests for r in (*q.icds, q.query)}
    tokens = {small._image_tokens(r) for r in records.values()}
    assert len(tokens) == 1  # the demo's images share one size
    one = tokens.pop() * 64 * 4  # one image's merged features: tokens x 64 wide x fp32
    small.vision_cache = FeatureLRU(2 * one + one // 2)  # two images fit, a third evicts
    answers = [ANSWERS[i % 4] for i in range(len(requests))]
    assert small.generate(requests) == plain.generate(requests)
    assert small.score(requests, answers) == plain.score(requests, answers)
    cache = small.vision_cache
    assert cache.evictions > 0 and len(cache) == 2 and cache.bytes == 2 * one <= cache.max_bytes
    assert small.work.images_encoded > len(records)  # evicted images came back and were encoded again
    huge = FeatureLRU(one - 1)  # an entry larger than the whole budget is not kept
    huge.put(("k", (1, 8, 8), "f"), torch.zeros(one // 4))
    assert len(huge) == 0 and huge.bytes == 0


def test_answers_do_not_depend_on_the_caches_history(model, requests):
    """Two threads: a batched tower call can round differently from one image alone, so features computed
    in whatever batch of misses an image first met would make later answers depend on what was asked
    before. Encoded alone, an image's features are the same whatever the cache held or evicted."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fresh = backend(model)
        warm = backend(model)
        warm.vision_cache = FeatureLRU(3 * 64 * 4 * warm._image_tokens(requests[0].query))  # three images
        warm.score(requests[::-1], ["red"] * len(requests))  # another history: other misses, other evictions
        for r in requests[:6]:
            assert fresh.score([r], ["two dogs"]) == warm.score([r], ["two dogs"])
            assert fresh.generate([r]) == warm.generate([r])
    finally:
        torch.set_num_threads(threads)


def test_language_model_tokens_are_counted(model, requests):
    lvlm = backend(model, shared_prefill="on")
    r = requests[5]
    n = lvlm.prepare(r).length
    lvlm.generate([r])
    w = lvlm.work
    # The shared prefill runs the prompt but its last token once (no logits); generate then feeds one token per
    # beam per step.
    assert (w.prefill_tokens, w.pad_tokens) == (n - 1, 0)
    assert w.decode_tokens % 3 == 0 and 3 <= w.decode_tokens <= 3 * 5 and w.logit_tokens == w.decode_tokens
    scorer = backend(model, shared_prefill="off")  # every (prompt, answer) in one forward
    a, b = requests[0], requests[3]
    la, lb = scorer.prepare(a).length, scorer.prepare(b).length
    tok = scorer.processor.tokenizer
    na, nb = (len(tok(x, add_special_tokens=False).input_ids) for x in ("red", "a large white bus"))
    scorer.score([a, b], ["red", "a large white bus"])
    width = max(la, lb) + max(na, nb)  # left-padded prompts, right-padded answers, one forward
    s = scorer.work
    pads = 2 * width - la - lb - na - nb
    assert (s.prompts, s.prefill_tokens, s.pad_tokens, s.decode_tokens) == (2, 2 * width, pads, 0)
    assert s.logit_tokens == 2 * (max(na, nb) + 1)


def test_the_backend_records_the_budget_and_shares_its_model(model, requests):
    a, b = backend(model), backend(model, mb=0)
    assert a.describe()["vision_cache_mb"] == 512 and b.describe()["vision_cache_mb"] == 0
    assert a.fingerprint() == b.fingerprint()  # the cache changes no answer: not part of the answer cache's key
    a.generate(requests[:2])
    assert "get_image_features" not in vars(a.model.model)  # nothing stays installed after a call
    assert a.model.model.language_model._forward_pre_hooks == {} and a.model.lm_head._forward_hooks == {}


# ------------------------------------------------------------------ FLOPs
def test_the_3b_architecture_by_hand():
    """Qwen2.5-VL-3B (benchmarks/qwen2_5_vl_3b_config.json), weights per patch / token, worked by hand:

    vision: patch embedding 3·2·14²·1280 = 1,505,280; 32 blocks of 4·1280² + 3·1280·3420 = 6,553,600 +
    13,132,800 = 19,686,400 -> 629,964,800; merger (4·1280)·(4·1280 + 2048)/4 = 5120·7168/4 = 9,175,040;
    total 640,645,120. Language model: 36 layers of q,o 2·2048·(16·128) = 8,388,608, k,v 2·2048·(2·128) =
    1,048,576, MLP 3·2048·11008 = 67,633,152 -> 77,070,336 x 36 = 2,774,532,096. Head: 2048·151,936.
    """
    arch = qwen_arch(json.loads(BENCH_CONFIG.read_text()), "Qwen2.5-VL-3B")
    assert arch == QWEN2_5_VL_3B
    assert arch.vision_per_patch == 1_505_280 + 32 * 19_686_400 + 9_175_040 == 640_645_120
    assert arch.llm_per_token == 36 * 77_070_336 == 2_774_532_096
    assert arch.head_per_token == 2048 * 151_936
    # One 256-token image (1,024 patches) and a 300-token prompt, 3 beams x 5 steps, 16 logit positions:
    w = Work(vision_patches=1024, prefill_tokens=300, decode_tokens=15, logit_tokens=16)
    f = flops(w, arch)
    assert f["vision"] == 2 * 1024 * 640_645_120 == 1_312_041_205_760  # ≈ 1.3 TFLOP an image
    assert f["llm"] == 2 * 315 * 2_774_532_096 == 1_747_955_220_480
    assert f["lm_head"] == 2 * 16 * 311_164_928 == 9_957_277_696
    assert f["total"] == 3_069_953_703_936


def test_the_tiny_architecture_and_the_work_record():
    tiny = qwen_arch(json.loads((TINY_QWEN / "config.json").read_text()), "tiny")  # text fields in text_config
    assert tiny.vision_per_patch == 3 * 2 * 14 * 14 * 32 + 2 * (4 * 32 * 32 + 3 * 32 * 64) + 128 * (128 + 64) // 4
    assert tiny.llm_per_token == 2 * (2 * 64 * 64 + 2 * 64 * 2 * 16 + 3 * 64 * 128)
    before, after = Work(prompts=2, images=5), Work(prompts=7, images=20, images_encoded=6, image_cache_hits=9)
    done = after - before
    assert (done.prompts, done.images, done.images_encoded, done.image_cache_hits) == (5, 15, 6, 9)
    record = done.as_dict()
    assert record["flops_arch"] == "Qwen2.5-VL-3B" and record["flops"]["total"] == 0.0
    assert "5 prompts, 15 images (6 encoded: 0 patches; 9 from the feature cache)" in done.describe()
    sim = Work(prompts=3, images=9, label="simulated: no model ran, no tokens or FLOPs")
    assert sim.describe() == "3 prompts with 9 images (simulated: no model ran, no tokens or FLOPs)"
    assert replace(sim, prompts=4).with_counts(sim.counts()).label == sim.label


def test_the_simulated_backend_and_the_service_report_work(tmp_path):
    from icl_kit.lvlm.answers import AnswerService
    from icl_kit.lvlm.simulated import make_simulated

    root = build_demo_world(tmp_path / "demo", n_train=12, n_test=10, seed=0)
    pool, test = load_split(root, "train"), load_split(root, "val")
    sim = make_simulated(LVLMConfig(backend="simulated"), root)
    service = AnswerService(sim, {r.question_id: r for r in (*pool, *test)}, None)
    start = service.work()
    service.answers([(test[0].question_id, (pool[0].question_id, pool[1].question_id))])
    done = service.work() - start
    assert (done.prompts, done.images, done.prefill_tokens) == (1, 3, 0) and done.label.startswith("simulated")


def test_training_logs_each_epochs_work_once_the_lvlm_is_loaded(caplog):
    import logging

    from icl_kit.train.outputs import WorkLog

    class Service:
        def __init__(self) -> None:
            self.done = Work()

        def work(self) -> Work:
            return replace(self.done)

    service, log = Service(), WorkLog()
    with caplog.at_level(logging.INFO, logger="icl_kit.train.outputs"):
        log.log(None, "train: sft epoch 1")  # the LVLM was never loaded: nothing to say, nothing loaded
        service.done.prompts, service.done.decode_tokens = 5, 30
        log.log(service, "train: grpo epoch 1")
        service.done.prompts = 12
        log.log(service, "train: grpo epoch 2")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("train: grpo epoch 1: lvlm work (this process): 5 prompts, 0 images")
    assert lines[1].startswith("train: grpo epoch 2: lvlm work (this process): 7 prompts") and "0 decode" in lines[1]
