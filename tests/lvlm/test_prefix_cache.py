"""Prefix reuse (icl_kit.lvlm.prefix, icl_kit.lvlm.qwen_prefix) on the tiny Qwen2.5-VL checkpoint, fp32, CPU.

"Cached" = the kit's path: each prompt's KV computed once for its beams and answers, its prefix blocks (system
header, ICDs) from the prefix LRU. "Uncached" = the same shared path with prefix_cache_mb 0 (every prompt
whole), or the study's path (shared_prefill off: plain generate, one forward per (prompt, answer)).

Why the results are equal to the last bits and not always bit for bit: a block computed on its cached prefix
sees the same keys and values at the same positions as in one forward of the whole prompt; what differs is
the shape of the products that sum over them. Attention's weights times values sum over the prefix + block
in the cached path and over the whole (masked) prompt in the uncached one, and a GEMM blocks that inner
dimension, so a long prompt's sums can associate differently; PyTorch's CPU SDPA takes its flash kernel for
an unmasked prompt and its math kernel once a mask or a cache is given; in a BATCH the rows are padded
differently ([pads][prefix][pads][suffix] against [pads][prompt]); answers scored on the prompt's KV run their
tokens through smaller products (1-2 rows take another kernel) than one forward of prompt + answer. With the
math kernel and one thread most prompts alone come out bit for bit equal (38 of 40 scores here), the rest
within an ulp; every difference is a few ulps of the summed log p, bounded here by 1e-6 relative (REL).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import transformers
from torch.nn.attention import SDPBackend, sdpa_kernel

from icl_kit.core.config import GenerationConfig, LVLMConfig, PromptConfig, QwenConfig, SFTDataConfig
from icl_kit.lvlm.base import Request
from icl_kit.lvlm.prefix import Block, PrefixLRU
from icl_kit.lvlm.qwen import QwenLVLM
from icl_kit.lvlm.work_model import QwenWorkModel

TINY_QWEN = Path(__file__).parents[1] / "fixtures" / "tiny-qwen2.5-vl"
DEVICE = os.environ.get("ICL_KIT_TEST_DEVICE", "cpu")  # benchmarks/gpu_check.sh runs these on CUDA
PIXELS = 28 * 28 * 16
REL = 1e-6  # batched: cached vs uncached summed log p, relative (module docstring)
ANSWERS = ["two dogs", "red", "a large white bus", ""]
OLD_GENERATE = tuple(int(x) for x in transformers.__version__.split(".")[:2]) < (5, 24)  # tests at 5.17 too


def cfg(prefill: str = "on", prefix_mb: int = 64, vision_mb: int = 512, batch: int = 16, **kw) -> LVLMConfig:
    return LVLMConfig(model=str(TINY_QWEN), device=DEVICE, dtype="float32", batch_size=batch, shared_prefill=prefill,
                      qwen=QwenConfig(max_pixels=PIXELS, vision_cache_mb=vision_mb, prefix_cache_mb=prefix_mb), **kw)


@pytest.fixture(scope="module")
def model(one_thread):
    first = QwenLVLM(cfg())
    return first.model, first.processor


def backend(model, *args, **kw) -> QwenLVLM:
    return QwenLVLM(cfg(*args, **kw), model=model[0], processor=model[1])


@pytest.fixture(scope="module")
def shots(data) -> list[Request]:
    """Evaluation-like prompts: 5 questions, one selection of 4 ICDs each, shots 1-4 (2-5 images a prompt)."""
    pool, test = data
    rng = random.Random(0)
    out = []
    for q in test[:5]:
        icds = tuple(rng.sample(pool[:12], 4))
        out += [Request(icds[:k], q) for k in range(1, 5)]
    return out


def close(a: list, b: list, rel: float = REL) -> bool:
    return all(x.n_tokens == y.n_tokens and abs(x.sum_logprob - y.sum_logprob) <= rel * max(1.0, abs(y.sum_logprob))
               for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------ what is shared
def test_shot_k_shares_its_first_k_icds_and_not_the_query(model, shots):
    lvlm = backend(model)
    prepared = [lvlm.prepare(r) for r in shots[:4]]  # one question at shots 1-4
    batch = lvlm.encode(prepared)
    for k, p in enumerate(prepared, start=1):
        assert len(p.blocks) == k + 2 and p.length == sum(b.tokens for b in p.blocks)  # header, k ICDs, query
        row = batch["input_ids"][k - 1][batch["attention_mask"][k - 1].bool()]
        starts = torch.tensor([b.tokens for b in p.blocks]).cumsum(0)[:-1]
        assert (row[starts] == lvlm.model.config.vision_start_token_id).all()  # every block after 0 opens an image
        if k < 4:
            nxt = prepared[k].blocks
            assert [b.key for b in p.blocks[: k + 1]] == [b.key for b in nxt[: k + 1]]  # header + first k ICDs
            assert p.blocks[-1].key != nxt[k + 1].key and p.blocks[-1].key != nxt[k].key  # the query comes last
    reverse = QwenLVLM(cfg(prompt=PromptConfig(icd_order="reversed")), model=model[0], processor=model[1])
    a, b = (reverse.prepare(r).blocks for r in shots[1:3])  # shots 2 and 3, most relevant next to the query
    assert a[0].key == b[0].key and a[1].key != b[1].key  # reversed: only the header is shared


def test_the_lru_drops_leaves_before_their_parents():
    lru = PrefixLRU(300)
    root, a, b = Block("r", 1, None), Block("a", 1, "x"), Block("b", 1, "y")
    lru.put(root, "R", 100)
    lru.put(a, "A", 100)
    lru.touch([root, a])  # a's chain used: the parent becomes more recent than its child
    assert list(lru.entries) == ["a", "r"] and lru.cached([root, a, b]) == 2
    lru.put(b, "B", 100)
    lru.put(Block("c", 1, None), "C", 100)  # over budget: the least recent goes, a leaf
    assert "r" in lru.entries and "a" not in lru.entries and lru.evictions == 1
    lru.put(Block("huge", 9, None), "H", 301)  # larger than the budget: not kept
    assert "huge" not in lru.entries and lru.bytes <= lru.max_bytes


# ------------------------------------------------------------------ cached == uncached
def test_alone_a_cached_prompt_scores_and_answers_as_an_uncached_one(model, shots):
    cached, whole = backend(model), backend(model, prefix_mb=0)
    same = 0
    with sdpa_kernel([SDPBackend.MATH]):
        for i, r in enumerate(shots):
            answers = [ANSWERS[i % 4], ANSWERS[(i + 1) % 4]]
            got, want = cached.score([r, r], answers), whole.score([r, r], answers)
            assert close(got, want)
            same += sum(a == b for a, b in zip(got, want, strict=True))
            assert cached.generate([r]) == whole.generate([r])
    print(f"bit-equal scores alone: {same}/{2 * len(shots)}")
    assert same >= len(shots)  # most: the split itself changes nothing
    w = cached.work
    assert w.prefix_hits > 0 and w.prefix_tokens_reused > 0 and whole.work.prefix_hits == 0
    assert w.prefill_tokens + w.prefix_tokens_reused == whole.work.prefill_tokens


@pytest.mark.parametrize("batch", [16, 5])
def test_batched_cached_equals_uncached_and_the_studys_path(model, shots, batch):
    """Shots 1-4 of 5 questions, each prompt scored with 3 answers in one call, and answered (beam search)."""
    cached, whole, study = backend(model, batch=batch), backend(model, prefix_mb=0, batch=batch), \
        backend(model, "off", prefix_mb=0, vision_mb=0, batch=batch)
    reqs = [r for r in shots for _ in range(3)]
    answers = [ANSWERS[(i + j) % 4] for i in range(len(shots)) for j in range(3)]
    got = cached.score(reqs, answers)
    assert close(got, whole.score(reqs, answers)) and close(got, study.score(reqs, answers))
    assert cached.generate(shots) == whole.generate(shots) == study.generate(shots)
    # each prompt's KV once for its three answers: first answer tokens from the prompt's own last logits
    assert cached.work.prefix_hits > 0 and cached.work.prefill_tokens < whole.work.prefill_tokens
    assert whole.work.prefill_tokens < study.work.prefill_tokens / 2


@pytest.mark.parametrize("prefill", ["on", "off"])
def test_generate_scored_answers_and_scores_as_generate_then_score(model, shots, prefill):
    """A training reward's gt_prob: each prompt answered and its ground truths scored. With the shared prefill
    one forward of each prompt does both (its KV and last logits score the answers; cut by the last column, the
    same KV starts generation), so the query blocks run once, not twice; off: generate, then score."""
    fused, split = backend(model, prefill, batch=5), backend(model, prefill, batch=5)
    answers = [[ANSWERS[(i + j) % 4] for j in range(i % 3)] for i in range(len(shots))]  # 0-2 answers a prompt
    gens, scores = fused.generate_scored(shots, answers)
    flat = [(r, a) for r, given in zip(shots, answers, strict=True) for a in given]
    want = split.score([r for r, _ in flat], [a for _, a in flat])
    assert gens == split.generate(shots)
    assert close([s for row in scores for s in row], want) and [len(row) for row in scores] == [len(a) for a in answers]
    if prefill == "on":  # every prompt once (the split path: the scored ones twice, prefixes from the LRU)
        assert fused.work.prompts == len(shots) and fused.work.prefill_tokens < 0.8 * split.work.prefill_tokens


@pytest.mark.parametrize("order", ["left", "right"])
def test_infoscore_beams_with_prefix_reuse_equal_the_studys_path(model, data, tmp_path, order):
    """Beam search (icl_kit.train.sft_data) through the answer cache: the same beams, every score within REL."""
    from icl_kit.lvlm.answers import AnswerService
    from icl_kit.train.sft_data import build_sft_data, read_sft_data

    pool, test = data
    records = {r.question_id: r for r in (*pool, *test)}
    qids = [r.question_id for r in test[:3]]
    pools = {q: [r.question_id for r in random.Random(q).sample(pool, 8)] for q in qids}
    sft = SFTDataConfig(beam_size=2, max_shots=2, construct_order=order, answer="vqa_weighted", chunk=2)
    out = {}
    for name, lvlm in (("cached", backend(model, batch=8)), ("study", backend(model, "off", 0, 0, batch=8))):
        service = AnswerService(lvlm, records, tmp_path / f"{name}.sqlite", batch_size=8)
        build_sft_data(service, qids, pools, sft, tmp_path / f"{name}.jsonl", progress=False)
        rows = service.cache.db.execute("SELECT question_id, icd_ids, answer, sum_logprob, n_tokens FROM scores")
        out[name] = ({(q, i, a): (s, n) for q, i, a, s, n in rows}, read_sft_data(tmp_path / f"{name}.jsonl"),
                     lvlm.work)
    (scores, lines, work), (ref_scores, ref_lines, ref_work) = out["cached"], out["study"]
    assert scores.keys() == ref_scores.keys() and len(scores) > 3 * (1 + 8 + 2 * 7)  # several answers a prompt
    assert all(n == ref_scores[k][1] and abs(s - ref_scores[k][0]) <= REL * max(1.0, abs(s))
               for k, (s, n) in scores.items())
    assert [[b["positions"] for b in lines[q]["beams"]] for q in qids] == \
        [[b["positions"] for b in ref_lines[q]["beams"]] for q in qids]
    assert work.prefix_hits > 0 and work.prefill_tokens < ref_work.prefill_tokens / 2


def test_a_prompt_that_cannot_be_split_is_computed_whole_beside_split_ones(model, data):
    """A question quoting the image marker makes its prompt one block: no prefix, batched with prompts that
    have one (an empty prefix padded like the rest)."""
    pool, test = data
    odd = replace(test[3], question="What is <|vision_start|> here?")
    reqs = [Request(tuple(pool[:2]), test[0]), Request(tuple(pool[:3]), odd), Request(tuple(pool[:1]), test[1])]
    cached, study = backend(model), backend(model, "off", 0, 0)
    assert [len(cached.prepare(r).blocks) for r in reqs] == [4, 1, 3]
    assert close(cached.score(reqs, ["red"] * 3), study.score(reqs, ["red"] * 3))
    assert cached.generate(reqs) == study.generate(reqs)


# ------------------------------------------------------------------ the counts
def test_the_work_model_counts_what_the_backend_computes(model, shots):
    """The benchmarks' work model (no model runs) against the tiny model's measured counts, with LRU
    evictions (a budget of a few blocks), without the prefix cache, and on the study's path; with the pixel cache
    holding two images' pixels, the images the processor handled too."""
    config = json.loads((TINY_QWEN / "config.json").read_text())
    answers = [ANSWERS[i % 4] for i in range(len(shots))]
    gen = GenerationConfig(min_new_tokens=5)  # every answer decodes max_new_tokens, as the model assumes
    for args in (("on", 1, 512, 4), ("on", 0, 512, 4), ("off", 0, 0, 4), ("on", 1, 0, 16)):
        real = QwenLVLM(cfg(*args, generation=gen), model=model[0], processor=model[1])
        counted = QwenWorkModel(backend(model, *args), cfg(*args, generation=gen), model[1], config, dtype_bytes=4)
        if real.pixel_cache is not None:  # two images' pixels and three images' features kept: pixels made
            real.pixel_cache.max_entries = counted.pixels.max_entries = 2  # again when an evicted image recurs
            one = 64 * 4 * real._image_tokens(shots[0].query)  # merged features: tokens x 64 wide x fp32
            real.vision_cache.max_bytes = counted.vision_cache.max_bytes = 3 * one
        for lvlm in (real, counted):
            if lvlm.prefix_cache is not None:
                lvlm.prefix_cache.max_bytes = 100_000  # a few blocks of the tiny model (512 bytes a position)
            lvlm.score(shots, answers)
            lvlm.generate(shots[::-1])
            lvlm.score(shots[3:9], answers[:6])
        if args[0] == "off" and OLD_GENERATE:  # 5.17's generate encodes a prompt's images once per beam
            assert replace(real.work, images=0, images_encoded=0, vision_patches=0).counts() == \
                replace(counted.work, images=0, images_encoded=0, vision_patches=0).counts()
            continue
        assert real.work.counts() == counted.work.counts(), args
        if real.pixel_cache is not None:
            assert real.pixel_cache.processed == counted.images_processed > len(counted.pixels.known), args
        if args[1]:
            assert real.prefix_cache.evictions == counted.prefix_cache.evictions > 0


