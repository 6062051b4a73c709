"""icl_kit: learn which in-context demonstrations to show a vision-language model.

The public API. Each name is imported on first use, so `import icl_kit` stays cheap and
pulls in torch or transformers only when a function that needs them is touched:

    load_params      params YAML (+ overrides) -> validated Params        (icl_kit.core.config)
    train            SFT/RCE/GRPO training of the selector                (icl_kit.train.trainer)
    evaluate         checkpoints x shots x test questions -> predictions  (icl_kit.evaluation.runner)
    stats_for_run    paired comparisons of a run -> stats/                (icl_kit.stats.run)
    write_report     report.md + report.html of a run                     (icl_kit.report.build)
    run_pipeline     the four notebooks in order through papermill        (icl_kit.pipeline)
    load_selector    a selector checkpoint of any supported layout        (icl_kit.selection.checkpoints)
    convert_v3_to_v2 v3 .pt -> Lightning-style v2 .ckpt                   (icl_kit.selection.convert)
    compare_paired   two systems on the same questions                   (icl_kit.stats.paired)
    compare_summary  two systems known only by accuracy and n             (icl_kit.stats.paired)
    compare_seeds    two methods over training seeds x the same questions (icl_kit.stats.seeds)
    vqa_accuracy     the official VQA accuracy of one answer              (icl_kit.data.vqa_accuracy)
    load_run         a run folder's results, read-only -> RunResults      (icl_kit.stats.run)
    select_icds      the ICDs a run's checkpoint picks for its questions  (icl_kit.evaluation.select)

`train` is also the name of the subpackage icl_kit.train: that package module is itself callable and
forwards to icl_kit.train.trainer.train, so `icl_kit.train(params)` works whatever was imported first.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_params": ("icl_kit.core.config", "load_params"),
    "train": ("icl_kit.train.trainer", "train"),
    "evaluate": ("icl_kit.evaluation.runner", "evaluate"),
    "stats_for_run": ("icl_kit.stats.run", "stats_for_run"),
    "write_report": ("icl_kit.report.build", "write_report"),
    "run_pipeline": ("icl_kit.pipeline", "run"),
    "load_selector": ("icl_kit.selection.checkpoints", "load_selector"),
    "convert_v3_to_v2": ("icl_kit.selection.convert", "convert_v3_to_v2"),
    "compare_paired": ("icl_kit.stats.paired", "compare_paired"),
    "compare_summary": ("icl_kit.stats.paired", "compare_summary"),
    "compare_seeds": ("icl_kit.stats.seeds", "compare_seeds"),
    "vqa_accuracy": ("icl_kit.data.vqa_accuracy", "vqa_accuracy"),
    "load_run": ("icl_kit.stats.run", "load_run"),
    "select_icds": ("icl_kit.evaluation.select", "select_icds"),
}
# Public functions named like a subpackage: the name is the (callable) subpackage module itself, the one
# Python binds there when any of its modules is imported (see icl_kit/train/__init__.py).
_CALLABLE_PACKAGES = {"train"}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'icl_kit' has no attribute {name!r}")
    module, attr = _API[name]
    if name in _CALLABLE_PACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
