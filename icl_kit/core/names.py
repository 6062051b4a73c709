"""Names shared by every stage: units, training phases, checkpoint names and their sort order."""

from __future__ import annotations

import re

POINTS = 100.0  # accuracy 0..1 -> percentage points
PHASES = ("sft", "rce", "grpo")  # training phases in the order a run goes through them
EPOCH_RE = re.compile(r"epoch\d+")  # 'grpo_epoch3' -> lineage 'grpo_epoch'
_DIGITS = re.compile(r"(\d+)")
SEED_RE = re.compile(r"_seed(\d+)$")  # 'grpo_epoch3_seed1': the checkpoint of training seed 1 (train.seeds)


def natural_key(name: object) -> tuple:
    """'grpo_epoch10' sorts after 'grpo_epoch9'."""
    return tuple(int(t) if t.isdigit() else t for t in _DIGITS.split(str(name)))


def lineage(system: str) -> str:
    """'grpo_epoch3' -> 'grpo_epoch': the checkpoints of one training lineage share it."""
    return EPOCH_RE.sub("epoch", str(system))


def seeded(name: str, seed: int | None) -> str:
    """'grpo_epoch3', 1 -> 'grpo_epoch3_seed1' (a run with `train.seeds`); seed None -> the name as it is."""
    return name if seed is None else f"{name}_seed{seed}"


def seed_of(system: str) -> int | None:
    """The training seed a system name carries ('grpo_epoch3_seed1' -> 1), else None."""
    m = SEED_RE.search(str(system))
    return None if m is None else int(m.group(1))


def method_of(system: str) -> str:
    """'grpo_epoch3_seed1' -> 'grpo_epoch3': the method (params and epoch) that every seed's checkpoint shares."""
    return SEED_RE.sub("", str(system))


def collapse_epochs(systems: list[str]) -> list[str]:
    """Consecutive-epoch checkpoints of one lineage as one range, in training order; other names as they are:
    ['sft_epoch1', 'sft_epoch2', 'grpo_epoch1', 'random'] -> ['sft_epoch1–2', 'grpo_epoch1', 'random']."""
    epochs: dict[str, list[int]] = {}
    out: list[str] = []
    for name in systems:
        m = re.fullmatch(r"(.+_epoch)(\d+)", str(name))
        if m is None:
            out.append(str(name))
        elif m.group(1) not in epochs:
            epochs[m.group(1)] = [int(m.group(2))]
            out.append(m.group(1))  # a placeholder, filled below
        else:
            epochs[m.group(1)].append(int(m.group(2)))
    for stem, found in epochs.items():
        found.sort()
        whole = found == list(range(found[0], found[-1] + 1)) and len(found) > 1
        text = f"{stem}{found[0]}–{found[-1]}" if whole else ", ".join(f"{stem}{e}" for e in found)
        out[out.index(stem)] = text
    rank = {p: i for i, p in enumerate(PHASES)}
    return sorted(out, key=lambda s: (0 if "_epoch" in s else 1, rank.get(s.split("_epoch")[0], len(rank))))