# ------------------------------------------------------------------ kill and resume
def test_a_cached_beam_build_killed_mid_chunk_resumes_to_the_same_bytes(model, data, tmp_path):
    """A kill in the middle of a chunk loses that chunk's scores (one sqlite transaction per call) and the
    process's caches; the resumed build, with fresh prefix and feature caches, writes the same file: a prefix
    block's KV and an image's features are computed alone, so they do not depend on what was cached before."""
    from icl_kit.lvlm.answers import AnswerService
    from icl_kit.train.sft_data import build_sft_data

    pool, test = data
    records = {r.question_id: r for r in (*pool, *test)}
    qids = [r.question_id for r in test[5:9]]
    pools = {q: [r.question_id for r in random.Random(q).sample(pool[:16], 6)] for q in qids}
    sft = SFTDataConfig(beam_size=2, max_shots=2, construct_order="right", chunk=2)

    def build(lvlm, name: str) -> None:
        service = AnswerService(lvlm, records, tmp_path / f"{name}.sqlite", batch_size=4)
        build_sft_data(service, qids, pools, sft, tmp_path / f"{name}.jsonl", progress=False)

    build(backend(model, batch=4), "whole")
    killed = backend(model, batch=4)
    calls = {"n": 0}
    score = killed.score

    def dies(requests, answers):
        calls["n"] += (tmp_path / "resumed.jsonl").is_file()  # the first chunk is written
        if calls["n"] == 4:  # inside the second chunk's first step: its caches warm, its scores not yet stored
            raise KeyboardInterrupt
        return score(requests, answers)

    killed.score = dies
    with pytest.raises(KeyboardInterrupt):
        build(killed, "resumed")
    assert len((tmp_path / "resumed.jsonl").read_text().splitlines()) == 2
    build(backend(model, batch=4), "resumed")  # a new process: empty caches, the same rewards.sqlite
    assert (tmp_path / "resumed.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()


def test_describe_and_fingerprint(model):
    a, b = backend(model), backend(model, "off", 0)
    assert a.describe()["prefix_cache_mb"] == 64 and b.describe()["prefix_cache_mb"] == 0
    assert a.fingerprint() == b.fingerprint()  # how the KV is shared is not part of the answer cache's key
    assert replace(a.work, prefix_tokens_reused=10).as_dict()["flops"]["prefix_saved"] == 2 * 10 * 2_774_532_096
