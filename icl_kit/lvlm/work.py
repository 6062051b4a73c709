"""The work an LVLM backend did, counted, and its cost in FLOPs of an architecture.

A backend keeps one cumulative `Work` (`LVLM.work_done()` returns a copy); a stage takes one before and one
after and logs the difference (`describe`). What is counted (docs/gpu.md, "Work counted"):

    prompts           prompts answered (generate) or scored (teacher forcing)
    images            images asked of the vision stage (one per image in a prompt, per call)
    images_encoded    of those, run through the vision tower
    image_cache_hits  of those, served from the vision-feature cache (images = encoded + hits)
    vision_patches    patches (t·h·w, before the 2x2 merge) the vision tower ran on
    prefill_tokens    language-model positions computed for prompts (the prefill, prefix blocks, suffixes after
                      cached prefixes, teacher-forced answers), padding included
    pad_tokens        of those, padding
    decode_tokens     language-model positions computed while generating (one per beam per step)
    logit_tokens      positions the LM head ran on (a prompt's forward keeps only the last one's logits)
    prefix_hits       prompt blocks (system header, ICDs) whose KV came from the prefix cache
    prefix_tokens_reused  their positions: language-model work NOT done (icl_kit.lvlm.prefix)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

COUNTS = ("prompts", "images", "images_encoded", "image_cache_hits", "vision_patches", "prefill_tokens",
          "pad_tokens", "decode_tokens", "logit_tokens", "prefix_hits", "prefix_tokens_reused")


@dataclass
class Work:
    """Cumulative counts of one backend (see the module docstring); `label` says what was measured."""

    prompts: int = 0
    images: int = 0
    images_encoded: int = 0
    image_cache_hits: int = 0
    vision_patches: int = 0
    prefill_tokens: int = 0
    pad_tokens: int = 0
    decode_tokens: int = 0
    logit_tokens: int = 0
    prefix_hits: int = 0
    prefix_tokens_reused: int = 0
    label: str = "measured"

    def counts(self) -> list[int]:
        return [getattr(self, k) for k in COUNTS]

    def with_counts(self, values: list[int]) -> Work:
        """The same label with `values` (in COUNTS order), e.g. totals over ranks."""
        return Work(**dict(zip(COUNTS, (int(v) for v in values), strict=True)), label=self.label)

    def __sub__(self, before: Work) -> Work:
        return self.with_counts([a - b for a, b in zip(self.counts(), before.counts(), strict=True)])

    def as_dict(self, arch: Arch | None = None) -> dict[str, Any]:
        """Counts, label and FLOPs of `arch` (default Qwen2.5-VL-3B) as plain JSON values."""
        arch = arch or QWEN2_5_VL_3B
        return {**dataclasses.asdict(self), "flops": flops(self, arch), "flops_arch": arch.name}

    def describe(self, arch: Arch | None = None) -> str:
        """One log line: what ran, and its FLOPs at `arch`'s size (default Qwen2.5-VL-3B's)."""
        if self.label != "measured":  # simulated, or a backend that counts nothing
            return f"{self.prompts:,} prompts with {self.images:,} images ({self.label})" if self.prompts \
                else self.label
        arch = arch or QWEN2_5_VL_3B
        return (f"{self.prompts:,} prompts, {self.images:,} images ({self.images_encoded:,} encoded: "
                f"{self.vision_patches:,} patches; {self.image_cache_hits:,} from the feature cache), "
                f"{self.prefill_tokens:,} prefill tokens ({self.pad_tokens:,} padding; {self.prefix_tokens_reused:,} "
                f"more reused from {self.prefix_hits:,} cached prefix blocks), {self.decode_tokens:,} decode tokens; "
                f"≈ {flops(self, arch)['total'] / 1e12:,.1f} TFLOP at {arch.name}'s size")


# ------------------------------------------------------------------ FLOPs
@dataclass(frozen=True)
class Arch:
    """Matmul weights run per vision patch, per language-model token and per LM-head position."""

    name: str
    vision_per_patch: int
    llm_per_token: int
    head_per_token: int


def qwen_arch(config: Mapping[str, Any], name: str = "") -> Arch:
    """Weights per patch / token of a Qwen2.5-VL config (a config.json dict; text fields at the top level or
    under `text_config`). Biases and norms are left out (under 0.1%).

    vision, per patch (C channels, T frames, P pixels a side, width Dv, Lv blocks, MLP width Iv, merge m, out D):
        patch embedding C·T·P²·Dv  +  Lv·(4·Dv² + 3·Dv·Iv)  [qkv + proj, gated MLP]
        +  (m²·Dv)·(m²·Dv + D) / m²  [the merger's two layers, run once per m² patches]
    language model, per token (width D, L layers, H heads of width h, K key/value heads, MLP width I):
        L·(2·D·H·h + 2·D·K·h + 3·D·I)  [q and o, k and v, gated MLP]
    LM head, per position whose logits are computed: D·V (V = vocabulary)
    """
    text = {**config, **config.get("text_config", {})}
    v = config["vision_config"]
    dv, m = v["hidden_size"], v["spatial_merge_size"]
    channels = v.get("in_channels", v.get("in_chans", 3))
    vision = (channels * v["temporal_patch_size"] * v["patch_size"] ** 2 * dv
              + v["depth"] * (4 * dv * dv + 3 * dv * v["intermediate_size"])
              + (m * m * dv) * (m * m * dv + v["out_hidden_size"]) // (m * m))
    d, heads = text["hidden_size"], text["num_attention_heads"]
    h = text.get("head_dim") or d // heads
    llm = text["num_hidden_layers"] * (2 * d * heads * h + 2 * d * text["num_key_value_heads"] * h
                                       + 3 * d * text["intermediate_size"])
    return Arch(name or config.get("_name_or_path", "") or "model", vision, llm, d * text["vocab_size"])


# Qwen2.5-VL-3B-Instruct (benchmarks/qwen2_5_vl_3b_config.json; a test checks qwen_arch of that file):
# vision 1,505,280 + 32·(6,553,600 + 13,132,800) + 36,700,160/4 = 640,645,120 per patch (≈ 0.64 B);
# language model 36·(8,388,608 + 1,048,576 + 67,633,152) = 2,774,532,096 per token; head 2048·151,936.
QWEN2_5_VL_3B = Arch("Qwen2.5-VL-3B", 640_645_120, 2_774_532_096, 311_164_928)


def flops(work: Work, arch: Arch) -> dict[str, float]:
    """FLOPs of `work` on `arch`: 2 FLOPs (one multiply-add) per weight per patch or token.

    vision  = 2 · vision_patches · arch.vision_per_patch
    llm     = 2 · (prefill_tokens + decode_tokens) · arch.llm_per_token       (padding included: it is computed)
    lm_head = 2 · logit_tokens · arch.head_per_token
    total   = vision + llm + lm_head: the work done. Positions whose KV came from the prefix cache are not in it;
    `prefix_saved` = 2 · prefix_tokens_reused · arch.llm_per_token is what that reuse spared (not in the total).
    Attention scores (QKᵀ, AV) are left out: 4·c·D per token per layer at context c, about 7% of the
    language model's per-token work at c = 1,300 (four 256-token images and their text), and about 2% of the
    vision tower's (windows of 64 patches, four full-attention blocks).
    """
    vision = 2.0 * work.vision_patches * arch.vision_per_patch
    llm = 2.0 * (work.prefill_tokens + work.decode_tokens) * arch.llm_per_token
    head = 2.0 * work.logit_tokens * arch.head_per_token
    saved = 2.0 * work.prefix_tokens_reused * arch.llm_per_token
    return {"vision": vision, "llm": llm, "lm_head": head, "total": vision + llm + head, "prefix_saved": saved}
