"""Evaluation systems and the ICDs each one selects for each test question.

A system is a baseline (`zero_shot`, `random`, a similarity retriever) or a selector
checkpoint (a path or glob relative to the run folder). Every system makes ONE
selection of k_max = max(shots) ICDs per question; shot k shows its first k
(the study's protocol), so a system's shots share prefixes.

Similarity retrievers: `similarity` ranks the pool by the fused (image+question) embedding
the selector sees; `similarity_i2t`, `similarity_i2i`, `similarity_t2t` are the study's
one-modality CLIP retrievers (docs/study.md, "The study's inference"): the letter before the 2 is the query's
modality (image or question text), the letter after it the pool's. With
`eval.similarity_order: last` (the study's `mmtopk_reversed_order`) shot k shows the top k
with the most similar LAST, next to the query: still the top k, only their order changes.

Selections depend only on the question (never on which other questions are in
the batch or shard), so a sharded run selects exactly what a one-process run does.
Candidate pools are the same for every checkpoint, so comparisons stay paired.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch

from icl_kit.core.errors import KitError

log = logging.getLogger(__name__)

SystemKind = Literal["zero_shot", "random", "similarity", "checkpoint"]
# Similarity system -> (query embedding, pool embedding): parts of DataWorld.emb.
SIMILARITY_MODES: dict[str, tuple[str, str]] = {
    "similarity": ("emb", "emb"),
    "similarity_i2t": ("img", "txt"),
    "similarity_i2i": ("img", "img"),
    "similarity_t2t": ("txt", "txt"),
}
BASELINES: tuple[str, ...] = ("zero_shot", "random", *SIMILARITY_MODES)
SIMILARITY_POOL_PREFIX = "similarity_top"  # eval.pool = "similarity_top64" etc.
SELECT_BATCH = 512  # questions per selector forward pass (selection is per-row, so any size gives the same picks)
STUDY_RENAMES_OPTION = ":study_renames"  # eval.systems suffix: load a study-converted file with study_renames
STUDY_LAYERS_OPTION = ":study_layers=1"  # ... and the user says its source had one layer

Selection = dict[int, tuple[int, ...]]  # question id -> k_max ICD ids, selection order


class EvalWorld(Protocol):
    """What the systems need from a run (`icl_kit.run_context.DataWorld` provides it)."""

    @property
    def pool_ids(self) -> list[int]: ...  # demonstration split question ids

    @property
    def pools(self) -> dict[int, list[int]]: ...  # RandSampler candidate pool per query

    def emb(self, qids: list[int] | torch.Tensor, part: str = "emb") -> torch.Tensor: ...  # [N, d] / [B, K, d]


@dataclass(frozen=True)
class System:
    """One evaluated system; `selector` is set for checkpoints only."""

    name: str
    kind: SystemKind
    checkpoint: str | None = None  # path as resolved (relative to the run folder when inside it)
    epoch: int | None = None
    phase: str | None = None
    selector: Any = field(default=None, compare=False, repr=False)


# ------------------------------------------------------------------ resolution
def system_name(path: Path) -> str:
    """'checkpoints/grpo_epoch3.pt' -> 'grpo_epoch3' (a v2 file keeps its stem: 'grpo_epoch3_v2format')."""
    return path.stem


def _checkpoint_paths(spec: str, run_dir: Path) -> list[Path]:
    """Paths a checkpoint spec names: a glob (may match nothing) or one file (must exist)."""
    base = Path(spec) if Path(spec).is_absolute() else run_dir / spec
    if glob.has_magic(spec):
        return [Path(p) for p in sorted(glob.glob(str(base)))]
    if not base.is_file():
        raise KitError(
            f"eval.systems entry {spec!r} is neither {list(BASELINES)} nor an existing checkpoint "
            f"({base} not found); fix the path (relative to the run folder {run_dir})."
        )
    return [base]


def _relative(path: Path, run_dir: Path) -> str:
    try:
        return str(path.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return str(path)


def resolve_systems(
    specs: Sequence[str],
    run_dir: str | Path,
    loader: Callable[[Path], tuple[Any, Any]] | None = None,
    names: dict[str, str] | None = None,
) -> list[System]:
    """Expand eval.systems into systems: baselines as named, checkpoints sorted by (epoch, name).

    `loader(path, **options) -> (selector, info)` defaults to `icl_kit.selection.checkpoints.load_checkpoint`.
    `names` (eval.names) gives checkpoints their system names, else their file stems.
    A glob matching nothing is skipped with a warning (e.g. evaluation before training);
    a literal path that does not exist, duplicate names, or no system at all is a KitError.
    """
    run_dir = Path(run_dir)
    names = dict(names or {})
    out: list[System] = []
    used: set[str] = set()
    for spec in specs:
        if spec in BASELINES:
            out.append(System(name=spec, kind="similarity" if spec in SIMILARITY_MODES else spec))  # type: ignore[arg-type]
            continue
        spec, options = study_options(spec)
        paths = _checkpoint_paths(spec, run_dir)
        if not paths:
            log.warning("eval.systems entry %r matches no checkpoint under %s; skipped", spec, run_dir)
        used |= {spec} | {p.name for p in paths}
        out += sorted((_load_system(p, run_dir, loader, options, _name(p, spec, names)) for p in paths),
                      key=lambda s: (s.epoch if s.epoch is not None else -1, s.name))
    unused = sorted(set(names) - used)
    if unused:
        raise KitError(f"eval.names names {unused}, which no eval.systems checkpoint is; use a checkpoint path as "
                       "listed in eval.systems, or its file name.")
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise KitError(f"eval.systems names {dup} more than once; list each baseline and checkpoint file once.")
    if not out:
        raise KitError(f"eval.systems={list(specs)} selects no system; train first or list a baseline.")
    return out


def check_input_dims(systems: Sequence[System], dim: int, run_dir: Path) -> None:
    """Every checkpoint must take the run's d-dimensional embeddings (selector.input_dim = the encoder's d)."""
    for s in systems:
        d = getattr(s.selector, "input_dim", None)
        if s.kind == "checkpoint" and d is not None and d != dim:
            raise KitError(
                f"Checkpoint {run_dir / str(s.checkpoint)} takes {d}-d embeddings but this run's encoder makes "
                f"{dim}-d ones (selector.input_dim={dim}); evaluate it in a run whose encoder makes {d}-d embeddings "
                f"(set encoder.* and selector.input_dim: {d}), or drop it from eval.systems."
            )


def study_options(spec: str) -> tuple[str, dict[str, Any]]:
    """'path:study_renames' -> ('path', {study_renames: True}): map the study converter's renamed keys back;
    'path:study_layers=1' -> ('path', {study_layers: 1}): the same, when the user knows the source had one
    layer (docs/study.md, defect 3)."""
    if spec.endswith(STUDY_RENAMES_OPTION):
        return spec[: -len(STUDY_RENAMES_OPTION)], {"study_renames": True}
    if spec.endswith(STUDY_LAYERS_OPTION):
        return spec[: -len(STUDY_LAYERS_OPTION)], {"study_layers": 1}
    return spec, {}


def _name(path: Path, spec: str, names: dict[str, str]) -> str:
    """eval.names by the path as listed, by its file name, by the spec that matched it; else the file stem."""
    return names.get(spec if not glob.has_magic(spec) else "", names.get(path.name, system_name(path)))


def _load_system(path: Path, run_dir: Path, loader: Callable[..., tuple[Any, Any]] | None,
                 options: dict[str, Any], name: str) -> System:
    if loader is None:
        from icl_kit.selection.checkpoints import load_checkpoint as loader  # noqa: N813
    selector, info = loader(path, **options)
    selector.eval()  # no dropout: greedy selection must be deterministic
    return System(
        name=name,
        kind="checkpoint",
        checkpoint=_relative(path, run_dir),
        epoch=_info(info, "epoch"),
        phase=_info(info, "phase"),
        selector=selector,
    )


def _info(info: Any, key: str) -> Any:
    return info.get(key) if isinstance(info, dict) else getattr(info, key, None)


# ------------------------------------------------------------------ pools
def similarity_k(pool_spec: str) -> int:
    """'similarity_top64' -> 64 (eval.pool is validated at load)."""
    return int(pool_spec[len(SIMILARITY_POOL_PREFIX):])


def candidate_pools(world: EvalWorld, qids: Sequence[int], pool_spec: str) -> dict[int, list[int]]:
    """Each question's candidate pool for checkpoints: RandSampler ('rand') or top-K by cosine."""
    if pool_spec == "rand":
        missing = [q for q in qids if q not in world.pools]
        if missing:
            raise KitError(f"Test question {missing[0]} has no candidate pool; delete pools.json to rebuild it.")
        return {q: list(world.pools[q]) for q in qids}
    return similarity_selection(world, qids, similarity_k(pool_spec))


