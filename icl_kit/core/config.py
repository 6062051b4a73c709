"""Typed params: one dataclass per stage, loaded from one YAML file.

Every field has a default and a help text (`help` in its metadata). Loading
rejects unknown keys (with a close-match suggestion), wrong types and
out-of-range values, naming the key, the value and what is allowed.
Dotted overrides (`train.grpo.lr=1e-5`) work from the CLI and from Python.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from icl_kit.core.errors import KitError


class _ParamsLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-5` (exponent, no dot) as a float, as YAML 1.2 does.

    PyYAML follows YAML 1.1, where `lr: 1e-5` is the *string* '1e-5'.
    It also refuses a key given twice in one mapping, where PyYAML keeps the last silently.
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<:` merges may be overridden on purpose
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, typing.Hashable) and key in first:
                    raise DuplicateKeyError(key, first[key], key_node.start_mark)
                first[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names one key twice; `problem_mark` is the second one."""

    def __init__(self, key: Any, first: yaml.Mark, second: yaml.Mark) -> None:
        super().__init__(None, None, f"key {key!r} is given twice (first at line {first.line + 1})", second)
        self.key, self.first_line, self.line = key, first.line + 1, second.line + 1


_ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml_text(text: str) -> Any:
    """YAML text -> Python values, with YAML 1.2 exponent floats (see `_ParamsLoader`)."""
    return yaml.load(text, Loader=_ParamsLoader)  # noqa: S506 - a SafeLoader subclass


def opt(default: Any, help: str, **rules: Any) -> Any:
    """A field with a default, a help text and optional rules (`min`, `max`)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **rules})
    return field(default=default, metadata={"help": help, **rules})


def section(cls: type) -> Any:
    """A nested section field whose default is the section's defaults."""
    return field(default_factory=cls, metadata={"help": (cls.__doc__ or "").strip()})


# --------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    """Where the questions, answers and images are."""

    dataset: Literal["okvqa", "vqav2"] = opt("okvqa", "File layout: OK-VQA or VQAv2 (`v2_` file prefixes).")
    root: str = opt("", "Folder with the question/annotation JSON files; '' = $OKVQA_PATH or $VQAV2_PATH.")
    image_root: str = opt("", "Folder holding `{split}2014/` image folders; '' = $COCO_PATH, else `root`.")
    train_split: str = opt("train", "Split used as the demonstration pool (and training queries).")
    test_split: str = opt("val", "Split used as test questions.")
    demo: bool = opt(False, "Build the embedded demo world at `root` when it is missing.")
    demo_train: int = opt(2000, "Demo world: number of pool (train) questions.", min=10)
    demo_test: int = opt(1000, "Demo world: number of test (val) questions.", min=10)
    demo_seed: int = opt(0, "Demo world: seed.")


# ------------------------------------------------------------------------ encoder
@dataclass
class EncoderConfig:
    """How query and ICD embeddings are made for the selector."""

    backend: Literal["clip", "simple"] = opt("clip", "CLIP (transformers) or the model-free demo encoder.")
    model: str = opt("openai/clip-vit-base-patch32", "CLIP hub id or local folder.")
    dim: int = opt(512, "Embedding size of the `simple` encoder (CLIP's is read from the model).", min=8)
    batch_size: int = opt(64, "Records per encoder batch.", min=1)
    device: str = opt("auto", "'auto' (CUDA when present, else CPU), 'cpu' or 'cuda[:i]'.")


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


@dataclass
class QwenConfig:
    """Settings only the Qwen2.5-VL backend reads."""

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


@dataclass
class SimulatedConfig:
    """Settings only the simulated LVLM of the demo world reads (it is not a model)."""

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
        "auto", "Prefill each prompt once and repeat its KV cache per beam (saves num_beams-1 language-model "
        "prefills per prompt). 'auto' checks one prompt through both paths at start-up and falls back to "
        "plain generate (one log line) on a mismatch or an error; 'off' = plain generate (the study's path)."
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


def backend_sections() -> tuple[str, ...]:
    """Backends with a section of their own in LVLMConfig; `lvlm.backend` must name one of them."""
    hints = typing.get_type_hints(LVLMConfig)
    return tuple(n for n, tp in hints.items() if dataclasses.is_dataclass(tp) and n not in LVLM_SHARED_SECTIONS)


