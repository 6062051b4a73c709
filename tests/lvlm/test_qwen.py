"""Qwen2.5-VL backend on the tiny local checkpoint: batching, scoring, loading errors."""

from __future__ import annotations

import copy
import json
import logging
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from icl_kit.core.config import GenerationConfig, LVLMConfig, PromptConfig, QwenConfig
from icl_kit.core.errors import KitError
from icl_kit.data.demo.world import build_demo_world
from icl_kit.data.okvqa import load_split
from icl_kit.lvlm.base import LVLM, Generation, Request
from icl_kit.lvlm.qwen import QwenLVLM, run_in_batches
from icl_kit.lvlm.registry import build_lvlm

TINY_QWEN = Path(__file__).parents[1] / "fixtures" / "tiny-qwen2.5-vl"
NEAR_TIE = 1e-4  # beam scores closer than this may legitimately swap under float round-off
BATCH = 16


def tiny_cfg(**kw) -> LVLMConfig:
    base = LVLMConfig(model=str(TINY_QWEN), device="cpu", dtype="float32", qwen=QwenConfig(max_pixels=28 * 28 * 16),
                      batch_size=BATCH)
    return replace(base, **kw)


@pytest.fixture(scope="module")
def lvlm():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is fastest and steady on a shared CPU
    yield QwenLVLM(tiny_cfg())
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def requests(data) -> list[Request]:
    """16 prompts of 0-4 shots, deliberately not in length order."""
    pool, test = data
    rng = random.Random(0)
    return [Request(tuple(rng.sample(pool, rng.randint(0, 4))), test[i]) for i in range(BATCH)]


def top_two_beam_gap(lvlm: QwenLVLM, request: Request) -> float:
    """Score gap between the two best beams of a prompt decoded alone."""
    batch = lvlm.encode([lvlm.prepare(request)])
    gen = copy.deepcopy(lvlm.gen_config)
    gen.num_return_sequences, gen.return_dict_in_generate, gen.output_scores = 2, True, True
    with torch.inference_mode():
        out = lvlm.model.generate(**batch, generation_config=gen)
    s = out.sequences_scores.tolist()
    return abs(s[0] - s[1])


# --------------------------------------------------------------- generation
def test_batched_generation_equals_alone(lvlm, requests):
    lvlm.cfg.batch_size = BATCH
    batched = lvlm.generate(requests)
    alone = [lvlm.generate([r])[0] for r in requests]
    assert len(batched) == len(requests)
    mismatches = [i for i, (a, b) in enumerate(zip(alone, batched, strict=True)) if a != b]
    for i in mismatches:
        gap = top_two_beam_gap(lvlm, requests[i])
        print(f"near tie at request {i}: alone {alone[i].text!r} batched {batched[i].text!r} gap {gap:.2e}")
        assert gap < NEAR_TIE, f"request {i} differs alone vs batched with a beam-score gap of {gap}"
    assert len(mismatches) <= 1
    assert top_two_beam_gap(lvlm, requests[0]) > 0.0  # the near-tie probe itself runs
    assert len({g.text for g in batched}) > 3  # the random model does answer differently


