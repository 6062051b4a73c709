"""Names shared by every stage: units, training phases, checkpoint names and their sort order."""

from __future__ import annotations

import re

POINTS = 100.0  # accuracy 0..1 -> percentage points
PHASES = ("sft", "rce", "grpo")  # training phases in the order a run goes through them
EPOCH_RE = re.compile(r"epoch\d+")  # 'grpo_epoch3' -> lineage 'grpo_epoch'
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: object) -> tuple:
    """'grpo_epoch10' sorts after 'grpo_epoch9'."""
    return tuple(int(t) if t.isdigit() else t for t in _DIGITS.split(str(name)))


def lineage(system: str) -> str:
    """'grpo_epoch3' -> 'grpo_epoch': the checkpoints of one training lineage share it."""
    return EPOCH_RE.sub("epoch", str(system))
