"""What each stage of a run reads and writes: declared once, used for the pipeline's stage hashes
(`icl_kit.pipeline`) and the trainer's resume check (`icl_kit.train.state`).

`sections` are top-level params keys; `reads` and `writes` name rows of the artefact table
(icl_kit.core.artefacts), whose paths `RunPaths` gives. The
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
    ("sft_data",), ("train_log",),
)
EVAL = StageIO(
    "eval", ("seed", "deterministic", "data", "encoder", "lvlm", "pools", "selector", "eval"),
    ("checkpoints",), ("predictions", "summary"),
)
STATS = StageIO(
    "stats", ("stats",),
    ("predictions", "summary", "imported", "train_log"),
    ("comparisons", "stats_summary"),
)
REPORT = StageIO(
    "report", ("report", "stats", "data", "lvlm", "pools", "eval"),
    ("comparisons", "stats_summary", "train_log", "summary", "predictions", "imported", "headroom_summary",
     "headroom_questions"),
    ("report_md", "report_html"),
)
# Before training, when headroom.enabled (or asked for by name): what a selector could gain (icl_kit.headroom).
HEADROOM = StageIO(
    "headroom", ("seed", "data", "encoder", "lvlm", "pools", "sft_data", "train", "eval", "stats", "headroom"),
    (), ("headroom_summary",),
)
STAGES = (TRAIN, EVAL, STATS, REPORT)  # `icl-kit run`'s stages, in order
EVERY_STAGE = (HEADROOM, *STAGES)