def test_generation_ignores_checkpoint_decoding_config(lvlm, requests):
    """The checkpoint asks for sampling with repetition_penalty=1.05; the params win."""
    gen = lvlm.model.generation_config
    assert gen.do_sample in (None, False) and gen.repetition_penalty in (None, 1.0)
    g = lvlm.gen_config
    assert (g.num_beams, g.max_new_tokens, g.length_penalty, g.do_sample, g.repetition_penalty) == (
        3, 5, 0.0, False, 1.0)
    # The backend's prefill-once path == plain transformers generate with explicit params.
    reqs = requests[3:9]
    prepared = sorted((lvlm.prepare(r) for r in reqs), key=lambda p: p.length)
    batch = lvlm.encode(prepared)
    with torch.inference_mode():
        seq = lvlm.model.generate(**batch, num_beams=3, max_new_tokens=5, length_penalty=0.0,
                                  do_sample=False, repetition_penalty=1.0)
        ours = lvlm._generate_batch(list(enumerate(prepared)))
    manual = lvlm.processor.batch_decode(seq[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert ours == manual


def test_prompt_length_is_exact_and_padding_is_left(lvlm, requests):
    prepared = [lvlm.prepare(r) for r in requests[:5]]
    batch = lvlm.encode(prepared)
    mask = batch["attention_mask"]
    assert mask.sum(dim=1).tolist() == [p.length for p in prepared]
    assert bool((mask[:, -1] == 1).all())  # every prompt ends in the last column
    assert batch["image_grid_thw"].shape[0] == sum(len(r.icds) + 1 for r in requests[:5])
    # The cached image path gives the same pixels as qwen-vl-utils' process_vision_info.
    images = [im for p in prepared for im in _images(lvlm, p)]
    ref = lvlm.processor(text=[p.text for p in prepared], images=images, padding=True,
                         padding_side="left", return_tensors="pt")
    assert torch.equal(batch["pixel_values"], ref["pixel_values"])
    assert torch.equal(batch["input_ids"], ref["input_ids"])


def test_postprocessed_answer(lvlm, requests):
    for g in lvlm.generate(requests[:4]):
        assert "Question" not in g.answer and ", " not in g.answer and g.answer == g.answer.strip()


# ------------------------------------------------------------------ scoring
def manual_score(lvlm: QwenLVLM, request: Request, answer: str) -> tuple[float, int]:
    """log p(answer | prompt) from one unpadded forward pass of prompt + answer text."""
    p = lvlm.prepare(request)
    prompt = lvlm.encode([p])
    full = lvlm.processor(text=[p.text + answer], images=_images(lvlm, p), return_tensors="pt")
    n_prompt = prompt["input_ids"].shape[1]
    ids = full["input_ids"][0]
    assert torch.equal(ids[:n_prompt], prompt["input_ids"][0])
    with torch.inference_mode():
        logits = lvlm.model(**full).logits[0]  # (L, V)
    logp = torch.log_softmax(logits, dim=-1)
    targets = ids[n_prompt:]
    picked = logp[n_prompt - 1:-1].gather(-1, targets[:, None])[:, 0]
    return float(picked.sum()), len(targets)


def _images(lvlm, prepared):
    from qwen_vl_utils import process_vision_info

    return process_vision_info(prepared.messages)[0]


def test_score_matches_manual_forward(lvlm, requests):
    answers = ["red", "two dogs", "a large white bus", "pizza", "no", "blue"]
    reqs = requests[:len(answers)]
    scores = lvlm.score(reqs, answers)
    for req, ans, s in zip(reqs, answers, scores, strict=True):
        ref_sum, ref_n = manual_score(lvlm, req, ans)
        assert s.n_tokens == ref_n
        assert s.sum_logprob == pytest.approx(ref_sum, abs=1e-3)
        assert s.mean_logprob == pytest.approx(ref_sum / ref_n, abs=1e-3)
        assert s.sum_logprob < 0


def test_score_batch_equals_alone_and_edge_cases(lvlm, requests):
    answers = ["red", "a large white bus", ""]
    batched = lvlm.score(requests[:3], answers)
    alone = [lvlm.score([r], [a])[0] for r, a in zip(requests[:3], answers, strict=True)]
    for b, a in zip(batched, alone, strict=True):
        assert b.n_tokens == a.n_tokens and b.sum_logprob == pytest.approx(a.sum_logprob, abs=1e-4)
    assert (batched[2].n_tokens, batched[2].sum_logprob, batched[2].mean_logprob) == (0, 0.0, 0.0)
    with pytest.raises(ValueError, match="2 requests but 1 answers"):
        lvlm.score(requests[:2], ["x"])


# -------------------------------------------------------- fingerprint/OOM
def test_fingerprint_stable_and_protocol_sensitive(lvlm):
    same = QwenLVLM(tiny_cfg(), model=lvlm.model, processor=lvlm.processor)
    other = QwenLVLM(tiny_cfg(prompt=PromptConfig(system_prompt="")), model=lvlm.model,
                     processor=lvlm.processor)
    pixels = QwenLVLM(tiny_cfg(qwen=QwenConfig(max_pixels=28 * 28 * 32)), model=lvlm.model, processor=lvlm.processor)
    assert same.fingerprint() == lvlm.fingerprint()
    assert len({lvlm.fingerprint(), other.fingerprint(), pixels.fingerprint()}) == 3
    # Same architecture, one weight changed (a fine-tune): cached answers must not be shared.
    tuned = copy.deepcopy(lvlm.model)
    with torch.no_grad():
        next(tuned.parameters()).view(-1)[0] += 0.5
    assert QwenLVLM(tiny_cfg(), model=tuned, processor=lvlm.processor).fingerprint() != lvlm.fingerprint()


def test_oom_halves_the_batch_and_keeps_order(caplog):
    sizes: list[int] = []

    def fn(chunk: list[int]) -> list[int]:
        sizes.append(len(chunk))
        if len(chunk) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return [x * 10 for x in chunk]

    with caplog.at_level(logging.WARNING):
        out = run_in_batches(list(range(10)), 16, fn)
    assert out == [x * 10 for x in range(10)]
    assert sizes == [10, 8, 4, 2, 2, 2, 2, 2]
    assert "retrying with batch size 8" in caplog.text and "batch size 2" in caplog.text


def test_oom_at_batch_one_is_a_clear_error():
    def fn(chunk):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(KitError, match="single prompt"):
        run_in_batches([1, 2], 2, fn)


def test_other_errors_propagate():
    def fn(chunk):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_in_batches([1, 2], 2, fn)


# ------------------------------------------------------------ load errors
def test_missing_model_folder(tmp_path):
    with pytest.raises(KitError, match="no such folder"):
        QwenLVLM(tiny_cfg(model=str(tmp_path / "no-model")))
    with pytest.raises(KitError, match="without config.json"):
        QwenLVLM(tiny_cfg(model=str(tmp_path)))


def test_uncached_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(KitError, match="HF_HUB_OFFLINE is set; download it .*hf download nobody/not-a-model"):
        QwenLVLM(tiny_cfg(model="nobody/not-a-model"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda():
    with pytest.raises(KitError, match="CUDA is not available"):
        QwenLVLM(tiny_cfg(device="cuda"))


def test_build_lvlm_dispatches_to_qwen():
    from icl_kit.core.config import load_params

    params = load_params(None, {"lvlm.model": str(TINY_QWEN), "lvlm.device": "cpu"})
    assert isinstance(build_lvlm(params), QwenLVLM)


def test_build_lvlm_dispatches_to_simulated(data, tmp_path):
    from icl_kit.core.config import load_params
    from icl_kit.lvlm.simulated import SimulatedLVLM

    root = build_demo_world(tmp_path / "demo", n_train=12, n_test=10, seed=0)
    params = load_params(None, {"lvlm.backend": "simulated", "data.root": str(root)})
    assert isinstance(build_lvlm(params), SimulatedLVLM)


def test_simulated_finds_the_world_through_okvqa_path(tmp_path, monkeypatch):
    """data.root '' falls back to $OKVQA_PATH for the simulator, as it does for the loader."""
    from icl_kit.core.config import load_params
    from icl_kit.lvlm.simulated import SimulatedLVLM

    root = build_demo_world(tmp_path / "demo", n_train=12, n_test=10, seed=0)
    params = load_params(None, {"lvlm.backend": "simulated"})
    monkeypatch.delenv("OKVQA_PATH", raising=False)
    with pytest.raises(KitError, match="needs data.root to point at a demo world"):
        build_lvlm(params)
    monkeypatch.setenv("OKVQA_PATH", str(root))
    sim = build_lvlm(params)
    assert isinstance(sim, SimulatedLVLM) and sim.latent_path == root / "demo_latent.json"


def test_cli_ask_prints_layout_and_answer(tmp_path, capsys):
    from icl_kit.cli import main

    params = Path(__file__).parents[2] / "params" / "smoke_tiny_qwen.yaml"
    root = build_demo_world(tmp_path / "demo", n_train=20, n_test=10, seed=0)
    qid = load_split(root, "val")[0].question_id
    sets = ["-p", f"data.root={root}", "-p", "data.demo_train=20", "-p", "data.demo_test=10",
            "-p", f"lvlm.model={TINY_QWEN}"]
    assert main(["ask", "--params", str(params), *sets, "--question-id", str(qid), "--shots", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    images = [line for line in out if line.startswith("  [image qid=")]
    assert len(images) == 4 and images[-1].startswith(f"  [image qid={qid} ")
    assert out[-2].startswith("raw: ") and out[-1].startswith("answer: ")
    assert main(["ask", "--params", str(params), *sets, "--question-id", "1", "--shots", "1"]) == 2


def test_unreadable_image_is_a_clear_error(lvlm, data, tmp_path):
    from icl_kit.lvlm.qwen_images import resized_image

    pool, test = data
    bad = replace(test[0], image_path=tmp_path / "COCO_val2014_000000000001.jpg")
    bad.image_path.write_bytes(b"not a jpeg")
    with pytest.raises(KitError, match=r"COCO_val2014_000000000001.jpg for question \d+ cannot be read"):
        lvlm.generate([Request((pool[0],), bad)])
    with pytest.raises(KitError, match=r"COCO_val2014_000000000001.jpg cannot be read"):
        resized_image(str(bad.image_path), 3136, 12544)
    missing = replace(test[0], image_path=tmp_path / "absent.jpg")
    with pytest.raises(KitError, match=r"absent.jpg for question \d+ is missing"):
        lvlm.score([Request((), missing)], ["red"])


# ------------------------------------------------------------- decoding
def study_generate(model, batch) -> torch.Tensor:
    """The study's call (docs/study.md): four kwargs, the rest from the checkpoint's generation config."""
    with torch.inference_mode():
        return model.generate(**batch, max_new_tokens=5, num_beams=3, length_penalty=0.0, min_new_tokens=0)


def test_inherit_checkpoint_decodes_as_the_study(lvlm, requests, tmp_path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    from icl_kit.lvlm.agreement import DECODING_FILE, write_description

    study = GenerationConfig(inherit="checkpoint", do_sample=None, repetition_penalty=None)
    inherit = QwenLVLM(tiny_cfg(generation=study, batch_size=1))
    d = inherit.decoding
    # The checkpoint's sampling flags (tests/fixtures/tiny-qwen2.5-vl/generation_config.json), the params' four.
    assert (d["do_sample"], d["top_k"], d["top_p"], d["temperature"], d["repetition_penalty"]) == (
        True, 1, 0.001, 0.1, 1.05)
    assert (d["num_beams"], d["max_new_tokens"], d["min_new_tokens"], d["length_penalty"]) == (3, 5, 0, 0.0)
    assert lvlm.decoding["do_sample"] is False and lvlm.decoding["repetition_penalty"] == 1.0
    assert inherit.fingerprint() != lvlm.fingerprint()
    fresh = Qwen2_5_VLForConditionalGeneration.from_pretrained(TINY_QWEN, dtype=torch.float32).eval()
    for r in requests[:6]:
        batch = inherit.encode([inherit.prepare(r)])
        ref = study_generate(fresh, batch)
        want = inherit.processor.batch_decode(ref[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        assert [g.text for g in inherit.generate([r])] == want
    write_description(inherit, tmp_path)
    record = json.loads((tmp_path / DECODING_FILE).read_text())
    assert record["decoding"] == d and record["attn_implementation"] == "sdpa" and record["dtype"] == "float32"


def test_eos_and_min_new_tokens_are_params(lvlm, requests):
    stop = QwenLVLM(tiny_cfg(generation=GenerationConfig(eos_token_id=[1026], min_new_tokens=3)),
                    model=lvlm.model, processor=lvlm.processor)
    assert stop.gen_config.eos_token_id == [1026] and lvlm.gen_config.eos_token_id == [1026, 1024]
    assert stop.fingerprint() != lvlm.fingerprint()
    tok = lvlm.processor.tokenizer
    for g in stop.generate(requests[:4]):
        assert len(tok(g.text, add_special_tokens=False).input_ids) >= 3


def test_null_pixel_bounds_are_qwen_vl_utils_defaults(lvlm, requests):
    from icl_kit.lvlm.qwen_images import image_tokens

    assert image_tokens(480, 640, None, None) == 17 * 23 == 391  # a COCO image keeps its size (sides / 28)
    assert image_tokens(480, 640, 3136, 200704) == 13 * 18 == 234  # the kit's default cap
    assert image_tokens(20, 20, None, None) == 4  # the floor: 4 tokens (56 x 56)
    free = QwenLVLM(tiny_cfg(qwen=QwenConfig(min_pixels=None, max_pixels=None)), model=lvlm.model,
                    processor=lvlm.processor)
    prepared = [free.prepare(r) for r in requests[:4]]
    batch = free.encode(prepared)
    assert batch["attention_mask"].sum(dim=1).tolist() == [p.length for p in prepared]
    assert free.fingerprint() != lvlm.fingerprint()
    assert "min_pixels" not in free.messages(requests[0])[-1]["content"][0]


# ------------------------------------------------------------- shared prefill
def test_shared_prefill_auto_checks_and_falls_back(lvlm, requests, caplog, monkeypatch):
    auto = QwenLVLM(tiny_cfg(), model=lvlm.model, processor=lvlm.processor)
    assert auto.use_prefill is None
    ref = auto.generate(requests[:4])
    assert auto.use_prefill is True  # the two paths agree on the tiny model (this transformers' cache API)
    broken = QwenLVLM(tiny_cfg(), model=lvlm.model, processor=lvlm.processor)

    def fail(batch, prepared=None):
        raise RuntimeError("cache layout changed")

    monkeypatch.setattr(broken, "_generate_prefilled", fail)
    with caplog.at_level(logging.WARNING):
        assert broken.generate(requests[:4]) == ref
    assert broken.use_prefill is False
    assert "using plain generate and scoring, because on a check prompt it failed (RuntimeError: cache" in caplog.text
    off = QwenLVLM(tiny_cfg(shared_prefill="off"), model=lvlm.model, processor=lvlm.processor)
    assert off.use_prefill is False and off.generate(requests[:4]) == ref


def test_prefill_of_a_prompt_ending_in_an_image_is_a_kit_error(lvlm, requests):
    batch = lvlm.encode([lvlm.prepare(requests[0])])
    batch["mm_token_type_ids"][:, -1] = 1
    with pytest.raises(KitError, match="end in a text token.*shared_prefill: off"):
        lvlm.prefill(batch)


def test_both_cache_apis():
    from types import SimpleNamespace

    from transformers import Qwen2_5_VLForConditionalGeneration

    from icl_kit.lvlm.qwen_loading import cache_kwarg, output_cache

    class Old:  # transformers < 5.24: forward(..., past_key_values=...)
        def forward(self, input_ids=None, past_key_values=None): ...

    assert cache_kwarg(Old) == "past_key_values"
    import transformers
    new_api = tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (5, 24)
    assert cache_kwarg(Qwen2_5_VLForConditionalGeneration) == ("cache" if new_api else "past_key_values")
    assert output_cache(SimpleNamespace(past_key_values="kv")) == "kv"
    assert output_cache(SimpleNamespace(cache="kv2", past_key_values=None)) == "kv2"


# ------------------------------------------------------------- first run on a GPU box
def test_attention_choice(monkeypatch, caplog):
    import sys
    import types

    from icl_kit.lvlm.qwen_loading import flash_attn_problem, resolve_attn

    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
    with caplog.at_level(logging.INFO):
        assert resolve_attn("auto", cpu) == "sdpa"
    with pytest.raises(KitError, match="flash_attention_2' but flash-attention 2 needs CUDA"):
        resolve_attn("flash_attention_2", cpu)
    monkeypatch.setitem(sys.modules, "flash_attn", None)  # not installed: import fails
    assert flash_attn_problem().startswith("flash-attn does not import")
    # A module that imports but is no real install (find_spec alone would accept it).
    monkeypatch.setitem(sys.modules, "flash_attn", types.ModuleType("flash_attn"))
    assert "transformers does not report" in flash_attn_problem()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert resolve_attn("auto", cuda) == "sdpa"
    assert caplog.text.count("using sdpa because transformers does not report") == 1
    assert resolve_attn("eager", cuda) == "eager"


def test_cached_hub_id_loads_from_its_snapshot_without_network(tmp_path, monkeypatch):
    import shutil
    import socket

    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someorg--tiny-qwen"
    shutil.copytree(TINY_QWEN, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("network call")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    from icl_kit.core.hub import locate_model

    assert locate_model("someorg/tiny-qwen", "model", "lvlm.model") == str(repo / "snapshots" / commit)
    assert QwenLVLM(tiny_cfg(model="someorg/tiny-qwen")).fingerprint()  # loads, no network call


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA messages")
def test_device_messages(caplog):
    from icl_kit.core.devices import resolve_device

    with caplog.at_level(logging.INFO):
        assert resolve_device("auto", "lvlm.device").type == "cpu"
    assert "lvlm.device=auto chose cpu" in caplog.text
    with pytest.raises(KitError, match=r"lvlm.device='cuda' but CUDA is not available here: this torch is a") as e:
        resolve_device("cuda", "lvlm.device")
    assert str(e.value).count(".") >= 1 and "\n" not in str(e.value)


def test_fingerprint_covers_attention_and_decoding(lvlm):
    eager = copy.deepcopy(lvlm.model)
    eager.config._attn_implementation = "eager"
    assert QwenLVLM(tiny_cfg(), model=eager, processor=lvlm.processor).fingerprint() != lvlm.fingerprint()
    beams = QwenLVLM(tiny_cfg(generation=GenerationConfig(num_beams=2)), model=lvlm.model, processor=lvlm.processor)
    assert beams.fingerprint() != lvlm.fingerprint()


# ------------------------------------------------------------- batch agreement
class FlipWhenBatched(LVLM):
    """The real LVLM, except that batched answers to the queries in `flip` are changed (a known disagreement)."""

    def __init__(self, inner: QwenLVLM, flip: set[int]) -> None:
        self.inner, self.flip, self.calls = inner, flip, 0
        self.device = inner.device

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def generate(self, requests):
        self.calls += 1
        out = self.inner.generate(requests)
        if len(requests) == 1:
            return out
        return [Generation(g.text + "!", g.answer) if r.query.question_id in self.flip else g
                for r, g in zip(requests, out, strict=True)]

    def score(self, requests, answers):
        return self.inner.score(requests, answers)


def test_agreement_check_bf16_measures_records_and_stops(data, tmp_path):
    from icl_kit.lvlm.agreement import AGREEMENT_FILE, check_agreement, sample_requests

    pool, test = data
    cfg = tiny_cfg(dtype="bfloat16", agreement_check=20)
    bf16 = QwenLVLM(cfg)
    record = check_agreement(bf16, cfg, pool, test, tmp_path, seed=0)
    reqs = sample_requests(pool, test, 20, 0)
    assert sample_requests(pool, test, 20, 0) == reqs and sorted({len(r.icds) for r in reqs}) == [1, 2, 3, 4]
    assert record == json.loads((tmp_path / AGREEMENT_FILE).read_text())
    assert (record["n"], record["batch_size"], record["dtype"]) == (20, BATCH, "bfloat16")
    assert record["agree"] + len(record["differ"]) == 20 and record["agree"] >= 17  # bf16 round-off: a few at most
    assert all(d["batched"] != d["alone"] for d in record["differ"])

    flip = {reqs[i].query.question_id for i in (0, 1, 2)}
    flipped = FlipWhenBatched(QwenLVLM(tiny_cfg(dtype="bfloat16", agreement_check=20)), flip)
    n_flip = sum(r.query.question_id in flip for r in reqs)
    before = record["agree"]
    with pytest.raises(KitError, match=rf"on {20 - before + n_flip}/20 prompts .* lvlm.batch_size: 1 .* float32"):
        check_agreement(flipped, replace(cfg, max_disagreement=0.05), pool, test, tmp_path / "run2", seed=0)
    again = json.loads((tmp_path / "run2" / AGREEMENT_FILE).read_text())  # kept for inspection
    assert again["agree"] == before - n_flip and n_flip >= 3
    calls = flipped.calls
    lenient = replace(cfg, max_disagreement=0.5)
    assert check_agreement(flipped, lenient, pool, test, tmp_path / "run2", seed=0) == again
    assert flipped.calls == calls  # measured once per fingerprint: read back, not recomputed
    assert check_agreement(bf16, replace(cfg, agreement_check=None), pool, test, tmp_path / "r3", 0) is None  # CPU
    assert check_agreement(bf16, replace(cfg, batch_size=1), pool, test, tmp_path / "r4", 0) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA skip")
def test_gpu_benchmark_skips_without_cuda():
    import subprocess
    import sys

    bench = Path(__file__).parents[2] / "benchmarks" / "bench_gpu_lvlm.py"
    out = subprocess.run([sys.executable, str(bench)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert out.stdout.count("\n") == 1 and out.stdout.startswith("bench_gpu_lvlm: skipped, no usable CUDA device")


def test_run_context_records_decoding_and_agreement(tmp_path):
    from icl_kit.core.config import load_params
    from icl_kit.lvlm.agreement import AGREEMENT_FILE, DECODING_FILE
    from icl_kit.run_context import RunContext

    root = build_demo_world(tmp_path / "demo", n_train=20, n_test=10, seed=0)
    params = load_params(None, {
        "runs_dir": str(tmp_path / "runs"), "run_name": "r", "data.root": str(root), "lvlm.model": str(TINY_QWEN),
        "lvlm.device": "cpu", "lvlm.dtype": "float32", "lvlm.qwen.max_pixels": 28 * 28 * 16,
        "lvlm.agreement_check": 8, "pools.size": 8, "eval.shots": [1], "train.reward.shots": [1],
        "train.val_shots": [1]})
    ctx = RunContext.build(params)
    fingerprint = ctx.lvlm.fingerprint()
    run = tmp_path / "runs" / "r"
    decoding = json.loads((run / DECODING_FILE).read_text())
    agreement = json.loads((run / AGREEMENT_FILE).read_text())
    assert decoding["fingerprint"] == agreement["fingerprint"] == fingerprint
    assert decoding["decoding"]["num_beams"] == 3 and decoding["device"] == "cpu"
    assert agreement["n"] == 8 and agreement["agree"] == 8  # fp32: batched == one at a time here
