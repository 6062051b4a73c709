"""The ICDs a selector checkpoint of a run picks for some of its test questions, read-only.

`select_icds(run, question_ids, k, checkpoint)` is the evaluation's own selection, outside the evaluation:
it reads the run's params.yaml, builds the run's world (data, embeddings.pt, pools.json) without committing
it (`RunContext.build(commit=False)`: nothing is written, not even a missing cache), loads the checkpoint
as `eval.systems` does (with its `:study_renames` option when eval.systems lists one) and selects through
`evaluation.systems.select`: one greedy selection at max(eval.shots) over each question's candidate pool
(`eval.pool`), shot k = its first k. For a checkpoint and shot the evaluation ran, the ICDs are the ones
eval/predictions.jsonl records.

Relative paths in the params (data.root, runs_dir, encoder.model) mean what they meant when the run was
made: while it selects, `select_icds` works from the folder the run was made from (the one its relative
runs_dir starts at). Torch is imported on the first call only: `run_params` is light.
"""

from __future__ import annotations

import contextlib
import glob
import operator
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from icl_kit.core.config import Params, load_params
from icl_kit.core.errors import KitError
from icl_kit.core.names import natural_key
from icl_kit.core.runs import RunPaths

if TYPE_CHECKING:
    from icl_kit.evaluation.systems import System

CHECKPOINT_SUFFIXES = (".pt", ".ckpt")
RESUME_STATE = RunPaths(Path()).last.name  # checkpoints/last.pt is the trainer's resume state, not a system
SHOWN = 5  # valid ids or checkpoints an error message names


def _some(items: list[Any]) -> str:
    """The first SHOWN items, comma-separated, '…' when there are more (a message stays one short sentence)."""
    return ", ".join(str(i) for i in items[:SHOWN]) + (", …" if len(items) > SHOWN else "")


# ------------------------------------------------------------------ the run folder
class HasRunDir(Protocol):
    """Anything that names its run folder (RunResults, Params)."""

    @property
    def run_dir(self) -> str | Path: ...


RunLike = str | Path | HasRunDir  # a run folder, or what names one


def run_folder(run: RunLike) -> Path:
    """The run folder of `run`: a path, or anything with a `run_dir` (RunResults, Params)."""
    return Path(getattr(run, "run_dir", run))


def run_params(run: RunLike) -> Params:
    """The validated params of a run folder (its params.yaml, as written); a folder without one is a KitError."""
    root = run_folder(run)
    path = RunPaths(root).params
    if not path.is_file():
        raise KitError(f"{root} is not a run folder (it holds no params.yaml); make the run with "
                       "`icl-kit run <params>` first, or pass its folder (runs_dir/run_name).")
    return load_params(path)


def checkpoint_files(root: Path) -> list[Path]:
    """The selector checkpoints in the run's checkpoints/ folder (the resume state left out), natural order."""
    folder = RunPaths(root).checkpoints
    files = [p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.name != RESUME_STATE] \
        if folder.is_dir() else []
    return sorted(files, key=lambda p: natural_key(p.name))


def _origin(root: Path, runs_dir: str) -> Path | None:
    """The folder the run was made from: the run folder less its relative runs_dir and run name (else None)."""
    rel = Path(runs_dir)
    n = len(rel.parts)
    if rel.is_absolute() or ".." in rel.parts or n >= len(root.parents):
        return None
    return root.parents[n] if root.parent.parts[len(root.parent.parts) - n:] == rel.parts else None


@contextlib.contextmanager
def _made_from(root: Path, params: Params) -> Iterator[None]:
    """Work from the folder the run was made from, so the params' relative paths mean what they meant."""
    origin = _origin(root, params.runs_dir)
    with contextlib.chdir(origin) if origin is not None else contextlib.nullcontext():
        yield


# ------------------------------------------------------------------ the checkpoint
def _candidates(spec: str, root: Path) -> Iterator[Path]:
    """Where a checkpoint spec may lie: as an absolute path, in the run folder, in checkpoints/, from here."""
    folder = RunPaths(root).checkpoints
    if Path(spec).is_absolute():
        yield Path(spec)
        return
    yield root / spec
    yield from (folder / spec, *(folder / f"{spec}{s}" for s in CHECKPOINT_SUFFIXES))
    yield Path(spec).resolve()


