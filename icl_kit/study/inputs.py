"""The study's files as the user points at them: files and folders (walked), each shown by the path the user
would type (the argument, joined with the path below it for a folder), and sorted by kind."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from icl_kit.core.errors import KitError
from icl_kit.study.formats.results import is_results

CHECKPOINT_SUFFIXES = (".pt", ".ckpt", ".pth")


@dataclass(frozen=True)
class Input:
    """One file: where it is, and how to call it (its path relative to where the user pointed)."""

    path: Path
    shown: str


def collect(paths: Sequence[str | Path]) -> list[Input]:
    """Every file named, folders walked (hidden files skipped), in the order given, each once."""
    if not paths:
        raise KitError("No file given; pass the study's files or folders (result JSON files, checkpoints, ...).")
    out: list[Input] = []
    seen: set[Path] = set()
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            found = [p for p in sorted(path.rglob("*"))
                     if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)]
            items = [Input(p, str(Path(arg) / p.relative_to(path))) for p in found]
        elif path.is_file():
            items = [Input(path, str(arg))]
        else:
            raise KitError(f"{arg} does not exist (neither a file nor a folder); check the path.")
        for item in items:
            if item.path.resolve() not in seen:
                seen.add(item.path.resolve())
                out.append(item)
    return out


def is_checkpoint(path: Path) -> bool:
    return path.suffix in CHECKPOINT_SUFFIXES


def is_result_file(path: Path) -> bool:
    """A JSON file of either result layout (other JSON files, such as RL data or pool caches, are not)."""
    if path.suffix != ".json":
        return False
    try:
        return is_results(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, UnicodeDecodeError, OSError):
        return False
