"""Import the existing study's result files as summary-only systems (eval/imported.csv).

Two layouts (STUDY_FORMATS.md §9):

- §9.1 `metrics.json` of icl_inference.py, merged across runs:
      {"<datetime>-test_data_num=<N>-<Retriever>": {"shot_num=1": 0.632, ...}, ...}
  N = -1 means the whole test split. ZeroShot runs use `shot_num=0`.
- §9.2 `random_predict.py`'s flat file over the full test split: {"shot_num_1": 0.41, ..., "shot_num_4": ...}.

Values are fractions (a 2-decimal percentage / 100); anything outside 0..1 is refused. Each run (one key
of §9.1, the whole §9.2 file) becomes one system, named after its retriever (and its date when a
retriever ran more than once); n comes from the key, or the test split's size when the key says -1 or
the file is §9.2. Imported rows keep accuracy in percent and n, so statistics can only compare them as
summaries (`icl_kit.stats.paired.compare_summary`, an approximation: the pairing of questions is unknown).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from icl_kit.core.errors import KitError
from icl_kit.core.names import POINTS, natural_key
from icl_kit.core.runs import RunPaths, atomic_open
from icl_kit.evaluation.io import IMPORTED_FIELDS, imported_path, read_imported

KEY_RE = re.compile(r"^(?P<when>.*?)-test_data_num=(?P<n>-?\d+)-(?P<retriever>.+)$")
N_RE = re.compile(r"test_data_num=(-?\d+)")
SHOT_RE = re.compile(r"^shot_num=(\d+)$")  # §9.1
FLAT_SHOT_RE = re.compile(r"^shot_num_(\d+)$")  # §9.2
FLAT_RETRIEVER_RE = re.compile(r"([A-Za-z]+Retriever)_baseline_metrics$")


@dataclass(frozen=True)
class StudyRun:
    """One run of a study result file: its key, retriever, date, n (None = whole split) and {shot: fraction}."""

    key: str
    retriever: str
    when: str
    n: int | None
    shots: dict[int, float]
    layout: str  # "metrics" (§9.1) or "flat" (§9.2)


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise KitError(f"Results file {path} does not exist; pass the study's metrics JSON file.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise KitError(f"Results file {path} is not valid JSON{where}; pass the study's metrics JSON file.") from None
    if not isinstance(data, dict) or not data:
        raise KitError(f"Results file {path} must hold a non-empty object of runs "
                       '("<timestamp>-test_data_num=N-...": {"shot_num=K": accuracy}).')
    return data


def _fraction(key: str, name: str, acc: Any, path: Path) -> float:
    if isinstance(acc, bool) or not isinstance(acc, int | float) or not math.isfinite(acc) or not 0 <= acc <= 1:
        raise KitError(f"Run {key!r} in {path}: {name}={acc!r} must be an accuracy fraction in 0..1.")
    return float(acc)


def _shots(key: str, value: Any, path: Path, pattern: re.Pattern[str]) -> dict[int, float]:
    """{shot: fraction} of one run; keys that are not shot accuracies (other metrics) are skipped."""
    if not isinstance(value, dict):
        raise KitError(f"Run {key!r} in {path} must map 'shot_num=K' to accuracies, not {type(value).__name__}.")
    out = {int(m.group(1)): _fraction(key, name, acc, path) for name, acc in value.items()
           if (m := pattern.match(str(name)))}
    if not out:
        raise KitError(f"Run {key!r} in {path} has no 'shot_num=K' accuracies; check that it is a metrics file.")
    return out


def read_study_results(path: str | Path) -> list[StudyRun]:
    """Every run of a §9.1 or §9.2 file, checked (see module doc)."""
    path = Path(path)
    data = _load_json(path)
    if all(FLAT_SHOT_RE.match(str(k)) for k in data):
        found = FLAT_RETRIEVER_RE.search(path.stem)
        retriever = found.group(1) if found else "RandomRetriever"
        return [StudyRun(path.name, retriever, "", None, _shots(path.name, data, path, FLAT_SHOT_RE), "flat")]
    runs = []
    for key, value in data.items():
        m = KEY_RE.match(str(key))
        if m is None and N_RE.search(str(key)) is None:
            raise KitError(f"Run {key!r} in {path} does not say test_data_num=N; pass the question count with --n.")
        n = int(m.group("n") if m else N_RE.search(str(key)).group(1))  # type: ignore[union-attr]
        retriever = m.group("retriever") if m else str(key)
        runs.append(StudyRun(str(key), retriever, m.group("when") if m else "", n if n > 0 else None,
                             _shots(str(key), value, path, SHOT_RE), "metrics"))
    return runs


def system_names(runs: list[StudyRun]) -> list[str]:
    """The retriever's name; `<retriever>@<date>` when one retriever ran more than once in the file."""
    count = Counter(r.retriever for r in runs)
    return [r.retriever if count[r.retriever] == 1 else f"{r.retriever}@{r.when}" for r in runs]


