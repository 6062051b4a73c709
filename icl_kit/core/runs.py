"""Run folders: layout, atomic writes, JSONL append/resume helpers.

Every write is atomic (temp file in the same folder, then `os.replace`) or an
append of whole lines, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from icl_kit.core.errors import KitError

OUTPUT_MODE = 0o644


@dataclass(frozen=True)
class RunPaths:
    """The files of one run folder (DESIGN.md, "Run folder")."""

    root: Path

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings.pt"

    @property
    def pools(self) -> Path:
        return self.root / "pools.json"

    @property
    def rewards(self) -> Path:
        return self.root / "rewards.sqlite"

    @property
    def rollouts(self) -> Path:
        return self.root / "rollouts.jsonl"

    @property
    def train_log(self) -> Path:
        return self.root / "train_log.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def predictions(self) -> Path:
        return self.eval_dir / "predictions.jsonl"

    @property
    def summary(self) -> Path:
        return self.eval_dir / "summary.csv"

    @property
    def stats_dir(self) -> Path:
        return self.root / "stats"

    @property
    def comparisons(self) -> Path:
        return self.stats_dir / "comparisons.csv"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def figures(self) -> Path:
        return self.report_dir / "figures"


# ------------------------------------------------------------------ atomic writes
@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    enc = None if "b" in mode else encoding
    try:
        with os.fdopen(fd, mode, encoding=enc) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, OUTPUT_MODE)  # mkstemp makes 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save` through a temp file, so a kill never leaves a half-written checkpoint."""
    import torch

    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


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


def prepare_run(params: Any) -> RunPaths:
    """Create the run folder and write the resolved params first, before anything else."""
    from icl_kit.core.config import dump_yaml
    from icl_kit.core.provenance import provenance

    paths = RunPaths(Path(params.run_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    text = dump_yaml(params)
    if paths.params.exists() and paths.params.read_text(encoding="utf-8") != text:
        _archive(paths.params)  # the outputs already here were made with these params: keep them
    atomic_write_text(paths.params, text)
    atomic_write_json(paths.root / "provenance.json", provenance())
    return paths


def _archive(path: Path) -> Path:
    """Copy `path` into `<folder>/params_history/<name>.<n>.yaml` (n = 1, 2, ...); return the copy."""
    folder = path.parent / "params_history"
    folder.mkdir(exist_ok=True)
    n = 1 + len(list(folder.glob(f"{path.stem}.*{path.suffix}")))
    copy = folder / f"{path.stem}.{n}{path.suffix}"
    atomic_write_bytes(copy, path.read_bytes())
    return copy