# -------------------------------------------------------------------------- pools
@dataclass
class PoolsConfig:
    """Candidate pools the selector chooses from."""

    size: int = opt(64, "Candidates per query (RandSampler).", min=1)
    seed: int = opt(42, "RandSampler seed (the study's is always 42).")
    sampler: Literal["rand", "study_rand"] = opt(
        "rand", "rand: one seeded draw per query, independent of the others; study_rand: the study's RandSampler "
        "draw for draw (Python random on train-split positions, STUDY_FORMATS.md §2.2), other queries continuing "
        "its stream (see icl_kit.selection.study_pools)."
    )
    anchors: int = opt(800, "study_rand: anchor count (the study: 800 for OK-VQA, 5000 for VQAv2).", min=1)


# ----------------------------------------------------------------------- selector
@dataclass
class SelectorConfig:
    """The pointer-network selector's shape."""

    input_dim: int = opt(512, "Embedding size d (must match the encoder).", min=1)
    hidden_dim: int = opt(256, "Hidden size h.", min=1)
    num_layers: int = opt(1, "Cross-attention layers.", min=1)
    num_heads: int = opt(1, "Attention heads (must divide hidden_dim).", min=1)
    dropout: float = opt(0.1, "Dropout after cross-attention (train mode only).", min=0.0, max=1.0)
    query_update: Literal["gate", "none"] = opt(
        "gate", "Query-state update between picks: gate (the study from 2025-12-29, STUDY_FORMATS.md §3.2) or "
        "none (one cosine ranking, dropout after the projections: the seed report's checkpoints, §3.1). "
        "Loading a checkpoint reads it from the file's keys."
    )


# -------------------------------------------------------------------------- train
@dataclass
class RewardConfig:
    """How an LVLM answer becomes a reward."""

    kind: Literal["hard_plus_soft", "soft", "hard", "gt_prob"] = opt(
        "hard_plus_soft", "correct + acc (study default), acc, correct, or P(ground truth)."
    )
    shots: list[int] = opt([2], "Prefix lengths whose rewards are averaged, e.g. [1, 2, 3, 4].")


@dataclass
class RolloutsConfig:
    """Where GRPO's groups of ICD sequences come from."""

    mode: Literal["online", "offline"] = opt("online", "Sample per step (online) or a fixed set (offline).")
    group_size: int = opt(8, "Sequences sampled per query per step (online).", min=2)
    temperatures: list[float] = opt([1.0, 1.3], "Offline: sampling temperatures.")
    samples_per_temperature: int = opt(4, "Offline: samples per temperature.", min=0)
    online_temperature: float = opt(1.0, "Online: sampling temperature of the policy's groups.", min=1e-6)
    beam_size: int = opt(4, "Offline: beam sequences from the selector.", min=0)
    n_random: int = opt(2, "Offline: random sequences.", min=0)
    val_fraction: float = opt(0.2, "Held-out share of training queries (by sorted id).", min=0.0, max=0.9)
    max_queries: int = opt(0, "Use only the first N training queries (0 = all).", min=0)


@dataclass
class RCEConfig:
    """Reward-weighted cross-entropy warm-up."""

    epochs: int = opt(5, "RCE epochs (0 skips the warm-up).", min=0)
    lr: float = opt(1e-4, "AdamW learning rate.", min=0.0)
    tau_start: float = opt(2.0, "Softmax temperature of the reward weights at the start.", min=1e-6)
    tau_end: float = opt(0.5, "... and at the end (linear).", min=1e-6)
    batch_groups: int = opt(32, "Query groups per optimiser step.", min=1)


