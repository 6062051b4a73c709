"""Run folders: layout, atomic writes, JSONL append/resume helpers.

Every write is atomic (temp file in the same folder, then `os.replace`) or an
append of whole lines, so a killed run resumes where it stopped. A kill during an
atomic write leaves its temp file `.<name>.<random>.<pid>.tmp`; the next start of a
stage removes those whose process is gone (`remove_stale_temps`).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from icl_kit.core.artefacts import ARTEFACTS, Artefact, meta_path
from icl_kit.core.errors import KitError
from icl_kit.core.names import seeded

OUTPUT_MODE = 0o644
TEMP_SUFFIX = ".tmp"
# The kit's own temp names: "." + target name + "." + 8 mkstemp characters [+ "." + writer pid] + ".tmp".
TEMP_RE = re.compile(r"^\.(?P<target>.+?)\.[a-z0-9_]{8}(?:\.(?P<pid>\d+))?\.tmp$")


@dataclass(frozen=True)
class RunPaths:
    """The files of one run folder (docs/design.md, "The run folder"): one attribute per row of the artefact
    table (icl_kit.core.artefacts), `RunPaths(root).<name>` = `root / <path>`, e.g. `.params`, `.pools`,
    `.sft_data`, `.last` (checkpoints/last.pt), `.stats_summary`, `.report_md`."""

    root: Path
    seed: int | None = None  # a training seed of train.seeds: its own train_log, last.pt, rollouts, tensorboard

    def sidecar(self, name: str) -> Path:
        """The `.meta.json` beside fingerprinted artefact `name` ('pools' -> pools.meta.json)."""
        return self.root / meta_path(ARTEFACTS[name].at(self.seed))

    def for_seed(self, seed: int | None) -> RunPaths:
        """The same run folder as training seed `seed` sees it (`Artefact.at`)."""
        return RunPaths(self.root, seed)

    def epoch_checkpoint(self, phase: str, number: int) -> Path:
        """checkpoints/{phase}_epoch{number}.pt, with _seed{S} for a seed of train.seeds."""
        return self.checkpoints / f"{seeded(f'{phase}_epoch{number}', self.seed)}.pt"  # type: ignore[attr-defined]

    def every_seed(self, name: str, seeds: Sequence[int]) -> list[Path]:
        """Artefact `name` of each seed of `seeds` (train.seeds), or the one file when `seeds` is empty."""
        return list(dict.fromkeys(self.root / ARTEFACTS[name].at(s) for s in (seeds or [None])))


def _artefact_path(artefact: Artefact) -> property:
    def get(self: RunPaths) -> Path:
        return self.root / artefact.at(self.seed)

    get.__name__, get.__doc__ = artefact.name, f"<run folder>/{artefact.path}"
    return property(get)


for _artefact in ARTEFACTS.values():
    setattr(RunPaths, _artefact.name, _artefact_path(_artefact))


def json_safe(x: Any) -> Any:
    """JSON-safe values: mappings with str keys, lists for tuples and arrays, numpy scalars as Python numbers,
    NaN and inf as None (JSON has neither)."""
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple | np.ndarray):
        return [json_safe(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ------------------------------------------------------------------ atomic writes
def make_temp(path: str | Path) -> tuple[int, Path]:
    """(fd, name) of a new temp file beside `path` in the kit's pattern; OS errors name `path`, not the temp."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".{os.getpid()}{TEMP_SUFFIX}")
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    return fd, Path(tmp)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    fd, tmp = make_temp(path)
    enc = None if "b" in mode else encoding
    try:
        with os.fdopen(fd, mode, encoding=enc) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, OUTPUT_MODE)  # mkstemp makes 0600; outputs are meant to be shared
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_temps(root: str | Path) -> list[Path]:
    """Delete the kit's temp files under `root` whose writer is gone (a kill mid-write); return them.

    Only names in TEMP_RE are touched; one whose writer pid is still alive is kept, since it may be
    another stage writing into the same run folder right now.
    """
    root = Path(root)
    removed = []
    for path in sorted(root.rglob(".*.tmp")) if root.is_dir() else []:
        match = TEMP_RE.match(path.name)
        if match is None or not path.is_file():
            continue
        pid = match.group("pid")
        if pid is not None and (int(pid) == os.getpid() or _alive(int(pid))):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save` through a temp file, so a kill never leaves a half-written checkpoint.

    The object is saved in canonical form (`canonical`), so equal contents give equal bytes.
    """
    import torch

    with atomic_open(path, "wb") as fh:
        torch.save(canonical(obj), fh)


def canonical(obj: Any) -> Any:
    """A copy of plain containers with every string interned, so pickling it is deterministic.

    Pickle writes an object it has seen before as a back-reference: two equal strings are stored
    once when they are the same object and twice when they are copies. Which one happens depends on
    the history of the values (a resumed run reads its strings from disk), so without this a resumed
    run's last.pt could differ in bytes from an uninterrupted run's. Tensors and other objects are kept.
    """
    if type(obj) is str:
        return sys.intern(obj)
    if type(obj) is dict:
        return {canonical(k): canonical(v) for k, v in obj.items()}
    if type(obj) is list:
        return [canonical(v) for v in obj]
    if type(obj) is tuple:
        return tuple(canonical(v) for v in obj)
    return obj


# --------------------------------------------------------------------------- JSON
def read_json_object(path: str | Path, what: str, missing_fix: str, holds: str) -> dict[str, Any]:
    """A JSON file that must hold one object (a study's file a user brings); each failure is one KitError:
    "<what> <path> does not exist; <missing_fix>." / "... is not valid JSON (...); re-copy it." /
    "... must hold <holds>, not <type>."."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{what} {path} does not exist; {missing_fix}.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise KitError(f"{what} {path} is not valid JSON ({exc}); re-copy it.") from None
    if not isinstance(raw, dict):
        raise KitError(f"{what} {path} must hold {holds}, not {type(raw).__name__}.")
    return raw


# -------------------------------------------------------------------------- JSONL
def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All complete lines; a truncated last line (a kill mid-write) is ignored.

    A malformed line that is *not* the last one is corruption, not a kill: KitError.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    rows: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        last = i == len(lines) - 1  # no trailing newline: the write was cut
        try:
            if last:
                raise ValueError("unterminated line")
            rows.append(json.loads(line))
        except ValueError:
            if last:
                break
            raise KitError(f"{path} line {i + 1} is not valid JSON; delete or repair that line.") from None
    return rows


def repair_jsonl(path: str | Path) -> int:
    """Cut a truncated last line so appends start on a line boundary; return bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as fh:
        fh.truncate(keep)
    return len(data) - keep


def append_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append whole lines (one write, flushed and synced) after repairing a cut last line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_jsonl(path)
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if not payload:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())


def prepare_run(params: Any, root: str | Path | None = None) -> RunPaths:
    """Commit a run folder: write the resolved params and provenance, remove stale temp files.

    Called only once the stage that writes into the folder has passed its checks (data read,
    questions chosen, resume state accepted), so a refused command leaves the folder as it was.
    Params that differ from the folder's params.yaml archive the old file first.
    """
    from icl_kit.core.config import dump_yaml
    from icl_kit.core.provenance import provenance

    paths = RunPaths(Path(root if root is not None else params.run_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(paths.root)
    text = dump_yaml(params)
    if paths.params.exists() and paths.params.read_text(encoding="utf-8") != text:
        _archive(paths.params)  # the outputs already here were made with these params: keep them
    if not paths.params.exists() or paths.params.read_text(encoding="utf-8") != text:
        atomic_write_text(paths.params, text)
    prov = json.dumps(provenance(), indent=2, ensure_ascii=False) + "\n"
    if not paths.provenance.exists() or paths.provenance.read_text(encoding="utf-8") != prov:
        atomic_write_text(paths.provenance, prov)
    return paths


def _archive(path: Path) -> Path:
    """Copy `path` into `<folder>/params_history/<name>.<n>.yaml` (n = 1, 2, ...); return the copy."""
    folder = path.parent / "params_history"
    folder.mkdir(exist_ok=True)
    n = len(list(folder.glob(f"{path.stem}.*{path.suffix}")))
    data = path.read_bytes()
    last = folder / f"{path.stem}.{n}{path.suffix}"
    if n and last.read_bytes() == data:
        return last  # archived already by a commit that was killed before it wrote the new params
    copy = folder / f"{path.stem}.{n + 1}{path.suffix}"
    atomic_write_bytes(copy, data)
    return copy