def resolve_checkpoint(root: Path, params: Params, checkpoint: str | Path | None) -> tuple[Path, dict[str, Any]]:
    """(checkpoint file, load options) a `select_icds` checkpoint names: a path (absolute, relative to the run
    folder, or to here), a file (stem) in checkpoints/, or an eval.names system name; None when checkpoints/
    holds one. A ':study_renames' or ':study_layers=1' suffix, or the eval.systems entry matching the file,
    gives the options."""
    from icl_kit.evaluation.systems import study_options

    found = checkpoint_files(root)
    shown = _some([p.stem for p in found]) or "none"
    if checkpoint is None:
        if not found:
            raise KitError(f"Run {root} has no selector checkpoint in checkpoints/; train it first "
                           "(`icl-kit train --params <params>`) or pass checkpoint= the path of a checkpoint file.")
        if len(found) > 1:
            raise KitError(f"Run {root} has {len(found)} selector checkpoints ({shown}); pass checkpoint= one "
                           f"of them (e.g. checkpoint={found[-1].stem!r}) or a checkpoint path.")
        return found[0].resolve(), _listed_options(found[0], root, params.eval.systems)
    spec, options = study_options(str(checkpoint))
    by_name = {name: key for key, name in params.eval.names.items()}
    for path in _candidates(by_name.get(spec, spec), root):
        if path.is_file():
            return path.resolve(), options or _listed_options(path, root, params.eval.systems)
    raise KitError(f"Checkpoint {str(checkpoint)!r} is neither a file nor a checkpoint of run {root} (its "
                   f"checkpoints/ holds {shown}); pass one of those names or the path of a checkpoint file.")


def _listed_options(path: Path, root: Path, systems: Iterable[str]) -> dict[str, Any]:
    """The load options of the eval.systems entry that lists `path` (none when no entry does)."""
    from icl_kit.evaluation.systems import BASELINES, study_options

    for entry in systems:
        spec, options = study_options(entry)
        if entry in BASELINES or not options:
            continue
        base = Path(spec) if Path(spec).is_absolute() else root / spec
        matched = glob.glob(str(base)) if glob.has_magic(spec) else [str(base)]
        if any(Path(m).resolve() == path.resolve() for m in matched):
            return options
    return {}


def _system_names(path: Path, root: Path, names: dict[str, str]) -> dict[str, str]:
    """The eval.names entry naming `path` (by its listed path or its file name), keyed by its file name."""
    for key, name in names.items():
        if key == path.name or (not glob.has_magic(key) and (root / key).resolve() == path.resolve()):
            return {path.name: name}
    return {}


def checkpoint_system(root: Path, params: Params, checkpoint: str | Path | None) -> System:
    """The evaluation's `System` of a checkpoint of the run: loaded, named and placed as `evaluate` does."""
    from icl_kit.evaluation.systems import resolve_systems
    from icl_kit.selection.checkpoints import load_checkpoint

    path, options = resolve_checkpoint(root, params, checkpoint)
    names = _system_names(path, root, params.eval.names)
    escaped = glob.escape(str(path))  # a literal path, whatever characters it holds
    return resolve_systems([escaped], root, loader=partial(load_checkpoint, **options), names=names)[0]


# ------------------------------------------------------------------ the questions
def _question_ids(question_ids: int | Iterable[int], test_ids: list[int], root: Path) -> list[int]:
    """The asked ids as ints; one that is not a test question of the run is a KitError naming it."""
    one = isinstance(question_ids, str) or not isinstance(question_ids, Iterable)
    asked = [question_ids] if one else list(question_ids)
    known = set(test_ids)
    out = []
    for q in asked:
        try:
            qid = operator.index(q)
        except TypeError:
            qid = None
        if qid is None or isinstance(q, bool) or qid not in known:
            some = _some(test_ids)
            raise KitError(f"Question id {q!r} is not a test question of run {root}; pass test question ids "
                           f"(ints) such as {some}.")
        out.append(qid)
    return out


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise KitError(f"k={k!r} must be the number of demonstrations to choose, an int >= 1 (e.g. k=2).")
    return k


# ------------------------------------------------------------------ entry point
def select_icds(run: RunLike, question_ids: int | Iterable[int], k: int,
                checkpoint: str | Path | None = None) -> list[dict[str, Any]]:
    """The k ICDs the run's selector `checkpoint` picks for each test question, in prompt order, read-only.

    `run`: a run folder (or a RunResults / Params naming one). `checkpoint`: a name in the run's checkpoints/
    ('grpo_epoch2'), an eval.names system name, or a checkpoint path; it may be left out when the run has one
    checkpoint. Returns one dict per asked question, in the asked order: {question_id, icd_ids (pool question
    ids, prompt order), shot (= k), system (its name in eval/predictions.jsonl), checkpoint (as recorded there)}.
    """
    from icl_kit.evaluation.systems import check_input_dims, select, shot_icds
    from icl_kit.run_context import RunContext

    root = run_folder(run).resolve()
    params = run_params(root)
    k, cfg = _check_k(k), params.eval
    system = checkpoint_system(root, params, checkpoint)
    with _made_from(root, params):
        params.runs_dir, params.run_name = str(root.parent), root.name  # the world of this folder
        world = RunContext.build(params, commit=False).world  # reads the run's caches, writes nothing
        qids = _question_ids(question_ids, [r.question_id for r in world.test_records], root)
        check_input_dims([system], int(world.emb(world.pool_ids[:1]).shape[-1]), root)
        chosen = select(system, world, list(dict.fromkeys(qids)), max(k, *cfg.shots), seed=cfg.seed,
                        pool_spec=cfg.pool)
    return [{"question_id": q, "icd_ids": list(shot_icds(system, chosen[q], k, cfg.similarity_order)), "shot": k,
             "system": system.name, "checkpoint": system.checkpoint} for q in qids]
