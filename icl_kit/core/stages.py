"""What each stage of a run reads and writes: declared once, used for the pipeline's stage hashes
(`icl_kit.pipeline`) and the trainer's resume check (`icl_kit.train.state`).

`sections` are top-level params keys; `reads` and `writes` are paths inside the run folder. The
top-level `seed` seeds the simulated LVLM (and anything else without a seed of its own), and
`deterministic` changes the bits of trained weights, so both count wherever they have an effect.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageIO:
    name: str
    sections: tuple[str, ...]
    reads: tuple[str, ...]
    writes: tuple[str, ...]


TRAIN = StageIO(
    "train", ("seed", "deterministic", "data", "encoder", "lvlm", "pools", "selector", "sft_data", "train"),
    ("sft_data.jsonl",), ("train_log.jsonl",),
)
EVAL = StageIO(
    "eval", ("seed", "deterministic", "data", "encoder", "lvlm", "pools", "selector", "eval"),
    ("checkpoints",), ("eval/predictions.jsonl", "eval/summary.csv"),
)
STATS = StageIO(
    "stats", ("stats",),
    ("eval/predictions.jsonl", "eval/summary.csv", "eval/imported.csv", "train_log.jsonl"),
    ("stats/comparisons.csv", "stats/summary.json"),
)
REPORT = StageIO(
    "report", ("report", "stats", "data", "lvlm", "pools", "eval"),
    ("stats/comparisons.csv", "stats/summary.json", "train_log.jsonl", "eval/summary.csv",
     "eval/predictions.jsonl", "eval/imported.csv"),
    ("report/report.md", "report/report.html"),
)
STAGES = (TRAIN, EVAL, STATS, REPORT)