def similarity_selection(world: EvalWorld, qids: Sequence[int], k: int,
                         mode: str = "similarity") -> dict[int, list[int]]:
    """The k demonstrations most cosine-similar to each question, most similar first.

    `mode` names the embeddings compared (SIMILARITY_MODES): fused, or one modality each side.
    """
    from icl_kit.selection.pools import similarity_topk

    if not qids:
        return {}
    query_part, pool_part = SIMILARITY_MODES[mode]
    top = similarity_topk(world.emb(list(qids), query_part), world.emb(world.pool_ids, pool_part),
                          world.pool_ids, k, exclude_ids=list(qids))
    return {q: [int(i) for i in ids] for q, ids in zip(qids, top, strict=True)}


# ------------------------------------------------------------------ selection
def select(system: System, world: EvalWorld, qids: Sequence[int], k_max: int, *, seed: int,
           pool_spec: str = "rand") -> Selection:
    """k_max ICD ids per question for `system` (zero_shot: none)."""
    if system.kind == "zero_shot":
        return {q: () for q in qids}
    if system.kind == "random":
        from icl_kit.selection.pools import random_icds

        return {q: tuple(int(i) for i in random_icds(q, world.pool_ids, k_max, seed)) for q in qids}
    if system.kind == "similarity":
        return {q: tuple(ids) for q, ids in similarity_selection(world, qids, k_max, system.name).items()}
    return checkpoint_selection(system.selector, world, candidate_pools(world, qids, pool_spec), k_max)