@dataclass
class GRPOConfig:
    """GRPO post-training."""

    epochs: int = opt(3, "GRPO epochs.", min=0)
    lr: float = opt(1e-4, "AdamW learning rate.", min=0.0)
    batch_groups: int = opt(32, "Query groups per optimiser step (vectorised).", min=1)
    advantage: Literal["zscore", "rank", "mean_only", "batch_std"] = opt("zscore", "Advantage rule.")
    std_floor: float = opt(0.1, "zscore: floor of the group std.", min=0.0)
    adv_clip: float = opt(5.0, "zscore: advantages clipped to ±this.", min=0.0)
    clip_eps: float = opt(0.2, "PPO clip ε.", min=0.0, max=1.0)
    kl_beta: float = opt(0.1, "KL coefficient β to the frozen reference policy.", min=0.0)
    kl_target: float = opt(0.0, "Adapt β once per epoch towards this KL (0 = fixed β).", min=0.0)
    ppo_epochs: int = opt(1, "Updates per batch of groups (old log-probs fixed).", min=1)
    dropout_in_ratio: bool = opt(
        False, "Keep dropout on when computing log-probs for the ratio (old and new alike)."
    )


@dataclass
class TrainConfig:
    """Selector training: rollouts, rewards, RCE warm-up, GRPO."""

    seed: int = opt(0, "Seed of every training random choice.")
    device: str = opt("auto", "'auto' (CUDA when present, else CPU), 'cpu' or 'cuda[:i]'.")
    weight_decay: float = opt(0.01, "AdamW weight decay.", min=0.0)
    grad_clip: float = opt(1.0, "Gradient-norm clip.", min=0.0)
    val_shots: list[int] = opt([2], "Shots at which greedy validation reward is measured per epoch.")
    save_every_steps: int = opt(
        50, "Also save checkpoints/last.pt every N optimiser steps (resume mid-epoch); 0 = at epoch ends only.", min=0
    )
    reward: RewardConfig = section(RewardConfig)
    rollouts: RolloutsConfig = section(RolloutsConfig)
    rce: RCEConfig = section(RCEConfig)
    grpo: GRPOConfig = section(GRPOConfig)


# --------------------------------------------------------------------------- eval
@dataclass
class EvalConfig:
    """Which systems are evaluated on which test questions."""

    systems: list[str] = opt(
        ["zero_shot", "random", "similarity", "checkpoints/grpo_epoch*.pt"],
        "random | zero_shot | similarity (fused image+text embedding) | similarity_i2t | similarity_i2i | "
        "similarity_t2t (the study's one-modality CLIP retrievers: query image or text vs pool text or image) | "
        "a checkpoint path or glob (relative to the run folder); append ':study_renames' to read a file "
        "renamed by the study's converter (STUDY_FORMATS.md §4.3).",
    )
    similarity_order: Literal["first", "last"] = opt(
        "first", "Where the similarity systems put the most similar ICD: first (selection order) or last, "
        "next to the query (the study's mmtopk_reversed_order)."
    )
    shots: list[int] = opt([1, 2, 3, 4], "Shots; the selection is made at max(shots), shot k = first k.")
    questions: Literal["first", "random", "all"] = opt("first", "Which test questions.")
    n: int = opt(100, "Number of test questions (ignored for 'all').", min=1)
    seed: int = opt(0, "Seed for 'random' questions and the random baseline.")
    pool: str = opt("rand", "Checkpoint candidate pool: 'rand' (RandSampler) or 'similarity_topK'.")
    chunk: int = opt(128, "Cells answered and appended per step; a killed run loses at most one chunk.", min=1)


# -------------------------------------------------------------------------- stats
@dataclass
class StatsConfig:
    """Paired tests, intervals, multiplicity, equivalence and power."""

    baseline: str = opt("random", "System every other system is compared against.")
    alpha: float = opt(0.05, "Significance level (family-wise); intervals are at 1 - alpha, TOST's at 1 - 2 alpha.",
                       min=0.0, max=1.0)
    n_boot: int = opt(10000, "Bootstrap resamples (interval: bca or percentile).", min=100)
    n_perm: int = opt(10000, "Monte Carlo sign flips, used only when the exact test is not (scores off the 1/30 "
                             "lattice, or a null distribution wider than stats.exact.EXACT_MAX_SPAN).", min=100)
    interval: Literal["score", "t", "bca", "percentile", "exact"] = opt(
        "score", "Interval of a paired difference: score (Wilson-type, variance at the hypothesised mean), "
                 "Student t, BCa or percentile bootstrap, or the inverted exact sign-flip test. score is the "
                 "default: the only one covering >= 94% at n = 100 with few and many changed questions "
                 "(coverage test in tests/test_stats.py).")
    correction: Literal["holm", "fdr_bh"] = opt("holm", "Multiplicity correction, within each family.")
    equivalence_margin: float = opt(1.0, "TOST margin δ in points.", min=0.0)
    power: float = opt(0.8, "Target power for MDE and n needed (at the family's α / m).", min=0.0, max=1.0)
    subsets: list[int | str] = opt([], "Also compare on subsets: 'first:N' (the N smallest question ids; a bare N "
                                       "means the same) or 'random:N:SEED'.")
    comparisons: list[dict[str, str]] = opt(
        [], "Explicit comparisons [{a: SYSTEM, b: SYSTEM, label: TEXT}]: the primary family, adjusted on its own; "
            "the automatic vs-baseline and vs-previous-epoch rows form the second family.")
    seed: int = opt(0, "Seed of the bootstrap, Monte Carlo sign flips and random subsets.")


