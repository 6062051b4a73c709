"""lvlm_work.json: what the LVLM did for each stage of a run, counted (icl_kit.lvlm.work) and kept for the report.

    {"<stage>": {"prompts": ..., "images": ..., ..., "label": "measured" | "simulated: ..."}}

A stage (train, eval, sft-data, headroom) adds what it did as it goes (`add_work`: training at each epoch's end,
the others when they finish); a stage resumed after a kill adds the new process's work, so the file holds the
work that was recorded, not what a run would cost from scratch (a killed process's unrecorded work is missing,
and the answers it stored are cache hits for the next one). Its bytes describe this history, not the results.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from icl_kit.core.errors import KitError
from icl_kit.core.runs import atomic_write_json
from icl_kit.lvlm.work import COUNTS, Work


def read_work(path: str | Path) -> dict[str, Work]:
    """{stage: Work} from lvlm_work.json ({} when there is none)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {stage: Work(**{k: int(v[k]) for k in COUNTS}, label=str(v["label"])) for stage, v in raw.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KitError(f"{path} is not an lvlm_work.json of this kit; delete it (it only records work "
                       "done, and the next stage writes it again).") from None


def add_work(path: str | Path, stage: str, work: Work) -> None:
    """Add one finished process's `work` to `stage`'s entry (atomic)."""
    path = Path(path)
    if not path.parent.is_dir() or not (work.prompts or work.images):
        return
    recorded = read_work(path)
    before = recorded.get(stage)
    recorded[stage] = work if before is None else before.with_counts(
        [a + b for a, b in zip(before.counts(), work.counts(), strict=True)])
    atomic_write_json(path, {s: dataclasses.asdict(w) for s, w in recorded.items()})
