"""A run's results as one read-only object: what `icl_kit.load_run` returns (read by `stats/run.py`).

The report and the notebooks can take a `RunResults` instead of reading the run's files themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from icl_kit.core.config import Params
from icl_kit.stats.schema import StatsSummary


@dataclass(frozen=True, eq=False, repr=False)
class RunResults:
    """The results of one run folder, as its files held them when it was loaded.

    A table or file the run has not made yet (a run not yet evaluated, or without statistics) is None.
    Loading never writes. The tables are the loader's own fresh reads: changing one changes neither the
    files nor another `load_run` of the same folder (load again to see files a later stage wrote).

    run_dir      the run folder
    params       the validated params of its params.yaml
    comparisons  stats/comparisons.csv: one row per comparison (system_a, system_b, shot, subset, ...)
    summary      stats/summary.json: verdict counts, families, best-epoch tests, the honest number, config
    accuracy     eval/summary.csv: (system, epoch, shot, n, accuracy in percent)
    predictions  eval/predictions.jsonl: one row per (system, shot, question) with its ICDs and answer
    """

    run_dir: Path
    params: Params
    comparisons: pd.DataFrame | None
    summary: StatsSummary | None
    accuracy: pd.DataFrame | None
    predictions: pd.DataFrame | None

    def __repr__(self) -> str:
        """One line: the folder and how much of each result it holds."""
        def rows(table: pd.DataFrame | None) -> str:
            return "None" if table is None else f"{len(table)} rows"

        summary = "None" if self.summary is None else f"{self.summary.n_comparisons} comparisons"
        return (f"RunResults(run_dir={str(self.run_dir)!r}, comparisons={rows(self.comparisons)}, "
                f"summary={summary}, accuracy={rows(self.accuracy)}, predictions={rows(self.predictions)})")
