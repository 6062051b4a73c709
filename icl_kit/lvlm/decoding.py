"""Decoding params -> the transformers GenerationConfig actually used, and its record.

`lvlm.generation.inherit` says where the fields the params leave unset (null) come from:

- 'none' (default): transformers' library defaults. The checkpoint's generation_config.json
  contributes only its token ids, so a checkpoint cannot change decoding (Qwen2.5-VL's asks
  for sampling with top_k=1, top_p=0.001, temperature=0.1, repetition_penalty=1.05).
- 'checkpoint': the checkpoint's generation_config.json, updated with the fields the params
  set: what `model.generate(**kwargs)` does, and so what the study did (docs/study.md, "The study's inference").

The backend passes the resolved config to `generate` explicitly and leaves the model's own
generation config with token ids only, so transformers merges nothing behind our back.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from transformers import GenerationConfig as HFGenerationConfig

from icl_kit.core.config import GenerationConfig

TOKEN_ID_FIELDS = ("eos_token_id", "pad_token_id", "bos_token_id")
# What the record shows: every field that can change an answer.
RECORDED_FIELDS = (
    "num_beams", "max_new_tokens", "min_new_tokens", "length_penalty", "do_sample", "temperature", "top_k",
    "top_p", "repetition_penalty", "no_repeat_ngram_size", "early_stopping", "num_return_sequences",
    *TOKEN_ID_FIELDS,
)


def token_ids(checkpoint: HFGenerationConfig) -> dict[str, Any]:
    """The checkpoint's eos/pad/bos token ids."""
    return {k: getattr(checkpoint, k) for k in TOKEN_ID_FIELDS}


def set_fields(g: GenerationConfig) -> dict[str, Any]:
    """The decoding fields the params set (not null), as transformers kwargs."""
    out = {f.name: getattr(g, f.name) for f in dataclasses.fields(g) if f.name != "inherit"}
    return {k: v for k, v in out.items() if v is not None}


def resolve_generation(g: GenerationConfig, checkpoint: HFGenerationConfig) -> HFGenerationConfig:
    """The GenerationConfig `generate` receives (see the module docstring for `inherit`)."""
    if g.inherit == "checkpoint":
        out = copy.deepcopy(checkpoint)
        out.update(**set_fields(g))
    else:
        out = HFGenerationConfig(**{**token_ids(checkpoint), **set_fields(g)})
    out.num_return_sequences = 1  # one answer per prompt, whatever the checkpoint says
    return out


def decoding_record(resolved: HFGenerationConfig, g: GenerationConfig) -> dict[str, Any]:
    """The resolved decoding as plain JSON values: logged, hashed into the fingerprint, written to the run."""
    filled = copy.deepcopy(resolved)  # what generate() fills in last, so the record shows every value used
    filled.update(**HFGenerationConfig._get_default_generation_params(), defaults_only=True)
    fields = {k: getattr(filled, k, None) for k in RECORDED_FIELDS}
    return {"inherit": g.inherit, "set_by_params": sorted(set_fields(g)), **fields}
