"""Params of the vision-language model: prompt protocol, decoding, and each backend's own section."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import ClassVar, Literal

from icl_kit.core.config.fields import opt, section
from icl_kit.core.errors import KitError


# --------------------------------------------------------------------------- lvlm
@dataclass
class PromptConfig:
    """The demonstration prompt protocol (defaults = the existing study)."""

    system_prompt: str = opt(
        "You will see example image-question pairs, each followed by its short answer. "
        "Answer the last question in the same short format: a word or a short phrase.",
        "System message text; '' means no system message (Qwen's chat template then adds its own default).",
    )
    system_prompt_file: str = opt(
        "", "PATH or PATH:KEY: read the system message from a text file (trailing newlines dropped) or from "
        "the (dotted) KEY of a YAML file, e.g. the study's configs/infer_model/qwen2.5_vl_3B.yaml:system_prompt; "
        "$VARS and ~ are expanded. When set it replaces system_prompt; '' = use system_prompt.",
    )
    icd_template: str = opt("Question:{question} Short answer:{answer}", "Text after each ICD image.")
    query_template: str = opt("Question:{question} Short answer:", "Text after the query image.")
    icd_answer_field: Literal["answer", "first"] = opt(
        "answer", "ICD answer shown: the most frequent of 10 ('answer') or the first listed."
    )
    icd_order: Literal["as_selected", "reversed"] = opt(
        "as_selected", "Order of ICDs in the prompt relative to the selection order."
    )
    postprocess: Literal["study", "strip", "none"] = opt(
        "study",
        "Answer post-processing: 'study' cuts at the first Question/Answer/Short, then at ', '.",
    )

    def __post_init__(self) -> None:
        check_template("lvlm.prompt.icd_template", self.icd_template, ("question", "answer"))
        check_template("lvlm.prompt.query_template", self.query_template, ("question",))


def check_template(key: str, template: str, fields: tuple[str, ...]) -> None:
    """A prompt template may use only `{field}` placeholders of `fields` (and `{{`/`}}` for braces)."""
    try:
        template.format(**{f: "" for f in fields})
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        allowed = ", ".join("{" + f + "}" for f in fields)
        raise KitError(f"{key}={template!r} is not a valid template ({type(exc).__name__}: {exc}); "
                       f"use only the placeholders {allowed}, and {{{{ }}}} for literal braces.") from None


@dataclass
class GenerationConfig:
    """Decoding settings. A null field is unset: `inherit` says where its value comes from."""

    inherit: Literal["none", "checkpoint"] = opt(
        "none", "Where unset (null) fields come from: 'none' = transformers' library defaults (never the "
        "checkpoint's generation_config.json, so a checkpoint cannot change decoding); 'checkpoint' = the "
        "model's generation_config.json, as plain `model.generate(**kwargs)` does (the study's protocol)."
    )
    num_beams: int | None = opt(3, "Beam width (1 = greedy).", min=1)
    max_new_tokens: int | None = opt(5, "Maximum answer tokens.", min=1)
    min_new_tokens: int | None = opt(0, "Minimum answer tokens (the study passes 0).", min=0)
    length_penalty: float | None = opt(0.0, "Beam-search length penalty.")
    do_sample: bool | None = opt(False, "Sample instead of beam/greedy search.")
    repetition_penalty: float | None = opt(
        1.0, "Repetition penalty (Qwen's own generation config uses 1.05; 1.0 = none).", min=0.0
    )
    temperature: float | None = opt(None, "Sampling temperature (used only when sampling).", min=0.0)
    top_k: int | None = opt(None, "Sampling top-k (used only when sampling).", min=0)
    top_p: float | None = opt(None, "Sampling top-p (used only when sampling).", min=0.0, max=1.0)
    eos_token_id: list[int] | None = opt(
        None, "Token ids that end an answer; null = the checkpoint's (Qwen2.5-VL: <|im_end|> and "
        "<|endoftext|>). The study passes the tokenizer's eos only: [151645] (<|im_end|>) for Qwen2.5-VL."
    )


@dataclass(frozen=True)
class BackendTraits:
    """What the rest of the kit asks of a backend, declared with its section (never matched by its name)."""

    simulated: bool  # a stand-in, not a model: every number it makes is labelled so
    weights: str | None  # what lvlm.model names, located before a run starts (None: the backend has no weights)


@dataclass
class QwenConfig:
    """Settings only the Qwen2.5-VL backend reads."""

    TRAITS: ClassVar[BackendTraits] = BackendTraits(simulated=False, weights="Qwen2.5-VL model")

    attn_implementation: Literal["auto", "flash_attention_2", "sdpa", "eager"] = opt(
        "auto", "'auto' = flash-attention 2 when installed, else sdpa."
    )
    min_pixels: int | None = opt(
        3136, "Smallest image area fed to the vision tower; null = qwen-vl-utils' default (4·28² = 3136).", min=1
    )
    max_pixels: int | None = opt(
        200704, "Largest image area fed to the vision tower (200704 = 256 LLM tokens); null = qwen-vl-utils' "
        "default (16384·28², so COCO images keep about their native size: 640x480 = 391 tokens).", min=1
    )
    vision_cache_mb: int = opt(
        2048, "Vision-feature cache on the model's device, in MiB: each distinct image (keyed by its preprocessed "
        "pixels, grid and dtype) goes through the vision tower once, alone, and its features are reused in every "
        "prompt that shows it (least recently used dropped first; 1 MiB holds one 256-token image in bf16 at 3B "
        "size: a beam-search chunk of 64 queries shows about 4,200 images; emptied on CUDA out-of-memory). 0 = off: "
        "every prompt's images are re-encoded together, as transformers does. Changes no answer "
        "beyond float round-off (docs/gpu.md, \"Vision-feature cache\").", min=0
    )
    prefix_cache_mb: int = opt(
        8192, "Prefix (KV) cache on the model's device, in MiB: the keys and values of prompt prefixes (the system "
        "header, then the first ICDs in prompt order), computed once, alone, and reused by every prompt that starts "
        "with them: shot k's prompt after shot k-1's, a beam's children, an evaluation's systems (least recently "
        "used dropped first; at 3B size in bf16 a 256-token ICD is 9 MiB; emptied on CUDA out-of-memory). "
        "Needs lvlm.shared_prefill on or "
        "auto. 0 = off: each prompt's KV is still computed once for its beams and its scored answers. Changes no "
        "answer beyond float round-off (docs/gpu.md, \"Prefix reuse\").", min=0
    )


@dataclass
class SimulatedConfig:
    """Settings only the simulated LVLM of the demo world reads (it is not a model)."""

    TRAITS: ClassVar[BackendTraits] = BackendTraits(simulated=True, weights=None)

    seed: int | None = opt(None, "Seed of the simulator's per-prompt jitter (null = the top-level seed).")


@dataclass
class LVLMConfig:
    """The vision-language model that answers the prompts."""

    backend: str = opt(
        "qwen", "A registered backend: 'qwen' (Qwen2.5-VL via transformers) or 'simulated' (the demo "
        "world's simulator, not a model). Each backend reads its own section below."
    )
    model: str = opt("Qwen/Qwen2.5-VL-3B-Instruct", "Hub id or local folder of the model.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = opt("auto", "Weights dtype.")
    device: str = opt("auto", "'auto' (CUDA when present, else CPU), 'cpu' or 'cuda[:i]'.")
    batch_size: int = opt(16, "Prompts per forward pass (length-sorted batches).", min=1)
    shared_prefill: Literal["auto", "on", "off"] = opt(
        "auto", "Compute each prompt's KV once and share it: repeated per beam (saves num_beams-1 language-model "
        "prefills per prompt), by the answers scored for it, and through lvlm.qwen.prefix_cache_mb by the prompts "
        "that start like it. 'auto' checks one prompt through both paths at start-up and falls back to "
        "plain generate and scoring (one log line) on a mismatch or an error; 'off' = every prompt and every "
        "scored answer from scratch (the study's path)."
    )
    agreement_check: int | None = opt(
        None, "Prompts (a seeded sample) answered batched and one at a time, once per LVLM fingerprint, "
        "recorded in the run folder (lvlm_agreement.json) and the report; null = 64 on CUDA, 0 on CPU.", min=0
    )
    max_disagreement: float = opt(
        0.05, "Largest share of agreement-check prompts whose batched answer may differ from the "
        "one-at-a-time answer; above it the run stops (use batch_size: 1 or dtype: float32).", min=0.0, max=1.0
    )
    prompt: PromptConfig = section(PromptConfig)
    generation: GenerationConfig = section(GenerationConfig)
    qwen: QwenConfig = section(QwenConfig)
    simulated: SimulatedConfig = section(SimulatedConfig)


LVLM_SHARED_SECTIONS = ("prompt", "generation")


def backend_traits(cfg: LVLMConfig) -> BackendTraits:
    """The traits of the backend `cfg.backend` names (declared on its section, `TRAITS`)."""
    return getattr(cfg, cfg.backend).TRAITS


def backend_sections() -> tuple[str, ...]:
    """Backends with a section of their own in LVLMConfig; `lvlm.backend` must name one of them."""
    hints = typing.get_type_hints(LVLMConfig)
    return tuple(n for n, tp in hints.items() if dataclasses.is_dataclass(tp) and n not in LVLM_SHARED_SECTIONS)
