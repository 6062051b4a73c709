"""Batched vs one-at-a-time answers, measured once per LVLM fingerprint and kept in the run folder.

The study answered one prompt at a time. Batching (left-padded, length-sorted) gives the same
answers up to float round-off near beam ties; in bf16 that round-off flips some answers (3 of
40 prompts on the tiny random checkpoint). `check_agreement` answers a seeded sample of prompts
both ways, writes `lvlm_agreement.json`, and stops the run when the share that differs exceeds
`lvlm.max_disagreement`, with the two fixes. The report's configuration section shows the result.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icl_kit.core.config import LVLMConfig
from icl_kit.core.errors import KitError
from icl_kit.core.runs import RunPaths, atomic_write_json
from icl_kit.data.records import Record
from icl_kit.lvlm.base import LVLM, Request

log = logging.getLogger(__name__)

AGREEMENT_FILE = RunPaths(Path()).lvlm_agreement.name  # in the run folder (the artefact table)
DECODING_FILE = RunPaths(Path()).lvlm_decoding.name
CUDA_CHECK_PROMPTS = 64  # lvlm.agreement_check: null on CUDA
MAX_CHECK_SHOTS = 4  # the sample's shots cycle 1..4 (the study's range)


def check_size(cfg: LVLMConfig, lvlm: LVLM) -> int:
    """lvlm.agreement_check, with null = CUDA_CHECK_PROMPTS on CUDA and 0 elsewhere."""
    if cfg.agreement_check is not None:
        return cfg.agreement_check
    device = getattr(lvlm, "device", None)
    return CUDA_CHECK_PROMPTS if getattr(device, "type", "cpu") == "cuda" else 0


def sample_requests(pool: Sequence[Record], test: Sequence[Record], n: int, seed: int) -> list[Request]:
    """n prompts: test queries drawn without replacement (as far as there are), shots cycling 1..4,
    random ICDs from the pool; a function of (seed, the two record lists) only."""
    rng = random.Random(seed)
    queries = sorted(test, key=lambda r: r.question_id)
    picks = rng.sample(queries, min(n, len(queries))) + [rng.choice(queries) for _ in range(n - len(queries))]
    max_shots = min(MAX_CHECK_SHOTS, len(pool))
    return [Request(tuple(rng.sample(list(pool), 1 + i % max_shots)), q) for i, q in enumerate(picks)]


def measure(lvlm: LVLM, requests: Sequence[Request]) -> dict[str, Any]:
    """Answer `requests` batched (the backend's batch size) and one at a time; count equal texts."""
    batched = lvlm.generate(requests)
    alone = [lvlm.generate([r])[0] for r in requests]
    differ = [{"question_id": r.query.question_id, "icd_ids": [d.question_id for d in r.icds],
               "batched": b.text, "alone": a.text}
              for r, b, a in zip(requests, batched, alone, strict=True) if b.text != a.text]
    return {"n": len(requests), "agree": len(requests) - len(differ), "differ": differ}


def check_agreement(lvlm: LVLM, cfg: LVLMConfig, pool: Sequence[Record], test: Sequence[Record],
                    run_dir: str | Path, seed: int) -> dict[str, Any] | None:
    """Measure (or read, when this fingerprint was measured already) and enforce batch agreement.

    Returns the record written to `run_dir/lvlm_agreement.json`, or None when the check is off
    (size 0) or pointless (batch_size 1: every prompt is answered alone anyway).
    """
    n = check_size(cfg, lvlm)
    if n == 0 or cfg.batch_size == 1 or not test or not pool:
        return None
    path = RunPaths(Path(run_dir)).lvlm_agreement
    record = _read(path)
    if record is None or record.get("fingerprint") != lvlm.fingerprint() or record.get("n") != n \
            or record.get("batch_size") != cfg.batch_size:
        result = measure(lvlm, sample_requests(pool, test, n, seed))
        dtype = lvlm.describe()["dtype"] if hasattr(lvlm, "describe") else cfg.dtype  # 'auto' resolved
        record = {"fingerprint": lvlm.fingerprint(), "batch_size": cfg.batch_size, "dtype": dtype,
                  "seed": seed, **result}
        atomic_write_json(path, record)
    share = 1 - record["agree"] / record["n"]
    log.info("lvlm agreement: batched answers equal one-at-a-time answers on %d/%d prompts",
             record["agree"], record["n"])
    if share > cfg.max_disagreement:
        raise KitError(
            f"Batched answers differ from one-at-a-time answers on {record['n'] - record['agree']}/{record['n']} "
            f"prompts ({share:.1%} > lvlm.max_disagreement={cfg.max_disagreement:.1%}; details in {path}); set "
            "lvlm.batch_size: 1 (the study's one-at-a-time path) or lvlm.dtype: float32, or raise "
            "lvlm.max_disagreement to accept it."
        )
    return record


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_description(lvlm: LVLM, run_dir: str | Path) -> None:
    """`run_dir/lvlm_decoding.json`: the LVLM's resolved settings (decoding, dtype, attention), when it has any."""
    describe = getattr(lvlm, "describe", None)
    if describe is not None:
        atomic_write_json(RunPaths(Path(run_dir)).lvlm_decoding, describe())