# ------------------------------------------------------------------------- report
@dataclass
class ReportConfig:
    """How the report is written."""

    language: Literal["zh", "en"] = opt("zh", "Report language.")
    title: str = opt("ICD selector evaluation", "Report title.")
    baseline: str = opt("random", "Baseline system name shown as A.")
    featured: list[str] = opt([], "Systems featured in the detailed analysis ([] = all).")
    smoke: bool = opt(False, "Mark the run as a smoke run whose numbers are meaningless.")


# -------------------------------------------------------------------------- top
@dataclass
class Params:
    """Everything one run needs."""

    run_name: str = opt("demo", "Run folder name under `runs_dir`.")
    runs_dir: str = opt("runs", "Parent folder of run folders.")
    seed: int = opt(0, "Global seed (stages have their own seeds too).")
    deterministic: bool = opt(
        True, "torch.use_deterministic_algorithms: the same params give the same files, even with several threads."
    )
    data: DataConfig = section(DataConfig)
    encoder: EncoderConfig = section(EncoderConfig)
    lvlm: LVLMConfig = section(LVLMConfig)
    pools: PoolsConfig = section(PoolsConfig)
    selector: SelectorConfig = section(SelectorConfig)
    train: TrainConfig = section(TrainConfig)
    eval: EvalConfig = section(EvalConfig)
    stats: StatsConfig = section(StatsConfig)
    report: ReportConfig = section(ReportConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.run_name

    def __post_init__(self) -> None:
        validate_cross_fields(self)


# ----------------------------------------------------------------- validation
def validate_cross_fields(p: Params) -> None:
    """Rules that span fields; each error names the keys and the fix."""
    if p.selector.hidden_dim % p.selector.num_heads:
        raise KitError(
            f"selector.num_heads={p.selector.num_heads} must divide "
            f"selector.hidden_dim={p.selector.hidden_dim}; change one of them."
        )
    for key, shots in (("eval.shots", p.eval.shots), ("train.reward.shots", p.train.reward.shots),
                       ("train.val_shots", p.train.val_shots)):
        if not shots or min(shots) < 1 or max(shots) > p.pools.size:
            raise KitError(f"{key}={shots} must be a non-empty list of shots in 1..pools.size={p.pools.size}.")
    if p.encoder.backend == "simple" and p.encoder.dim != p.selector.input_dim:
        raise KitError(
            f"encoder.dim={p.encoder.dim} must equal selector.input_dim={p.selector.input_dim}; set both."
        )
    if p.lvlm.backend not in backend_sections():
        hint = difflib.get_close_matches(p.lvlm.backend, backend_sections(), n=1)
        tip = f" Did you mean {hint[0]!r}?" if hint else ""
        raise KitError(f"lvlm.backend={p.lvlm.backend!r} is not a registered backend; choose one of "
                       f"{list(backend_sections())}.{tip}")
    validate_stats(p.stats)
    q = p.lvlm.qwen
    if q.min_pixels is not None and q.max_pixels is not None and q.min_pixels > q.max_pixels:
        raise KitError(f"lvlm.qwen.min_pixels={q.min_pixels} exceeds lvlm.qwen.max_pixels={q.max_pixels}; "
                       "lower the first or raise the second (null = qwen-vl-utils' default).")
    if p.eval.pool != "rand" and not _is_topk(p.eval.pool):
        raise KitError(f"eval.pool={p.eval.pool!r} must be 'rand' or 'similarity_topK' (e.g. similarity_top64).")
    if _is_topk(p.eval.pool):
        _check_topk(p)


# Params that name something (a folder, a split, a model, a system): an empty or blank value names nothing.
NAME_KEYS = ("run_name", "runs_dir", "data.train_split", "data.test_split", "encoder.model", "lvlm.backend",
             "lvlm.model", "eval.systems", "stats.baseline", "report.baseline", "report.featured")


def check_name(key: str, value: str) -> None:
    """A name must name something; run_name must be one folder name inside runs_dir."""
    base = key.split("[")[0]
    if base not in NAME_KEYS:
        return
    if not value.strip():
        raise KitError(f"{key}={value!r} is empty; it must name something (see `icl-kit params --describe`).")
    if base == "run_name" and (value.strip() in (".", "..") or "/" in value or "\\" in value):
        raise KitError(f"run_name={value!r} must be one folder name inside runs_dir (no '/', not '.' or '..'), "
                       "e.g. run_name: demo_lr3e-3; put a parent folder into runs_dir instead.")


def _check_topk(p: Params) -> None:
    """similarity_topK gives a checkpoint K candidates: at least max(eval.shots), at most pools.size."""
    k, need = int(p.eval.pool[len("similarity_top"):]), max(p.eval.shots)
    if not need <= k <= p.pools.size:
        raise KitError(f"eval.pool={p.eval.pool!r} gives each checkpoint {k} candidates; K must be between "
                       f"max(eval.shots)={need} and pools.size={p.pools.size} (the pool size it was trained on), "
                       f"e.g. eval.pool: similarity_top{p.pools.size}.")


SUBSET_RE = re.compile(r"^(?:first:(\d+)|random:(\d+):(\d+))$")
COMPARISON_KEYS = {"a", "b", "label"}


def validate_stats(s: StatsConfig) -> None:
    """stats.subsets forms and stats.comparisons entries; each error names the entry and the fix."""
    for i, sub in enumerate(s.subsets):
        n = sub if isinstance(sub, int) else None
        m = None if n is not None else SUBSET_RE.match(str(sub))
        if (n is not None and n < 2) or (n is None and (m is None or int(m.group(1) or m.group(2)) < 2)):
            raise KitError(f"stats.subsets[{i}]={sub!r} must be 'first:N', 'random:N:SEED' or N, with N >= 2 "
                           "(e.g. 'first:100').")
    for i, c in enumerate(s.comparisons):
        if not isinstance(c, dict) or not {"a", "b"} <= set(c) or set(c) - COMPARISON_KEYS \
                or not all(isinstance(v, str) and v for v in c.values()):
            raise KitError(f"stats.comparisons[{i}]={c!r} must be a mapping {{a: SYSTEM, b: SYSTEM, label: TEXT}} "
                           "of non-empty strings (label optional).")


def _is_topk(pool: str) -> bool:
    return pool.startswith("similarity_top") and pool[len("similarity_top"):].isdigit()


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any, meta: dict[str, Any]) -> Any:
    """Check `value` against the field type `tp` and its rules; return the typed value."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            tip = f" Did you mean {hint[0]!r}?" if hint else ""
            raise KitError(f"{key}={value!r} is not allowed; choose one of {list(choices)}.{tip}")
        return value
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            raise KitError(f"{key}={value!r} must be a list of {_type_name(typing.get_args(tp)[0])}.")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(f"{key}[{i}]", v, item_tp, meta) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for arm in args[:-1]:  # `int | str`: the first arm that accepts the value
            try:
                return _coerce(key, value, arm, meta)
            except KitError:
                continue
        return _coerce(key, value, args[-1], meta)
    if tp is bool:
        if not isinstance(value, bool):
            raise KitError(f"{key}={value!r} must be true or false.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise KitError(f"{key}={value!r} must be an integer.")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise KitError(f"{key}={value!r} must be a number.")
        value = float(value)
        if not math.isfinite(value):
            raise KitError(f"{key}={value!r} must be a finite number (not NaN or infinite); give a number.")
    elif tp is str:
        if not isinstance(value, str):
            raise KitError(f"{key}={value!r} must be a string (quote it in YAML).")
        check_name(key, value)
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo or hi is not None and value > hi:
        bounds = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise KitError(f"{key}={value!r} is out of range; it must be {bounds}.")
    return value


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys with a suggestion."""
    if not isinstance(raw, dict):
        where = prefix.rstrip(".") or "params"
        raise KitError(f"{where} must be a section (a mapping of keys to values), not {raw!r}; "
                       "put its keys indented under it.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1)
            tip = f" Did you mean {hint[0]!r}?" if hint else ""
            raise KitError(
                f"Unknown key {dotted!r}.{tip} Valid keys of {prefix.rstrip('.') or 'the top level'}: "
                f"{', '.join(fields)}."
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, f"{dotted}.")
        else:
            kwargs[key] = _coerce(dotted, value, tp, dict(fields[key].metadata))
    return cls(**kwargs)


# ------------------------------------------------------------------ overrides
def parse_override(text: str) -> tuple[str, Any]:
    """`'train.grpo.lr=1e-5'` -> `('train.grpo.lr', 1e-05)`; the value is parsed as YAML."""
    if "=" not in text:
        raise KitError(f"Override {text!r} must look like key=value, e.g. train.grpo.lr=1e-5.")
    key, _, raw = text.partition("=")
    try:
        value = load_yaml_text(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise KitError(f"Override {text!r}: the value {raw!r} is not valid YAML; quote it, e.g. "
                       f"{key.strip()}='\"{raw}\"'.") from None
    return key.strip(), value


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    """Set dotted keys in a nested mapping (a copy); validation happens in `load_params`."""
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides or [])
    out = _deepcopy(raw)
    for key, value in items:
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise KitError(f"Override {key!r}: {part!r} is a value, not a section.")
            node = child
        node[parts[-1]] = value
    return out


def _deepcopy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deepcopy(v) if isinstance(v, dict) else v for k, v in d.items()}


