"""Cross-stage references, checked when params load: the systems, shots and subsets that `stats` and `report`
name must be ones the configured run can have.

A run has the systems its `eval.systems` make (baselines by name; a checkpoint path by its `eval.names` name
or file stem; a glob of the run's own `checkpoints/` folder by the files the `train` params write there:
`<phase>_epoch1.pt` .. `<phase>_epoch<epochs>.pt` and `last.pt`), and the systems its folder already has
results for (`eval/summary.csv`, and `eval/imported.csv`: the study's runs, whose names no params can know).
Only a reference that provably cannot exist is refused: a name in the kit's own namespace (a baseline such as
`similarity`, or a checkpoint name such as `grpo_epoch5`) that the run neither makes nor holds. Any other
name may still be imported (`icl-kit study import-results`); the statistics and the report check those
against the results themselves. A glob outside the run's checkpoints folder can make any name, so with one
in `eval.systems` no name is refused.
"""

from __future__ import annotations

import csv
import glob
import re
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from icl_kit.core.config.params import SUBSET_RE, Params, ReportConfig, StatsConfig
from icl_kit.core.errors import KitError, few
from icl_kit.core.names import PHASES, method_of, seed_of
from icl_kit.core.runs import RunPaths

# The baselines evaluation knows by name (icl_kit.evaluation.systems.BASELINES; a test keeps the two equal).
BASELINE_SYSTEMS = ("zero_shot", "random", "similarity", "similarity_i2t", "similarity_i2i", "similarity_t2t")
CHECKPOINT_NAME_RE = re.compile(rf"^({'|'.join(PHASES)})_epoch(\d+)$")  # the names training gives checkpoints
OWN_CHECKPOINTS = "checkpoints"  # the run's checkpoints folder, as eval.systems names it (relative to the run)
STUDY_OPTIONS = (":study_renames", ":study_layers=1")  # eval.systems suffixes (icl_kit.evaluation.systems)
SHOWN = 4  # systems named in a refusal
# A baseline left at its default is no reference the params make: a run that evaluates no random baseline (an
# evaluation of checkpoints only) need not name another one until its statistics run, which check it then.
DEFAULT_BASELINES = {"stats.baseline": StatsConfig().baseline, "report.baseline": ReportConfig().baseline}


def validate_references(p: Params, params_file: str | Path | None = None) -> None:
    """Refuse a reference of `stats` or `report` that the run cannot have (see the module doc).

    The run folder consulted for results it already holds is `p.run_dir`, and the folder of `params_file`
    when that is a run's own params.yaml."""
    folders = [p.run_dir] + ([Path(params_file).parent] if params_file else [])
    check_references(p, held_systems(folders))


def check_references(p: Params, held: dict[str, set[int]] | None = None) -> None:
    """The rules themselves, given what the run folder already holds (`held`: {system: its shots})."""
    held = held or {}
    _check_subsets(p)
    planned = planned_systems(p)
    if planned is None:
        return  # a glob outside the run's checkpoints folder: any name may come from it
    refs = [(f"stats.comparisons[{i}].{side}", str(c[side]))
            for i, c in enumerate(p.stats.comparisons) for side in ("a", "b")]
    refs += [("stats.baseline", p.stats.baseline)] if p.stats.automatic else []
    refs += [("report.baseline", p.report.baseline)]
    refs = [(key, name) for key, name in refs if DEFAULT_BASELINES.get(key) != name]
    names = list(dict.fromkeys(planned.values()))
    if len(p.train.seeds) >= 2:  # a method of several seeds is a name too (icl_kit.stats.seeds)
        names += list(dict.fromkeys(method_of(n) for n in names if seed_of(n) is not None))
    for key, name in refs:
        if name not in names and name not in held:
            _refuse_name(p, key, name, planned)
    _check_shots(p, set(names), held)


def planned_systems(p: Params) -> dict[str, str] | None:
    """{name by default (baseline, or checkpoint file stem): system name} of every system `eval.systems`
    makes, in its order; None when a glob outside the run's checkpoints folder makes names no params know."""
    files = checkpoint_files(p)
    out: dict[str, str] = {}
    for spec in p.eval.systems:
        if spec in BASELINE_SYSTEMS:
            out[spec] = spec
            continue
        spec = _without_options(spec)
        if not glob.has_magic(spec):
            path = PurePosixPath(spec)
            out[path.stem] = p.eval.names.get(spec, p.eval.names.get(path.name, path.stem))
            continue
        own = PurePosixPath(spec)
        if own.is_absolute() or str(own.parent) != OWN_CHECKPOINTS:
            return None
        for file in (f for f in files if fnmatchcase(f, own.name)):
            out[PurePosixPath(file).stem] = p.eval.names.get(file, PurePosixPath(file).stem)
    return out


