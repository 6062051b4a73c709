"""The study's checkpoint keys that the strict loader must explain, map or refuse (docs/study.md, "Checkpoints").

- V4-x selectors carry marker keys of their decoders; the kit does not implement them.
- The study's v3->v2 converter renamed `cross_attn_layers.0.` -> `cross_attn.` and
  `attn_norms.0.` -> `attn_norm.` and dropped layers 1 and 2; the study's inference loaded such
  files non-strictly, so its cross-attention and LayerNorm stayed untrained. The kit maps the
  names back only when asked (`study_renames`), and only for a file whose source held one layer (shown by
  the file, or said by the user with `study_layers=1`).
- v2 Lightning files may carry frozen CLIP copies (ignored); LoRA/adapter weights mean the
  selector was trained on tuned encoder features, so such files are refused.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from icl_kit.core.errors import KitError

log = logging.getLogger(__name__)

RENAMES = {"cross_attn.": "cross_attn_layers.0.", "attn_norm.": "attn_norms.0."}  # study name -> ours
STUDY_V2_SUFFIX = "_v2format.ckpt"
_LAYER = re.compile(r"^(?:cross_attn_layers|attn_norms)\.(\d+)\.")
_TUNED_ENCODER = re.compile(r"lora_|\.lora\.|adapter", re.IGNORECASE)
CLIP_PREFIXES = ("lever_lm.sen_model.", "lever_lm.img_model.")

# (variant, what it adds, marker key prefixes), most specific first: later variants include earlier markers
V4_VARIANTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("V4-10", "a learnable STOP token", ("stop_token",)),
    ("V4-9", "a two-stage re-ranker", ("refine_attn.", "refine_norm.", "refine_score.", "refine_mlp.")),
    ("V4-8", "a parallel slot decoder", ("slot_emb.", "slot_self_attn_layers.", "slot_cand_attn.")),
    ("V4-7", "a low-rank DPP diversity gain", ("dpp_proj.", "dpp_lambda")),
    ("V4-6", "a topic-coverage bonus", ("topic_prototypes", "query_topic_head.", "cover_lambda")),
    ("V4-5", "an additive or bilinear scoring head", ("attn_Wq.", "attn_Wc.", "attn_v.", "bilinear.")),
    ("V4-4", "a Transformer encoder over the candidates", ("cand_encoder.",)),
    ("V4-3", "a learnable MMR diversity penalty", ("div_lambda",)),
    ("V4-2", "a GRU decoder", ("decoder_gru.", "step_emb.")),
)


def v4_variant(keys: list[str]) -> tuple[str, str, str] | None:
    """(variant, description, one marker key found) of a V4-x state dict, else None."""
    for name, what, markers in V4_VARIANTS:
        hit = next((k for k in keys if k.startswith(markers)), None)
        if hit is not None:
            return name, what, hit
    return None


def refuse_v4(keys: list[str], path: str | Path) -> None:
    found = v4_variant(keys)
    if found:
        name, what, key = found
        raise KitError(f"Checkpoint {path} is a study {name} selector ({what}; marker key {key!r}, "
                       "docs/study.md), which the kit does not support yet; evaluate a V2/V3 selector "
                       "checkpoint instead.")


def renamed_keys(keys: list[str]) -> list[str]:
    return [k for k in keys if k.startswith(tuple(RENAMES))]


def split_lightning_extras(others: list[str], path: str | Path) -> None:
    """Non-selector keys of a v2 file: CLIP copies are ignored (one log line); tuned-encoder weights refused."""
    tuned = [k for k in others if _TUNED_ENCODER.search(k)]
    if tuned:
        raise KitError(f"Checkpoint {path} also holds {len(tuned)} LoRA/adapter weights (e.g. {tuned[0]}), so its "
                       "selector was trained on the tuned encoder's features, which the kit's frozen encoder does "
                       "not produce; it is refused: evaluate a checkpoint trained on frozen CLIP features.")
    if others:
        clip = sum(k.startswith(CLIP_PREFIXES) for k in others)
        log.info("%s: ignored %d non-selector weights (%d of them frozen CLIP copies; e.g. %s)",
                 path, len(others), clip, others[0])


def explain_renames(path: str | Path, n: int) -> KitError:
    return KitError(
        f"Checkpoint {path} carries {n} keys renamed by the study's v3->v2 converter (cross_attn.*, attn_norm.*; "
        "docs/study.md, defect 3), which the study's own inference never mapped back, so every result it made "
        "with this file ran with untrained cross-attention and default LayerNorm; load the original .pt instead, "
        "or pass study_renames=True (CLI --study-renames, eval system 'path:study_renames') to map the names "
        "back to layer 0, which is right only for a file whose source held one layer."
    )


def source_layers(state: dict[str, Any], path: str | Path, hints: dict[str, Any],
                  read_layers: Callable[[Path], int]) -> tuple[int, str] | None:
    """What the file shows of its source's layer count: (layers, where it shows), else None (no evidence).

    The converter drops layers 1-2 but passes keys of layers >= 3 through unrenamed; our own files
    store num_layers; and the converter writes its output next to the source `.pt`. A converted file
    with none of these cannot be told from a one-layer one.
    """
    kept = sorted({int(m.group(1)) for k in state if (m := _LAYER.match(k))})
    if kept:
        return max(kept) + 1, f"keys of layer {kept[-1]} are still in the file"
    if isinstance(hints.get("num_layers"), int) and hints["num_layers"] >= 1:
        return hints["num_layers"], "its stored num_layers"
    name = Path(path).name
    if name.endswith(STUDY_V2_SUFFIX):
        src = Path(path).with_name(name[: -len(STUDY_V2_SUFFIX)] + ".pt")
        if src.is_file():
            return read_layers(src), f"its source {src.name} beside it"
    return None


def map_renames(state: dict[str, Any], path: str | Path, hints: dict[str, Any],
                read_layers: Callable[[Path], int], study_layers: int | None = None) -> dict[str, Any]:
    """`cross_attn.` / `attn_norm.` back to layer 0, when the file shows that its source had one layer or the
    user says so (`study_layers=1`); one KitError when layers were dropped or nothing tells."""
    shown = source_layers(state, path, hints, read_layers)
    layers, where = shown if shown else (study_layers, "as you said with study_layers")
    if layers is None:
        raise KitError(
            f"Checkpoint {path} was renamed by the study's converter, which drops layers 1 and 2, and nothing in or "
            "beside it tells whether its source had one layer or three (its .pt is not beside it); load the "
            "original .pt, or, if you know the source had one layer, say so with study_layers=1 (eval system "
            "'path:study_layers=1', CLI --study-layers 1)."
        )
    if layers > 1:
        raise KitError(
            f"Checkpoint {path} came from a {layers}-layer selector ({where}), but the study's converter kept only "
            "layer 0 and dropped the others (docs/study.md, defect 3), so its renames cannot restore it; load the "
            "original .pt instead."
        )
    out: dict[str, Any] = {}
    for k, v in state.items():
        for old, new in RENAMES.items():
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[k] = v
    log.info("%s: mapped the study converter's cross_attn.*/attn_norm.* keys back to layer 0", path)
    return out