# ------------------------------------------------------------------ load/dump
def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a params YAML file; a missing or malformed file is a KitError naming it."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"Params file {path} does not exist; pass a path such as params/demo.yaml.")
    try:
        raw = load_yaml_text(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise KitError(f"Params file {path} is not UTF-8 text; save it as a UTF-8 YAML file.") from None
    except DuplicateKeyError as exc:
        raise KitError(f"Params file {path} gives key {exc.key!r} twice (lines {exc.first_line} and {exc.line}); "
                       "keep one of them (YAML would silently drop the first).") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise KitError(f"Params file {path} is not valid YAML{where}; fix the syntax.") from None
    if raw is None:
        raise KitError(f"Params file {path} is empty (no keys, only blank lines or comments); write the params "
                       "into it (see params/demo.yaml), or leave --params out to use the defaults.")
    if not isinstance(raw, dict):
        raise KitError(f"Params file {path} must hold a mapping of sections, not {type(raw).__name__}.")
    return raw


def load_params(
    path: str | Path | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
) -> Params:
    """Load params from YAML (or defaults when `path` is None), apply overrides, validate."""
    raw = read_yaml(path) if path else {}
    return from_dict(apply_overrides(raw, overrides))


def from_dict(raw: dict[str, Any]) -> Params:
    """Build validated Params from a nested mapping."""
    return _build(Params, raw, "")


def to_dict(p: Any) -> dict[str, Any]:
    """Params (or a section) as a plain nested mapping."""
    return dataclasses.asdict(p)


def dump_yaml(p: Params) -> str:
    """The resolved params as YAML text (round-trips through `load_params`)."""
    return yaml.safe_dump(to_dict(p), sort_keys=False, allow_unicode=True)


def describe(cls: type = Params, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every param: the one place behaviours are documented."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows += describe(hints[f.name], f"{prefix}{f.name}.")
        else:
            rows.append((f"{prefix}{f.name}", repr(getattr(defaults, f.name)), f.metadata.get("help", "")))
    return rows
