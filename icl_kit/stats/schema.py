"""The two files the stats stage writes, one schema each: stats/comparisons.csv and stats/summary.json.

The report, `load_run` and the notebooks read them through `comparisons_frame` and `stats_summary` (the reading
itself is in icl_kit.stats.run). A file that does not match its schema was made by another version of the kit:
it is refused in one sentence with the fix (re-run the statistics), never patched with defaults. The level of
every test (`stats.alpha`) is resolved once, by the stats stage, and read back from summary.json's `config`.

Nothing here reads or writes a file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from icl_kit.core.artefacts import ARTEFACTS
from icl_kit.core.config import StatsConfig
from icl_kit.core.errors import KitError

# stats/comparisons.csv: one row per (A, B, shot, subset), these columns in this order
COLUMNS = [
    "system_a", "system_b", "shot", "n", "acc_a", "acc_b", "diff", "ci_low", "ci_high", "tost_low", "tost_high",
    "p", "p_adj", "p_method", "tost_p", "tost_p_adj", "verdict", "sign_p", "n_improved", "n_worsened", "mde",
    "n_needed", "n_needed_observed", "alpha_power", "family", "family_size", "kind", "label", "mode", "subset",
    "interval", "wilcoxon_p", "sd_diff", "note", "claimed", "n_needed_lo", "n_needed_hi", "ci_low_family",
    "ci_high_family", "n_clusters", "shots", "p_ci_disagree", "n_seeds",
]
TEXT_COLUMNS = ("system_a", "system_b", "p_method", "verdict", "family", "kind", "label", "mode", "subset",
                "interval", "note", "shots")
SUMMARY_FORMAT = ARTEFACTS["stats_summary"].version
RERUN = "re-run the statistics (`icl-kit run PARAMS --stages stats`)"


@dataclass(frozen=True)
class StatsSummary:
    """stats/summary.json: what the stats stage decided besides the rows of comparisons.csv."""

    n_comparisons: int
    families: dict[str, int]  # "<subset>/<family>" -> comparisons in it
    verdicts: dict[str, dict[str, int]]  # subset -> verdict -> count
    config: StatsConfig  # the params the statistics were made with (alpha among them)
    best_epoch: list[dict[str, Any]] = field(default_factory=list)  # max-T tests: per shot, and joint over shots
    honest_number: dict[str, dict[str, Any]] = field(default_factory=dict)  # lineage -> best-on-validation epoch

    def to_json(self) -> dict[str, Any]:
        """The file's content (with its format version)."""
        return {"format": SUMMARY_FORMAT, **dataclasses.asdict(self)}


def comparisons_frame(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """comparisons.csv as read by pandas -> the checked table (`where` names the file in a refusal)."""
    missing = [c for c in COLUMNS if c not in df.columns]
    unknown = [c for c in df.columns if c not in COLUMNS]
    if missing or unknown:
        what = "; ".join(s for s in (f"it lacks {missing}" if missing else "",
                                     f"it has unknown {unknown}" if unknown else "") if s)
        raise KitError(f"{where} was not written by this version of icl-kit ({what}); {RERUN}.")
    out = df[COLUMNS].copy()
    for col in TEXT_COLUMNS:
        out[col] = out[col].where(out[col].notna(), "").astype(str)
    out["shot"] = out["shot"].astype(int)
    return out.reset_index(drop=True)


def stats_summary(raw: Any, where: str) -> StatsSummary:
    """summary.json's parsed JSON -> StatsSummary (`where` names the file in a refusal)."""
    keys = {f.name for f in dataclasses.fields(StatsSummary)}
    if not isinstance(raw, dict) or raw.get("format") != SUMMARY_FORMAT or set(raw) - {"format"} != keys:
        raise KitError(f"{where} was not written by this version of icl-kit (summary format "
                       f"{raw.get('format') if isinstance(raw, dict) else None}, this kit writes {SUMMARY_FORMAT}); "
                       f"{RERUN}.")
    config = raw["config"]
    known = {f.name for f in dataclasses.fields(StatsConfig)}
    if not isinstance(config, dict) or set(config) != known:
        raise KitError(f"{where} records stats params that this version of icl-kit does not have; {RERUN}.")
    return StatsSummary(**{k: raw[k] for k in keys if k != "config"}, config=StatsConfig(**config))
