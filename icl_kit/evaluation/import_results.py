"""Import the existing study's metrics JSON as a summary-only system (eval/imported.csv).

The study writes one JSON object per metrics file, one entry per evaluation run:

    {"2024-05-01 12:00:00-test_data_num=100-...": {"shot_num=1": 0.4567, "shot_num=2": 0.47, ...}}

Each entry gives accuracy as a fraction per shot for `test_data_num` questions,
with no per-question scores. Imported rows keep accuracy in percent and n, so
statistics can only compare them as summaries (`icl_kit.stats.paired.compare_summary`,
an approximation: the pairing of questions is unknown).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from icl_kit.core.errors import KitError
from icl_kit.core.names import POINTS, natural_key
from icl_kit.core.runs import RunPaths, atomic_open
from icl_kit.evaluation.io import IMPORTED_FIELDS, imported_path, read_imported

N_RE = re.compile(r"test_data_num=(\d+)")
SHOT_RE = re.compile(r"^shot_num=(\d+)$")


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


def _pick_entry(data: dict[str, Any], path: Path, entry: str | None) -> str:
    keys = list(data) if entry is None else [k for k in data if entry in k]
    if len(keys) == 1:
        return keys[0]
    if not keys:
        raise KitError(f"No run in {path} has {entry!r} in its key; choose a part of one of: {list(data)}.")
    raise KitError(f"{path} holds {len(keys)} runs {keys}; pick one with --entry TEXT (a part of its key).")


def _shot_accuracies(key: str, value: Any, path: Path) -> dict[int, float]:
    """{shot: accuracy percent} from one entry {"shot_num=K": fraction}."""
    if not isinstance(value, dict):
        raise KitError(f"Run {key!r} in {path} must map 'shot_num=K' to accuracies, not {type(value).__name__}.")
    out: dict[int, float] = {}
    for name, acc in value.items():
        match = SHOT_RE.match(str(name))
        if match is None:
            continue  # other metrics of the run are not accuracies
        if isinstance(acc, bool) or not isinstance(acc, int | float) or not 0 <= acc <= 1:
            raise KitError(f"Run {key!r} in {path}: {name}={acc!r} must be an accuracy fraction in 0..1.")
        out[int(match.group(1))] = float(acc) * POINTS
    if not out:
        raise KitError(f"Run {key!r} in {path} has no 'shot_num=K' accuracies; check that it is a metrics file.")
    return out


def _question_count(key: str, path: Path, n: int | None) -> int:
    if n is not None:
        if n < 1:
            raise KitError(f"--n {n} must be a positive number of test questions.")
        return n
    match = N_RE.search(key)
    if match is None or int(match.group(1)) < 1:
        raise KitError(f"Run {key!r} in {path} does not say test_data_num=N; pass the question count with --n.")
    return int(match.group(1))


def parse_results(path: str | Path, system: str, *, entry: str | None = None, n: int | None = None) -> pd.DataFrame:
    """Rows (system, shot, n, accuracy %, source) of one run in a metrics JSON file."""
    path = Path(path)
    if not system.strip():
        raise KitError("The imported system needs a name; pass --system NAME.")
    data = _load_json(path)
    key = _pick_entry(data, path, entry)
    count = _question_count(key, path, n)
    rows = [{"system": system, "shot": shot, "n": count, "accuracy": acc, "source": f"{path.name}:{key}"}
            for shot, acc in sorted(_shot_accuracies(key, data[key], path).items())]
    return pd.DataFrame(rows, columns=IMPORTED_FIELDS)


def _evaluated_systems(run_dir: Path) -> set[str]:
    summary = RunPaths(run_dir).summary
    return set(pd.read_csv(summary)["system"].astype(str)) if summary.is_file() else set()


def import_results(
    path: str | Path, system: str, run_dir: str | Path, *, entry: str | None = None, n: int | None = None
) -> pd.DataFrame:
    """Add one run of a metrics JSON file to eval/imported.csv (replacing `system`'s old rows)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise KitError(f"Run folder {run_dir} does not exist; pass an existing run folder (e.g. runs/demo) with "
                       "--run, or evaluate that run first.")
    if system in _evaluated_systems(run_dir):
        raise KitError(f"System {system!r} already has per-question results in {run_dir}/eval; "
                       "import under another --system name.")
    new = parse_results(path, system, entry=entry, n=n)
    old = read_imported(run_dir)
    kept = old[old["system"].astype(str) != system]
    table = pd.concat([kept, new], ignore_index=True) if len(kept) else new
    order = sorted(range(len(table)), key=lambda i: (natural_key(str(table["system"].iat[i])),
                                                     int(table["shot"].iat[i])))
    table = table.iloc[order].reset_index(drop=True)
    with atomic_open(imported_path(run_dir)) as fh:
        table.to_csv(fh, index=False)
    return new
