"""Params of data, encoder, pools, selector, evaluation, statistics and report; the top-level `Params`
and the rules that span fields."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from icl_kit.core.config.fields import opt, section
from icl_kit.core.config.lvlm import LVLMConfig, backend_sections
from icl_kit.core.config.train import SFTDataConfig, TrainConfig
from icl_kit.core.errors import KitError


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

    backend: Literal["clip", "simple", "demo_features"] = opt(
        "clip", "CLIP (transformers) or the model-free demo encoder `simple`. demo_features (demo world only, "
        "never a default) is the learning check, not an encoder: one-hot question type and concept read from the "
        "demo world's latent file, exactly what the simulated LVLM's relevance depends on (docs/training.md).")
    model: str = opt("openai/clip-vit-base-patch32", "CLIP hub id or local folder.")
    dim: int = opt(512, "Embedding size of the `simple` and `demo_features` encoders (CLIP's is read from the "
                   "model).", min=8)
    batch_size: int = opt(64, "Records per encoder batch.", min=1)
    device: str = opt("auto", "'auto' (CUDA when present, else CPU), 'cpu' or 'cuda[:i]'.")


# -------------------------------------------------------------------------- pools
@dataclass
class PoolsConfig:
    """Candidate pools the selector chooses from."""

    size: int = opt(64, "Candidates per query (RandSampler).", min=1)
    seed: int = opt(42, "RandSampler seed (the study's is always 42).")
    sampler: Literal["rand", "study_rand"] = opt(
        "rand", "rand: one seeded draw per query, independent of the others; study_rand: the study's RandSampler "
        "draw for draw (Python random on train-split positions, docs/study.md, 'Pools'), other queries continuing "
        "its stream (see icl_kit.study.formats.sampler)."
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
        "gate", "Query-state update between picks: gate (the study from 2025-12-29, docs/study.md, 'Checkpoints') or "
        "none (one cosine ranking, dropout after the projections: the seed report's checkpoints). "
        "Loading a checkpoint reads it from the file's keys."
    )


# --------------------------------------------------------------------------- eval
@dataclass
class EvalConfig:
    """Which systems are evaluated on which test questions."""

    systems: list[str] = opt(
        ["zero_shot", "random", "similarity", "checkpoints/grpo_epoch*.pt"],
        "random | zero_shot | similarity (fused image+text embedding) | similarity_i2t | similarity_i2i | "
        "similarity_t2t (the study's one-modality CLIP retrievers: query image or text vs pool text or image) | "
        "a checkpoint path or glob (relative to the run folder); append ':study_renames' to read a file "
        "renamed by the study's converter (one-layer sources: the file or its .pt beside it must show it), or "
        "':study_layers=1' when you know its source had one layer (docs/study.md, defect 3).",
    )
    names: dict[str, str] = opt(
        {}, "System names of checkpoints: {checkpoint path as listed in eval.systems (or matched by its glob), or "
            "its file name: NAME}; an unnamed checkpoint is called by its file stem ('grpo_epoch3').")
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
EXACT_INTERVAL_RETIRED = (
    "stats.interval='exact' is no longer offered: the inverted sign-flip test assumes differences symmetric about "
    "their mean, which VQA differences with few changed questions are not, so its 95% interval covered only 74-94% "
    "in simulation; use 't_changed' (the default), 'score' or 't'.")


ALPHA = 0.05  # stats.alpha's default: every other default level of the kit derives from it (1 - ALPHA, ...)
POWER = 0.8  # stats.power's default


@dataclass
class StatsConfig:
    """Paired tests, intervals, multiplicity, equivalence and power."""

    baseline: str = opt("random", "System every other system is compared against.")
    alpha: float = opt(ALPHA, "Significance level (family-wise); intervals are at 1 - alpha, TOST's at 1 - 2 alpha.",
                       min=0.0, max=1.0)
    n_boot: int = opt(10000, "Bootstrap resamples (interval: bca or percentile).", min=100)
    n_perm: int = opt(10000, "Monte Carlo sign flips, used only when the exact test is not (scores off the 1/30 "
                             "lattice, or a null distribution wider than stats.exact.EXACT_MAX_SPAN).", min=100)
    interval: Literal["t_changed", "score", "t", "bca", "percentile"] = opt(
        "t_changed", "Interval of a paired difference: t_changed (Student t on k - 1 degrees of freedom, k the "
                     "questions that changed), score (Wilson-type, variance at the hypothesised mean: wider), Student "
                     "t (n - 1 df: under-covers when few questions change), BCa or percentile bootstrap. t_changed is "
                     "the default: it covered >= 94% with few and many changed questions at n = 100 and 1,000 within "
                     "1.3x (n = 100) and 1.15x (n = 1,000) the t width (tests/stats/test_interval.py; "
                     "docs/statistics.md).",
        retired={"exact": EXACT_INTERVAL_RETIRED})
    correction: Literal["holm", "fdr_bh"] = opt("holm", "Multiplicity correction, within each family.")
    equivalence_margin: float = opt(1.0, "TOST margin δ in points.", min=0.0)
    power: float = opt(POWER, "Target power for MDE and n needed (at the family's α / m).", min=0.0, max=1.0)
    subsets: list[int | str] = opt([], "Also compare on subsets: 'first:N' (the N smallest question ids; a bare N "
                                       "means the same) or 'random:N:SEED'.")
    comparisons: list[dict[str, Any]] = opt(
        [], "Explicit comparisons [{a: SYSTEM, b: SYSTEM, label: TEXT, shot: K, claimed: '+0.6'}] (label, shot and "
            "claimed optional): the primary family, adjusted on its own; the claims a run or a re-test is about. "
            "`shot` restricts one to one shot; `claimed` is the difference someone claimed for it, in points, "
            "shown beside the kit's. The automatic rows form the second family.")
    automatic: bool = opt(True, "Also compare every system with stats.baseline and every epoch with the previous one "
                                "(the automatic family); false: only stats.comparisons.")
    seed: int = opt(0, "Seed of the bootstrap, Monte Carlo sign flips and random subsets.")
    cluster: Literal["none", "image"] = opt(
        "none", "Unit of the paired tests: none (questions independent) or image (the questions of one image flip "
                "sign together; cluster-robust interval, MDE and n needed; comparisons.csv n_clusters). Use image "
                "when images carry several questions (VQAv2: about 5); it needs image_id in eval/predictions.jsonl.")


# ------------------------------------------------------------------------- report
@dataclass
class ReportConfig:
    """How the report is written."""

    language: Literal["zh", "en"] = opt("zh", "Report language.")
    title: str = opt("", "Report title; '' = the kit's, in the report's language (a re-test's or an evaluation's, "
                         "marked when the LVLM is simulated).")
    baseline: str = opt("random", "Baseline system name shown as A.")
    featured: list[str] = opt([], "Systems featured in the detailed analysis ([] = all).")
    smoke: bool = opt(False, "Mark the run as a smoke run whose numbers are meaningless.")


# ----------------------------------------------------------------------- headroom
@dataclass
class HeadroomConfig:
    """Before training: what the choice of demonstrations could gain, and the reward's signal (`icl-kit headroom`,
    notebook 00_headroom; docs/headroom.md)."""

    enabled: bool = opt(False, "Run the headroom stage first in `icl-kit run` (`icl-kit headroom` runs it whatever "
                               "this says).")
    n: int = opt(200, "Questions of each split: the first N training queries (sorted id, as SFT and GRPO take them) "
                      "and the first N test questions (by id).", min=2)
    draws: int = opt(16, "Random demonstration sets per question, drawn from its candidate pool: their mean is "
                         "the random baseline, their best the best-of-M, their spread the reward's between-set "
                         "variance.", min=2)
    seed: int = opt(0, "Seed of the random sets and of the simulated GRPO groups.")
    min_gain: float = opt(1.0, "Points the oracle must beat similarity by (the lower end of its interval) for the "
                               "verdict 'room'.", min=0.0)
    chunk: int = opt(50, "Questions measured and appended per step; a killed stage loses at most one chunk.", min=1)


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
    sft_data: SFTDataConfig = section(SFTDataConfig)
    train: TrainConfig = section(TrainConfig)
    eval: EvalConfig = section(EvalConfig)
    stats: StatsConfig = section(StatsConfig)
    report: ReportConfig = section(ReportConfig)
    headroom: HeadroomConfig = section(HeadroomConfig)

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
    if len(set(p.train.seeds)) != len(p.train.seeds) or any(s < 0 for s in p.train.seeds):
        raise KitError(f"train.seeds={p.train.seeds} must list distinct seeds >= 0 (e.g. [0, 1, 2]), or be [].")
    if p.encoder.backend != "clip" and p.encoder.dim != p.selector.input_dim:
        raise KitError(
            f"encoder.dim={p.encoder.dim} must equal selector.input_dim={p.selector.input_dim}; set both."
        )
    if p.lvlm.backend not in backend_sections():
        hint = difflib.get_close_matches(p.lvlm.backend, backend_sections(), n=1)
        tip = f" Did you mean {hint[0]!r}?" if hint else ""
        raise KitError(f"lvlm.backend={p.lvlm.backend!r} is not a registered backend; choose one of "
                       f"{list(backend_sections())}.{tip}")
    if p.sft_data.max_shots > p.pools.size or p.sft_data.beam_size > p.pools.size:
        raise KitError(f"sft_data.max_shots={p.sft_data.max_shots} and sft_data.beam_size={p.sft_data.beam_size} "
                       f"must be at most pools.size={p.pools.size}; lower them.")
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
             "lvlm.model", "eval.systems", "eval.names", "stats.baseline", "report.baseline", "report.featured")


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
COMPARISON_KEYS = {"a", "b", "label", "shot", "claimed"}
CLAIMED_RE = re.compile(r"^\s*([+\-\u2212]?)\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:points?|pts?|pp)?\s*$")


def claimed_points(value: Any) -> float:
    """A claimed difference in points: 0.6, '+0.6', '−1.0' (U+2212), '+0.6 points'; None -> nan.
    Anything else is a KitError naming the value."""
    if value is None:
        return math.nan
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    m = CLAIMED_RE.match(str(value)) if isinstance(value, str) else None
    if m is None:
        raise KitError(f"claimed={value!r} must be a difference in points such as '+0.6' or -1.0.")
    return (-1.0 if m.group(1) in ("-", "\u2212") else 1.0) * float(m.group(2))


def validate_stats(s: StatsConfig) -> None:
    """stats.subsets forms and stats.comparisons entries; each error names the entry and the fix."""
    for i, sub in enumerate(s.subsets):
        n = sub if isinstance(sub, int) else None
        m = None if n is not None else SUBSET_RE.match(str(sub))
        if (n is not None and n < 2) or (n is None and (m is None or int(m.group(1) or m.group(2)) < 2)):
            raise KitError(f"stats.subsets[{i}]={sub!r} must be 'first:N', 'random:N:SEED' or N, with N >= 2 "
                           "(e.g. 'first:100').")
    for i, c in enumerate(s.comparisons):
        names_ok = isinstance(c, dict) and {"a", "b"} <= set(c) and not set(c) - COMPARISON_KEYS \
            and all(isinstance(c[k], str) and c[k] for k in ("a", "b", "label") if k in c)
        shot = c.get("shot") if isinstance(c, dict) else None
        if not names_ok or shot is not None and (isinstance(shot, bool) or not isinstance(shot, int) or shot < 0):
            raise KitError(f"stats.comparisons[{i}]={c!r} must be a mapping {{a: SYSTEM, b: SYSTEM, label: TEXT, "
                           "shot: K, claimed: '+0.6'}} (a and b non-empty names; label, shot and claimed optional).")
        try:
            claimed_points(c.get("claimed"))
        except KitError as exc:
            raise KitError(f"stats.comparisons[{i}]: {exc}") from None


def _is_topk(pool: str) -> bool:
    return pool.startswith("similarity_top") and pool[len("similarity_top"):].isdigit()
