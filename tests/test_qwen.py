"""Qwen2.5-VL backend on the tiny local checkpoint: batching, scoring, loading errors."""

from __future__ import annotations

import copy
import logging
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from icl_kit.core.config import LVLMConfig, PromptConfig, QwenConfig
from icl_kit.core.errors import KitError
from icl_kit.data.demo.world import build_demo_world
from icl_kit.data.okvqa import load_split
from icl_kit.lvlm.base import Request
from icl_kit.lvlm.qwen import QwenLVLM, run_in_batches
from icl_kit.lvlm.registry import build_lvlm

TINY_QWEN = Path(__file__).parent / "fixtures" / "tiny-qwen2.5-vl"
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
def data(tmp_path_factory: pytest.TempPathFactory):
    root = build_demo_world(tmp_path_factory.mktemp("demo"), n_train=40, n_test=20, seed=1)
    return load_split(root, "train"), load_split(root, "val")


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

    params = Path(__file__).parents[1] / "params" / "smoke_tiny_qwen.yaml"
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
    from icl_kit.lvlm.qwen import resized_image

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