def shot_icds(system: System, selection: tuple[int, ...], shot: int,
              similarity_order: str = "first") -> tuple[int, ...]:
    """The ICDs of one cell, in prompt order: the first `shot` of the selection; a similarity
    system under `eval.similarity_order: last` shows them reversed (most similar next to the query)."""
    first = tuple(selection[:shot])
    return first[::-1] if system.kind == "similarity" and similarity_order == "last" else first


def checkpoint_selection(selector: Any, world: EvalWorld, pools: dict[int, list[int]], k_max: int) -> Selection:
    """Greedy selector picks over each question's pool, in batches of SELECT_BATCH questions."""
    qids = list(pools)
    row_of = {q: i for i, q in enumerate(world.pool_ids)}
    pool_emb = world.emb(world.pool_ids)  # (N, d), projected once per batch by select(cand_index=)
    out: Selection = {}
    for start in range(0, len(qids), SELECT_BATCH):
        chunk = qids[start : start + SELECT_BATCH]
        cand = torch.tensor([pools[q] for q in chunk], dtype=torch.long)  # (B, K) ids
        rows = cand.clone().apply_(row_of.__getitem__)  # (B, K) rows of pool_emb
        idx = selector.select(world.emb(chunk), pool_emb, k_max, mode="greedy", cand_index=rows)  # (B, k_max)
        picked = cand.gather(1, idx.cpu())  # (B, k_max) ids
        out.update({q: tuple(int(i) for i in row) for q, row in zip(chunk, picked.tolist(), strict=True)})
    return out
