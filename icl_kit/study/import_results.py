"""The study's result files as summary-only systems of a run (eval/imported.csv).

Each run of a result file (see `icl_kit.study.formats.results`) becomes one system:

- **Names.** `--name FILE_OR_ENTRY=NAME` names a run: FILE (a file holding one run), FILE:ENTRY or
  ENTRY alone, where ENTRY is a part of the run's key (its date is enough). The study's files record no
  checkpoint, so an unnamed run is called after its retriever, numbered in date order when a retriever
  ran more than once (`LeverLMRetriever#1`, `#2`, ...); the report lists each name with its file and key.
- **Re-import replaces.** A run imported again (under any name) replaces its earlier rows, and a name
  given again replaces the system of that name, so one run is never in a run folder twice.
- **n and the world.** n comes from the key's `test_data_num=N` (the study's first N test questions);
  a run over the whole split (N = -1, or the flat baseline file) takes `--n` when given, else the
  split's size from the params. The world (`imported_world`) is what the run measured: the study's
  reported numbers on its first N questions, or on its whole split. Statistics compare imported
  systems only with imported systems of the same world, and approximately (summaries only).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from icl_kit.core.errors import KitError, few
from icl_kit.core.names import POINTS, natural_key
from icl_kit.core.runs import RunPaths, atomic_open
from icl_kit.evaluation.io import IMPORTED_FIELDS, imported_path, imported_world, read_imported
from icl_kit.study.formats.results import StudyRun, read_study_results

NAME_EXAMPLE = "--name 'metrics.json:2025-12-20 10:11=grpo_epoch1'"


@dataclass(frozen=True)
class NamedRun:
    """A run of a result file with its system name and its question count."""

    run: StudyRun
    name: str
    n: int
    whole_split: bool

    @property
    def world(self) -> str:
        return imported_world(self.n, self.whole_split)


# ------------------------------------------------------------------ names
def parse_names(specs: Sequence[str]) -> list[tuple[str, str]]:
    """`FILE_OR_ENTRY=NAME` -> (target, name); the last '=' splits (keys hold 'test_data_num=N')."""
    out = []
    for spec in specs:
        target, sep, name = spec.rpartition("=")
        if not sep or not target.strip() or not name.strip():
            raise KitError(f"--name {spec!r} must be FILE_OR_ENTRY=NAME, e.g. {NAME_EXAMPLE}.")
        out.append((target.strip(), name.strip()))
    return out


def same_file(target: str, path: Path) -> bool:
    """Does `target` (as the user typed it) name the file `path`?"""
    if target in (str(path), path.name):
        return True
    t = Path(target)
    return t.is_file() and t.resolve() == path.resolve()


def match_target(target: str, runs: Sequence[StudyRun]) -> list[StudyRun]:
    """The runs `target` names: every run of a file, the runs of FILE:ENTRY, or those whose key holds ENTRY."""
    whole = [r for r in runs if same_file(target, r.path)]
    if whole:
        return whole
    for colon in (m.start() for m in re.finditer(":", target)):
        head, entry = target[:colon], target[colon + 1:]
        in_file = [r for r in runs if same_file(head, r.path)]
        if in_file:
            return [r for r in in_file if entry in r.key]
    return [r for r in runs if target in r.key]


def _explicit_names(runs: Sequence[StudyRun], specs: Sequence[tuple[str, str]]) -> dict[StudyRun, str]:
    named: dict[StudyRun, str] = {}
    for target, name in specs:
        hits = match_target(target, runs)
        if not hits:
            raise KitError(f"--name {target}={name}: {target!r} names no run of the result files; use a file, "
                           f"FILE:ENTRY or a part of a key, one of {[r.source for r in runs]}.")
        if len(hits) > 1:
            raise KitError(f"--name {target}={name}: {target!r} names {len(hits)} runs {[r.key for r in hits]}; "
                           f"add a part of the key that tells them apart (e.g. its date): {NAME_EXAMPLE}.")
        if hits[0] in named:
            raise KitError(f"--name gives run {hits[0].source!r} two names ({named[hits[0]]!r} and {name!r}); "
                           "keep one.")
        if name in named.values():
            raise KitError(f"--name gives the name {name!r} to two runs; give each run its own name.")
        named[hits[0]] = name
    return named


def name_runs(runs: Sequence[StudyRun], specs: Sequence[tuple[str, str]] = ()) -> list[tuple[StudyRun, str]]:
    """(run, name) for every run: the --name given, else the retriever (numbered by date when repeated)."""
    named = _explicit_names(runs, specs)
    rest = sorted((r for r in runs if r not in named), key=lambda r: (r.when, str(r.path), r.key))
    count = Counter(r.retriever for r in rest)
    index: Counter[str] = Counter()
    for run in rest:
        index[run.retriever] += 1
        name = run.retriever if count[run.retriever] == 1 else f"{run.retriever}#{index[run.retriever]}"
        if name in named.values():
            raise KitError(f"Run {run.source!r} would be called {name!r}, a name --name gave another run; name it "
                           f"too ({NAME_EXAMPLE}).")
        named[run] = name
    return [(r, named[r]) for r in runs]


# ------------------------------------------------------------------ rows
def named_runs(paths: Sequence[str | Path], specs: Sequence[tuple[str, str]] = (), *, n: int | None = None,
               split_size: Callable[[], int] | None = None) -> list[NamedRun]:
    """Every run of the files, named, with its n (see the module doc); nothing is written."""
    if n is not None and n < 1:
        raise KitError(f"--n {n} must be a positive number of test questions.")
    runs = [run for p in paths for run in read_study_results(p)]
    out = []
    for run, name in name_runs(runs, specs):
        if run.n is not None:
            out.append(NamedRun(run, name, run.n, False))
        elif n is not None:
            out.append(NamedRun(run, name, n, False))
        elif split_size is not None:
            out.append(NamedRun(run, name, split_size(), True))
        else:
            raise KitError(f"Run {run.source!r} covers the whole test split, whose size is unknown here; pass "
                           "--params (to read the split) or the question count with --n.")
    return out


def imported_rows(runs: Sequence[NamedRun]) -> pd.DataFrame:
    """Rows (system, shot, n, accuracy %, source, world) of named runs."""
    rows = [{"system": r.name, "shot": shot, "n": r.n, "accuracy": acc * POINTS, "source": r.run.source,
             "world": r.world} for r in runs for shot, acc in sorted(r.run.shots.items())]
    return pd.DataFrame(rows, columns=IMPORTED_FIELDS)


def merged_table(run_dir: str | Path, new: pd.DataFrame, remove: Sequence[str] = ()) -> pd.DataFrame:
    """eval/imported.csv after adding `new`: rows of the same runs or names replaced, `remove` dropped."""
    run_dir = Path(run_dir)
    summary = RunPaths(run_dir).summary
    evaluated = set(pd.read_csv(summary)["system"].astype(str)) if summary.is_file() else set()
    clash = sorted(set(new["system"]) & evaluated)
    if clash:
        raise KitError(f"System {clash[0]!r} already has per-question results in {run_dir}/eval; import the "
                       f"study's run under another name ({NAME_EXAMPLE}).")
    old = read_imported(run_dir)
    unknown = sorted(set(remove) - set(old["system"].astype(str)))
    if unknown:
        raise KitError(f"--remove {unknown[0]!r}: no imported system of that name in {run_dir}; choose from "
                       f"{few(sorted(set(old['system'].astype(str))), 'system', 5)}.")
    drop = old["source"].isin(set(new["source"])) | old["system"].astype(str).isin(set(new["system"]) | set(remove))
    kept = old[~drop]
    table = pd.concat([kept, new], ignore_index=True) if len(kept) else new.copy()
    order = sorted(range(len(table)), key=lambda i: (natural_key(str(table["system"].iat[i])),
                                                     int(table["shot"].iat[i])))
    return table.iloc[order].reset_index(drop=True)[IMPORTED_FIELDS]


def write_imported(run_dir: str | Path, table: pd.DataFrame) -> Path:
    """Write eval/imported.csv atomically (the run folder is created when missing)."""
    path = imported_path(run_dir)
    with atomic_open(path) as fh:
        table.to_csv(fh, index=False)
    return path


def import_results(paths: Sequence[str | Path], run_dir: str | Path, names: Sequence[str] = (), *,
                   n: int | None = None, split_size: Callable[[], int] | None = None,
                   remove: Sequence[str] = ()) -> pd.DataFrame:
    """Add the runs of result files to a run's eval/imported.csv; return the new rows (see the module doc)."""
    new = imported_rows(named_runs([Path(p) for p in paths], parse_names(names), n=n, split_size=split_size))
    write_imported(run_dir, merged_table(run_dir, new, remove))
    return new
