"""The sidecars (`<stem>.meta.json`) of the artefacts a stage reuses or extends (icl_kit.core.artefacts): read,
compared with the params of the stage at hand, and written so that a kill never pairs an artefact with a
sidecar that does not describe it.

An artefact that is absent or empty (a JSONL file without a complete line) has nothing that could be stale:
it passes every check and takes the stage's sidecar before its first line. One with lines or bytes must
have a sidecar (else an older kit made it) that matches; otherwise the stage refuses in one sentence, before
it writes anything, and never extends or reuses it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from icl_kit.core.artefacts import (
    ARTEFACTS,
    SIDECAR_SUFFIX,
    differences,
    stale_sentence,
    unknown_sentence,
    upgrade,
)
from icl_kit.core.errors import KitError
from icl_kit.core.runs import atomic_write_json

UNKNOWN = "unknown"  # `problem`: the artefact has no readable sidecar


def sidecar_path(path: str | Path) -> Path:
    """'runs/x/pools.json' -> 'runs/x/pools.meta.json'."""
    return Path(path).with_suffix(SIDECAR_SUFFIX)


def read_sidecar(name: str, path: str | Path) -> dict[str, Any] | None:
    """The sidecar beside artefact `name` at `path` (as `record` writes it); None when missing or unreadable."""
    try:
        raw = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return upgrade(name, raw)


def is_empty(path: str | Path) -> bool:
    """Absent, of no bytes, or (JSONL) without a complete non-blank line: nothing in it could be stale."""
    path = Path(path)
    if not path.is_file():
        return True
    if path.suffix != ".jsonl":
        return path.stat().st_size == 0
    return not any(line.strip() for line in path.read_bytes().split(b"\n")[:-1])


def problem(name: str, path: str | Path, now: dict[str, Any]) -> str | list[str] | None:
    """None when the artefact at `path` is empty or was made as `now` says; UNKNOWN without a sidecar; else the
    differences ('key: old -> new')."""
    if is_empty(path):
        return None
    stored = read_sidecar(name, path)
    if stored is None:
        return UNKNOWN
    return differences(stored, now) or None


def check_current(found: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    """{artefact name: (its path, the sidecar the stage would write)} -> one KitError naming every artefact that
    has no sidecar, or else every one made with other params, version or data, and the fix."""
    unknown, stale, changes = [], [], []
    for name, (path, now) in found.items():
        found_problem = problem(name, path, now)
        if found_problem == UNKNOWN:
            unknown.append((str(path), ARTEFACTS[name].meta))
        elif found_problem:
            stale.append((str(path), ARTEFACTS[name].meta))
            changes += [c for c in found_problem if c not in changes]
    if unknown:
        raise KitError(unknown_sentence([p for p, _ in unknown], [m for _, m in unknown]))
    if stale:
        raise KitError(stale_sentence([p for p, _ in stale], [m for _, m in stale], changes))


def begin_lines(name: str, path: str | Path, now: dict[str, Any]) -> None:
    """Before a build appends to a resumable JSONL artefact: one with lines must have been made as `now` says
    (else KitError); an empty one takes `now` as its sidecar, written atomically and only when it differs, so
    a build resumed after a kill ends with the same bytes as one never interrupted."""
    path = Path(path)
    if not is_empty(path):
        check_current({name: (path, now)})
    elif read_sidecar(name, path) != now:
        atomic_write_json(sidecar_path(path), now)


def replace_with_sidecar(name: str, path: str | Path, now: dict[str, Any], write: Callable[[], None]) -> None:
    """Write a whole artefact (`write`, atomic) with its sidecar `now`: an artefact described by another sidecar
    is removed first and the sidecar written before the artefact, so a kill at any point leaves the artefact
    absent or paired with the sidecar that describes it."""
    path = Path(path)
    if read_sidecar(name, path) != now:
        path.unlink(missing_ok=True)
        atomic_write_json(sidecar_path(path), now)
    write()
