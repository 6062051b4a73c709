"""Files in the existing study's formats, written from the study's description (docs/study.md), not from
icl_kit, for tests. Every builder writes what the study's code writes, including its defects (renamed keys,
dropped layers, fallback scores, parity-target SFT files, negative InfoScores).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

PREFIX = "lever_lm.pointer_selector."


# ------------------------------------------------------------- selectors (both generations)
def study_state_dict(d: int = 512, h: int = 256, layers: int = 1, gate: bool = False,
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """A gate-less (gate=False, the seed report's) or gated (gate=True, from 2025-12-29) state dict, random weights."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.3

    sd = {} if d == h else {"input_proj.weight": rnd(h, d)}
    for i in range(layers):
        sd |= {f"cross_attn_layers.{i}.in_proj_weight": rnd(3 * h, h),
               f"cross_attn_layers.{i}.in_proj_bias": rnd(3 * h),
               f"cross_attn_layers.{i}.out_proj.weight": rnd(h, h),
               f"cross_attn_layers.{i}.out_proj.bias": rnd(h),
               f"attn_norms.{i}.weight": 1 + rnd(h),
               f"attn_norms.{i}.bias": rnd(h)}
    sd |= {"query_proj.weight": torch.eye(h) + rnd(h, h), "cand_proj.weight": torch.eye(h) + rnd(h, h)}
    if gate:
        sd |= {"query_update_gate.weight": rnd(h, 2 * h), "query_update_gate.bias": rnd(h)}
    return sd


def reference_greedy(sd: dict[str, torch.Tensor], q: torch.Tensor, cands: torch.Tensor, k: int) -> list[list[int]]:
    """The study's selector forward in eval mode (gate iff the gate keys exist), one query at a time.

    torch's own nn.MultiheadAttention, chosen candidates at -100.0, the gate-less scores computed once.
    """
    h = sd["query_proj.weight"].shape[0]
    layers = len({k.split(".")[1] for k in sd if k.startswith("cross_attn_layers.")})
    gate = "query_update_gate.weight" in sd
    w_in = sd.get("input_proj.weight", torch.eye(h))
    out = []
    for x_q, x_c in zip(q, cands, strict=True):
        qv, cv = w_in @ x_q, x_c @ w_in.T  # (h,), (K, h)
        for i in range(layers):
            attn = nn.MultiheadAttention(h, 1, batch_first=True)
            attn.load_state_dict({n: sd[f"cross_attn_layers.{i}.{n}"] for n in
                                  ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")})
            with torch.no_grad():
                a = attn.eval()(qv[None, None], cv[None], cv[None])[0][0, 0]
            qv = F.layer_norm(a + qv, (h,), sd[f"attn_norms.{i}.weight"], sd[f"attn_norms.{i}.bias"])
        s = F.normalize(sd["query_proj.weight"] @ qv, dim=0)
        c = F.normalize(cv @ sd["cand_proj.weight"].T, dim=1)
        scores = c @ s / 0.1
        chosen: list[int] = []
        for _ in range(k):
            logits = (c @ s / 0.1 if gate else scores).clone()
            logits[chosen] = -100.0
            idx = int(logits.argmax())
            chosen.append(idx)
            if gate:
                w_g, b_g = sd["query_update_gate.weight"], sd["query_update_gate.bias"]
                gt = torch.sigmoid(w_g @ torch.cat([s, c[idx]]) + b_g)
                s = F.normalize(gt * s + (1 - gt) * c[idx], dim=0)
        out.append(chosen)
    return out


V4_EXTRA = {  # V4-x selectors: one marker key per variant (h = 256, shot_num = 2)
    "V4-2": {"decoder_gru.weight_ih": (768, 256), "decoder_gru.weight_hh": (768, 256), "step_emb.weight": (2, 256)},
    "V4-3": {"decoder_gru.weight_ih": (768, 256), "div_lambda": (2,)},
    "V4-4": {"decoder_gru.weight_ih": (768, 256), "div_lambda": (2,),
             "cand_encoder.layers.0.linear1.weight": (1024, 256)},
    "V4-5": {"decoder_gru.weight_ih": (768, 256), "attn_Wq.weight": (256, 256), "attn_v.weight": (1, 256)},
    "V4-6": {"decoder_gru.weight_ih": (768, 256), "topic_prototypes": (16, 256), "cover_lambda": ()},
    "V4-7": {"decoder_gru.weight_ih": (768, 256), "dpp_proj.weight": (32, 256), "dpp_lambda": ()},
    "V4-8": {"slot_emb.weight": (8, 256), "slot_norms.0.weight": (256,)},
    "V4-9": {"refine_score.weight": (1, 256), "decoder_gru.weight_ih": (768, 256), "step_emb.weight": (2, 256)},
    "V4-10": {"stop_token": (1, 256), "decoder_gru.weight_ih": (768, 256), "step_emb.weight": (2, 256)},
}


def v4_state_dict(variant: str) -> dict[str, torch.Tensor]:
    """A V4-x state dict: the shared keys (no gate) plus the variant's markers (docs/study.md, "Checkpoints")."""
    return study_state_dict() | {k: torch.zeros(s) for k, s in V4_EXTRA[variant].items()}


# -------------------------------------------------------------- checkpoint files
def write_v3_pt(path: Path, sd: dict[str, torch.Tensor], epoch: int = 0, phase: str = "grpo") -> Path:
    """The GRPO trainer's `.pt` (no config of ours)."""
    metrics = {"grpo_loss": 0.1, "val_loss": 0.2} if phase == "grpo" else {"rce_loss": 0.3, "val_loss": 0.2}
    torch.save({"epoch": epoch, "phase": phase, "model_state_dict": sd, "kl_beta": 0.15, "metrics": metrics}, path)
    return path


def study_convert(src: Path) -> Path:
    """The study's converter: drop layers 1-2, rename layer 0, prefix; write `<stem>_v2format.ckpt`."""
    obj = torch.load(src, weights_only=True)
    sd = obj.get("model_state_dict", obj)
    out = {}
    for k, v in sd.items():
        if any(s in k for s in ("cross_attn_layers.1", "cross_attn_layers.2", "attn_norms.1", "attn_norms.2")):
            continue
        k = k.replace("cross_attn_layers.0.", "cross_attn.").replace("attn_norms.0.", "attn_norm.")
        out[PREFIX + k] = v
    dst = src.with_name(src.name[:-3] + "_v2format.ckpt")
    torch.save({"epoch": obj.get("epoch", 0), "global_step": 0, "pytorch-lightning_version": "2.0.0",
                "state_dict": out, "hyper_parameters": {"lr": 1e-4, "weight_decay": 0.001, "warm_steps": 0.05}}, dst)
    return dst


def write_lightning_ckpt(path: Path, sd: dict[str, torch.Tensor], clip: bool = True, lora: bool = False) -> Path:
    """An SFT Lightning file with the frozen CLIP copies (and PEFT LoRA keys when `lora`)."""
    state = {PREFIX + k: v for k, v in sd.items()}
    if clip:
        state |= {"lever_lm.sen_model.text_model.embeddings.token_embedding.weight": torch.zeros(4, 2),
                  "lever_lm.sen_model.text_projection.weight": torch.zeros(2, 2),
                  "lever_lm.img_model.vision_model.embeddings.patch_embedding.weight": torch.zeros(2, 3, 2, 2),
                  "lever_lm.img_model.visual_projection.weight": torch.zeros(2, 2)}
    if lora:
        state["lever_lm.img_model.base_model.model.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"] = \
            torch.zeros(2, 2)
    torch.save({"epoch": 12, "global_step": 1300, "pytorch-lightning_version": "2.1.0", "state_dict": state,
                "hyper_parameters": {"lr": 1e-4, "weight_decay": 1e-3, "warm_steps": 0.05}}, path)
    return path


# ------------------------------------------------------------ pools
def study_rand_sampler(n_train: int, n_anchors: int, k: int) -> tuple[list[int], dict[int, list[int]], int]:
    """The RandSampler, written from its description: (anchors, pools, number of redraws)."""
    random.seed(42)
    anchors = random.sample(range(0, n_train), n_anchors)
    random.seed(42)
    pools, redraws = {}, 0
    for s in anchors:
        c = random.sample(range(0, n_train), k)
        while s in c:
            c = random.sample(list(range(0, n_train)), k)
            redraws += 1
        pools[s] = c
    return anchors, pools, redraws


def write_pool_cache(cache: Path, dataset: str, anchors: list[int], pools: dict[int, list[int]],
                     k: int) -> tuple[Path, Path]:
    """The sampler's cache files: the anchor list and the candidate object (keys = anchor index as string)."""
    cache.mkdir(parents=True, exist_ok=True)
    a = cache / f"{dataset}-anchor_sample_num:{len(anchors)}.json"
    c = cache / f"{dataset}-RandSampler-anchor_sample_num: {len(anchors)}:{k}.json"
    a.write_text(json.dumps(anchors))
    c.write_text(json.dumps({str(s): pools[s] for s in anchors}))
    return a, c


# --------------------------------------------------------------- result files
def metrics_json(path: Path, runs: dict[str, dict[int, float]], n: int = 100) -> Path:
    """metrics.json: {"<datetime>-test_data_num=N-<Retriever>": {"shot_num=k": fraction}}."""
    obj = {}
    for i, (retriever, shots) in enumerate(runs.items()):
        key = f"2025-12-2{i} 10:11:12.123456-test_data_num={n}-{retriever.split('#')[0]}"
        obj[key] = {f"shot_num={k}": v for k, v in shots.items()}
    path.write_text(json.dumps(obj, indent=4))
    return path


def baseline_json(path: Path, shots: dict[int, float]) -> Path:
    """random_predict.py: flat {"shot_num_k": fraction} over the full validation split."""
    path.write_text(json.dumps({f"shot_num_{k}": v for k, v in shots.items()}))
    return path


# ---------------------------------------------------------------- RL data
def rl_candidate(pointer: list[int], pred: str, acc: float, mode: str = "vqaEval", method: str = "beam",
                 **extra: Any) -> dict[str, Any]:
    """One pointer candidate."""
    return {"pointer": pointer, "gen_method": method, "beam_rank": 0, "beam_score": 1.0, "logprob_score": -1.0,
            "temperature": None, "vqa_raw_generation": pred, "vqa_pred_answer": pred,
            "vqa_correct": int(acc > 0), "vqa_acc_score": acc, "vqa_rel_token_f1": 0.0, "vqa_rel_edit_sim": 0.0,
            "vqa_rel_score": 0.0, "vqa_eval_mode": mode, "eval_split_used": "train" if mode == "vqaEval" else mode,
            "eval_failed": mode == "error", **extra}


def rl_query(position: int, question_id: int, answers: list[str], cands: list[dict[str, Any]],
             pool: list[int] | None = None) -> dict[str, Any]:
    """One query entry; `pool` given = a k64/fix-v3 file (local pointers), else d33 (global)."""
    entry: dict[str, Any] = {"query": {"query_id": position, "question_id": question_id, "image_id": 1,
                                       "question": "q?", "gt_answers_raw": answers, "gt_answers_norm": answers},
                             "pointer_candidates": cands}
    if pool is not None:
        entry["candidate_pool_ids"] = pool
    return entry


def write_rl_data(path: Path, queries: dict[int, dict[str, Any]], k64: bool = False) -> Path:
    meta = ({"version": "k64", "description": "test", "sampler_cache": "x", "params": {}} if k64 else
            {"created_at": "2025-12-16 10:00:00", "vqa_model": "Qwen2.5-VL-3B-Instruct", "strict_eval": True})
    path.write_text(json.dumps({"_meta": meta, **{str(k): v for k, v in queries.items()}}))
    return path


# ------------------------------------------------------------ a run to import into
def params_file(path: Path, data_root: Path, runs_dir: Path, pool_size: int = 6, anchors: int = 8,
                **sections: Any) -> Path:
    """A params file (JSON is YAML) over `data_root` with the study's sampler, small pools and 2-shot rewards."""
    raw: dict[str, Any] = {"data": {"root": str(data_root)}, "runs_dir": str(runs_dir), "run_name": "study",
                           "pools": {"size": pool_size, "sampler": "study_rand", "anchors": anchors},
                           "eval": {"shots": [1, 2]}, "train": {"reward": {"shots": [2]}, "val_shots": [2]}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    path.write_text(json.dumps(raw))
    return path


# --------------------------------------------------------------- InfoScore beams
def write_beam_json(path: Path, beams: dict[int, list[tuple[list[int], list[float]]]]) -> Path:
    """generated_data JSON: per anchor position, beams best-first as (ICDs in selection order, step scores);
    `id_list` holds each beam in prompt order `[icd_2, icd_1, anchor]`, `score_list` its last-step score."""
    obj = {}
    for anchor, entries in beams.items():
        obj[str(anchor)] = {
            "id_list": [[*reversed(icds), anchor] for icds, _ in entries],
            "score_list": [steps[-1] for _, steps in entries],
            "shot_scores": [list(steps) for _, steps in entries],
            "beams": [{"shots": [{"id": i, "score": s} for i, s in zip(icds, steps, strict=True)],
                       "final_score": steps[-1], "full_sequence": [*reversed(icds), anchor]}
                      for icds, steps in entries],
            "few_shot_num": len(entries[0][0]),
        }
    path.write_text(json.dumps(obj))
    return path
