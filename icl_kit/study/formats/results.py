"""The study's result files, read and checked (docs/study.md, "Result files").

Two layouts:

- `metrics.json` of the study's inference script, merged across runs (one key per run):
      {"<datetime>-test_data_num=<N>-<Retriever>": {"shot_num=1": 0.632, ...}, ...}
  N = -1 means the whole test split; otherwise the run used the N smallest question ids of the split.
  ZeroShot runs use `shot_num=0`.
- the random baseline's flat file over the whole test split: {"shot_num_1": 0.41, ..., "shot_num_4": ...}.

Values are fractions (a 2-decimal percentage / 100); anything outside 0..1 is refused. Neither layout
records which checkpoint made a run, and no per-question prediction survives: a result file holds one
accuracy per (run, shot) and nothing else.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icl_kit.core.errors import KitError

KEY_RE = re.compile(r"^(?P<when>.*?)-test_data_num=(?P<n>-?\d+)-(?P<retriever>.+)$")
N_RE = re.compile(r"test_data_num=(-?\d+)")
SHOT_RE = re.compile(r"^shot_num=(\d+)$")  # metrics.json
FLAT_SHOT_RE = re.compile(r"^shot_num_(\d+)$")  # the flat baseline file
FLAT_RETRIEVER_RE = re.compile(r"([A-Za-z]+Retriever)_baseline_metrics$")
BASELINE_RETRIEVERS = ("RandomRetriever", "ZeroShot", "MMTopKRetriever")  # not trained: the "older" side of a claim


@dataclass(frozen=True)
class StudyRun:
    """One run of a result file: its key, retriever, date, n (None = the whole split) and {shot: fraction}."""

    path: Path
    key: str
    retriever: str
    when: str
    n: int | None
    shots: dict[int, float] = field(compare=False)  # a run is (file, key): hashable
    layout: str = field(default="metrics", compare=False)  # "metrics" or "flat"

    @property
    def source(self) -> str:
        """`<file name>:<key>`; the flat file has one run, so its name alone."""
        return self.path.name if self.layout == "flat" else f"{self.path.name}:{self.key}"

    @property
    def is_baseline(self) -> bool:
        """A retriever that was not trained (random, zero-shot, similarity), or the flat random baseline."""
        return self.layout == "flat" or self.retriever.startswith(BASELINE_RETRIEVERS)


def read_json(path: Path, what: str = "Results file") -> Any:
    """The JSON value of a file, or one KitError naming the file and what is wrong with it."""
    if not path.is_file():
        raise KitError(f"{what} {path} does not exist; pass the study's result JSON file.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise KitError(f"{what} {path} is not valid JSON{where}; pass the study's result JSON file.") from None


def is_results(obj: Any) -> bool:
    """True for either result layout (every key a run key, or every key a flat shot key)."""
    return isinstance(obj, dict) and bool(obj) and (all(FLAT_SHOT_RE.match(str(k)) for k in obj)
                                                    or all(KEY_RE.match(str(k)) for k in obj))


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
    """Every run of a result file of either layout, checked (see the module doc)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise KitError(f"Results file {path} must hold a non-empty object of runs "
                       '("<timestamp>-test_data_num=N-...": {"shot_num=K": accuracy}).')
    if all(FLAT_SHOT_RE.match(str(k)) for k in data):
        found = FLAT_RETRIEVER_RE.search(path.stem)
        retriever = found.group(1) if found else "RandomRetriever"
        return [StudyRun(path, path.name, retriever, "", None, _shots(path.name, data, path, FLAT_SHOT_RE), "flat")]
    runs = []
    for key, value in data.items():
        m = KEY_RE.match(str(key))
        n_match = N_RE.search(str(key))
        if m is None and n_match is None:
            raise KitError(f"Run {key!r} in {path} does not say test_data_num=N; it is not a run of the study's "
                           "metrics.json (pass the question count with --n if it is).")
        n = int(m.group("n") if m else n_match.group(1))  # type: ignore[union-attr]
        retriever = m.group("retriever") if m else str(key)
        runs.append(StudyRun(path, str(key), retriever, m.group("when") if m else "", n if n > 0 else None,
                             _shots(str(key), value, path, SHOT_RE), "metrics"))
    return runs