def checkpoint_files(p: Params) -> list[str]:
    """The files training writes into the run's checkpoints folder: each phase's epochs, then the resume state."""
    epochs = {phase: getattr(p.train, phase).epochs for phase in PHASES}
    paths = [RunPaths(Path(), seed) for seed in p.train.seeds or [None]]  # train.seeds: each seed's files
    return [path.epoch_checkpoint(phase, n).name for path in paths for phase in PHASES
            for n in range(1, epochs[phase] + 1)] + [path.last.name for path in paths]


def held_systems(folders: list[Path]) -> dict[str, set[int]]:
    """{system: its shots} of the results the run folders already hold: evaluated (eval/summary.csv) or
    imported (eval/imported.csv). An unreadable table holds nothing here; the stage that reads it says why."""
    held: dict[str, set[int]] = {}
    for folder in folders:
        paths = RunPaths(Path(folder))
        for table in (paths.summary, paths.imported):
            try:
                with table.open(newline="", encoding="utf-8") as fh:
                    for row in csv.DictReader(fh):
                        shot = str(row.get("shot") or "")
                        held.setdefault(str(row.get("system") or ""), set()).update(
                            [int(shot)] if shot.isdigit() else [])
            except (OSError, UnicodeDecodeError, csv.Error):
                continue
    held.pop("", None)
    return held


# ------------------------------------------------------------------ rules
def _refuse_name(p: Params, key: str, name: str, planned: dict[str, str]) -> None:
    """A name in the kit's namespace the run neither makes nor holds is a KitError; any other name may be
    imported later and is left to the statistics and the report."""
    m = CHECKPOINT_NAME_RE.match(name)
    names = list(dict.fromkeys(planned.values()))  # checkpoints first when a checkpoint is asked for
    shown = few(sorted(names, key=lambda s: m is not None and not CHECKPOINT_NAME_RE.match(s)), "system", SHOWN)
    if name in BASELINE_SYSTEMS:
        raise KitError(f"{key}={name!r} names the baseline {name}, which eval.systems does not evaluate (this run "
                       f"evaluates {shown}); add {name} to eval.systems, or name one of those.")
    if m is None:
        return
    phase, n = m.group(1), int(m.group(2))
    epochs = getattr(p.train, phase).epochs
    if n > epochs:
        made = few([f"{phase}_epoch{k}" for k in range(1, epochs + 1)], "checkpoint", SHOWN)
        raise KitError(f"{key}={name!r} names a checkpoint this run never makes: train.{phase}.epochs={epochs} "
                       f"makes {made}, and this run evaluates {shown}; name one of those, or set "
                       f"train.{phase}.epochs to at least {n}.")
    if planned.get(name, name) != name:
        raise KitError(f"{key}={name!r} names a checkpoint that eval.names renames to {planned[name]!r}; use "
                       f"{planned[name]!r} (this run evaluates {shown}).")
    raise KitError(f"{key}={name!r} names a checkpoint that eval.systems does not evaluate (this run evaluates "
                   f"{shown}); add '{OWN_CHECKPOINTS}/{name}.pt' or '{OWN_CHECKPOINTS}/{phase}_epoch*.pt' to "
                   "eval.systems, or name one of those.")


def _check_shots(p: Params, planned: set[str], held: dict[str, set[int]]) -> None:
    """A comparison at one shot between two systems of this evaluation needs that shot in eval.shots (or
    results at it that the run folder already holds)."""
    shots = sorted(set(p.eval.shots))
    for i, c in enumerate(p.stats.comparisons):
        shot = c.get("shot")
        if shot is None or shot in shots or all(shot in held.get(c[s], ()) for s in ("a", "b")):
            continue
        if c["a"] in planned and c["b"] in planned:
            raise KitError(f"stats.comparisons[{i}].shot={shot} is not among eval.shots={shots}, so {c['a']} and "
                           f"{c['b']} have no results at it; choose one of {shots}, or add {shot} to eval.shots.")


def _check_subsets(p: Params) -> None:
    """A subset of the first (or N random) questions must fit in the eval.n questions the run evaluates."""
    if p.eval.questions == "all":
        return  # the split's size is known only when its files are read
    for i, sub in enumerate(p.stats.subsets):
        m = None if isinstance(sub, int) else SUBSET_RE.match(str(sub))
        n = sub if isinstance(sub, int) else int(m.group(1) or m.group(2)) if m else 0
        if n > p.eval.n:
            raise KitError(f"stats.subsets[{i}]={sub!r} takes {n} questions but the run evaluates eval.n="
                           f"{p.eval.n} (eval.questions: {p.eval.questions}); lower it to at most {p.eval.n}, or "
                           f"raise eval.n to {n}.")


def _without_options(spec: str) -> str:
    for option in STUDY_OPTIONS:
        if spec.endswith(option):
            return spec[: -len(option)]
    return spec
