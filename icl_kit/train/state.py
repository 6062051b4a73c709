"""Resume state of a training run (`checkpoints/last.pt`) and what it takes to restore it exactly.

last.pt holds the policy, the frozen reference (GRPO), the optimiser, β, the position
(phase, epoch, steps done in the epoch, global step), every RNG state (torch, CUDA,
numpy, python, the sampling generator), per-epoch accumulators, and how many lines of
train_log.jsonl were written when it was saved. A resumed run cuts the log back to that
many lines, so no step is logged twice, and continues bit for bit where the save was made, given the
same intra-op thread count: CPU reductions split by thread (LayerNorm's bias gradient does), so a resume
with another count differs in the last bit of a few weights; `warn_threads` says so.
It is read with `torch.load(weights_only=True)`: only tensors, numbers, strings, containers.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icl_kit.core.artefacts import ARTEFACTS, changed_values, shaping_params, shown
from icl_kit.core.config import Params
from icl_kit.core.errors import KitError
from icl_kit.core.names import PHASES
from icl_kit.core.runs import atomic_open, atomic_torch_save, read_jsonl

log = logging.getLogger(__name__)
STATE_VERSION = ARTEFACTS["last"].version


@dataclass
class Position:
    """Where training stands: `step` optimiser steps done in 0-based `epoch` of `phase`."""

    phase: str = PHASES[0]
    epoch: int = 0
    step: int = 0
    global_step: int = 0


@dataclass
class EpochAcc:
    """Running sums over the current epoch (saved mid-epoch so a resumed epoch reports the same)."""

    kl_sum: float = 0.0
    n_steps: int = 0
    seconds: float = 0.0

    @classmethod
    def saved(cls, raw: dict[str, Any]) -> EpochAcc:
        """From last.pt's `epoch_acc` (older files also hold an `extra` that nothing used)."""
        return cls(**{k: v for k, v in raw.items() if k != "extra"})


def train_fingerprint(params: Params) -> str:
    """The params that shape the training trajectory (the artefact table's row of checkpoints/last.pt: the
    training sections without devices and inference batch sizes: artefacts.RESUMABLE_CHANGES), as JSON text.

    Stored in last.pt and compared key by key on resume, so a key added to the kit later (with its default)
    does not block resuming, while a changed value does.
    """
    return json.dumps(shaping_params("last", params), sort_keys=True, default=str)


def changed_params(saved: str, now: str) -> list[str]:
    """'key: old -> new' for every key present in both fingerprints whose value differs."""
    return changed_values(json.loads(saved), json.loads(now))


# ------------------------------------------------------------------------- RNG
def rng_state(sample_gen: torch.Generator) -> dict[str, Any]:
    """Every RNG the trainer draws from, in a weights_only-safe form."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, mt, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": [version, list(mt), gauss_next],
        "sample": sample_gen.get_state(),
    }


def set_rng_state(state: dict[str, Any], sample_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, mt, gauss_next = state["python"]
    random.setstate((version, tuple(mt), gauss_next))
    sample_gen.set_state(state["sample"])


# ----------------------------------------------------------------------- files
def save_last(path: Path, *, fingerprint: str, pos: Position, acc: EpochAcc, beta: float,
              policy: torch.nn.Module, ref: torch.nn.Module | None, opt: torch.optim.Optimizer,
              sample_gen: torch.Generator, log_lines: int) -> None:
    """Write last.pt atomically (a kill mid-write leaves the previous one)."""
    atomic_torch_save({
        "version": STATE_VERSION,
        "fingerprint": fingerprint,
        "position": asdict(pos),
        "epoch_acc": asdict(acc),
        "kl_beta": float(beta),
        "model": _cpu(policy.state_dict()),
        "ref_model": _cpu(ref.state_dict()) if ref is not None else None,
        "optimizer": opt.state_dict(),
        "rng": rng_state(sample_gen),
        "log_lines": int(log_lines),
        "threads": torch.get_num_threads(),
    }, path)


def _cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in sd.items()}


def load_last(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The saved state, or None when there is none; params that changed the trajectory are a KitError."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file; torch raises several types
        raise KitError(f"Resume state {path} cannot be read ({type(exc).__name__}); delete it to restart.") from None
    if state.get("version") != STATE_VERSION:
        raise KitError(f"Resume state {path} has version {state.get('version')}; delete it to restart.")
    changed = changed_params(state["fingerprint"], fingerprint)
    if changed:
        raise KitError(
            f"{path} was saved with different training params ({shown(changed)}); restore them, choose a new "
            "run_name, or delete the checkpoints folder to retrain."
        )
    return state


def warn_threads(state: dict[str, Any], path: Path) -> None:
    """Log a warning when a resume runs with another intra-op thread count than the saved run."""
    saved, now = state.get("threads"), torch.get_num_threads()
    if saved is not None and saved != now:
        log.warning("%s was saved with %d torch threads and training resumes with %d: the result equals an "
                    "uninterrupted run up to the last bit of a few weights, not byte for byte; set "
                    "OMP_NUM_THREADS=%d (or torch.set_num_threads) for identical files.", path, saved, now, saved)


def truncate_log(path: Path, n_lines: int) -> list[dict[str, Any]]:
    """Keep the first `n_lines` complete lines of a JSONL log (atomically); return them."""
    rows = read_jsonl(path)
    if len(rows) != n_lines or (path.exists() and not path.read_bytes().endswith(b"\n")):
        kept = rows[:n_lines]
        with atomic_open(path) as fh:
            fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
        return kept
    return rows