def parse_results(path: str | Path, system: str | None = None, *, entry: str | None = None, n: int | None = None,
                  split_size: Callable[[], int] | None = None) -> pd.DataFrame:
    """Rows (system, shot, n, accuracy %, source), one system per run of the file.

    `system` names the one run imported (several runs: pick one with `entry`); None names each run after
    its retriever. `n` overrides every run's question count; `split_size()` gives the whole split's.
    """
    path = Path(path)
    if system is not None and not system.strip():
        raise KitError("The imported system needs a name; pass --system NAME.")
    if n is not None and n < 1:
        raise KitError(f"--n {n} must be a positive number of test questions.")
    runs = read_study_results(path)
    names = system_names(runs)
    picked = [(r, s) for r, s in zip(runs, names, strict=True) if entry is None or entry in r.key]
    if not picked:
        raise KitError(f"No run in {path} has {entry!r} in its key; choose a part of one of: {[r.key for r in runs]}.")
    if system is not None and len(picked) > 1:
        raise KitError(f"{path} holds {len(picked)} runs {[r.key for r, _ in picked]}; pick one with --entry TEXT "
                       "(a part of its key), or drop --system to import one system per run.")
    rows = []
    for run, name in picked:
        count = n if n is not None else run.n if run.n is not None else _whole_split(run, path, split_size)
        rows += [{"system": system or name, "shot": shot, "n": count, "accuracy": acc * POINTS,
                  "source": f"{path.name}:{run.key}"} for shot, acc in sorted(run.shots.items())]
    return pd.DataFrame(rows, columns=IMPORTED_FIELDS)


def _whole_split(run: StudyRun, path: Path, split_size: Callable[[], int] | None) -> int:
    if split_size is None:
        raise KitError(f"Run {run.key!r} in {path} covers the whole test split, whose size is unknown here; pass "
                       "--params (to read the split) or the question count with --n.")
    return split_size()


def _evaluated_systems(run_dir: Path) -> set[str]:
    summary = RunPaths(run_dir).summary
    return set(pd.read_csv(summary)["system"].astype(str)) if summary.is_file() else set()


def import_results(
    path: str | Path, system: str | None, run_dir: str | Path, *, entry: str | None = None, n: int | None = None,
    split_size: Callable[[], int] | None = None,
) -> pd.DataFrame:
    """Add the runs of a result file to eval/imported.csv (replacing those systems' old rows)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise KitError(f"Run folder {run_dir} does not exist; pass an existing run folder (e.g. runs/demo) with "
                       "--run, or evaluate that run first.")
    new = parse_results(path, system, entry=entry, n=n, split_size=split_size)
    clash = sorted(set(new["system"]) & _evaluated_systems(run_dir))
    if clash:
        raise KitError(f"System {clash[0]!r} already has per-question results in {run_dir}/eval; "
                       "import under another --system name.")
    old = read_imported(run_dir)
    kept = old[~old["system"].astype(str).isin(set(new["system"]))]
    table = pd.concat([kept, new], ignore_index=True) if len(kept) else new
    order = sorted(range(len(table)), key=lambda i: (natural_key(str(table["system"].iat[i])),
                                                     int(table["shot"].iat[i])))
    table = table.iloc[order].reset_index(drop=True)
    with atomic_open(imported_path(run_dir)) as fh:
        table.to_csv(fh, index=False)
    return new
