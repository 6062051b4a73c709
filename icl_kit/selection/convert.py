"""The v3 -> v2 converter: a `.pt` checkpoint as a Lightning `*_v2format.ckpt` the study's tools read.

Unlike the study's converter (docs/study.md, "Checkpoints") names are kept and every layer is written; the
generation (gate or none) is kept; the output is verified to select like the source before it appears.
With `study_renames`, a file written by the study's converter is read (names mapped back, one layer
only) and written again with the proper names, as `<stem>_mapped_v2format.ckpt`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from glob import glob, has_magic
from pathlib import Path
from typing import Any

import torch

from icl_kit.core.errors import KitError
from icl_kit.selection.checkpoints import V2_PREFIX, load_checkpoint, load_selector, plain_data
from icl_kit.selection.selector import PointerSelector

log = logging.getLogger(__name__)

V2_SUFFIX = "_v2format.ckpt"
LIGHTNING_VERSION = "2.1.0"  # written into converted files; Lightning reads it to pick migrations
VERIFY_QUERIES, VERIFY_CANDIDATES, VERIFY_SHOTS = 8, 16, 4  # converter round-trip check


def v2_path(src: str | Path) -> Path:
    """Default output: `<src without .pt>_v2format.ckpt` (a v2 source: `<stem>_mapped_v2format.ckpt`)."""
    src = Path(src)
    if src.name.endswith(V2_SUFFIX):
        return src.with_name(src.name[: -len(V2_SUFFIX)] + "_mapped" + V2_SUFFIX)
    stem = src.name[:-3] if src.name.endswith(".pt") else src.name
    return src.with_name(stem + V2_SUFFIX)


def to_v2(selector: PointerSelector, info: dict[str, Any], src: str | Path) -> dict[str, Any]:
    """The v2 (Lightning) mapping: prefixed selector weights, source epoch/phase/metrics in hyper_parameters."""
    return {
        "epoch": info["epoch"] if isinstance(info["epoch"], int) else 0,
        "global_step": 0,
        "pytorch-lightning_version": LIGHTNING_VERSION,
        "state_dict": {V2_PREFIX + k: v.detach().cpu() for k, v in selector.state_dict().items()},
        "hyper_parameters": {
            **selector.config(),
            "v3_epoch": info["epoch"],
            "v3_phase": info["phase"],
            "v3_kl_beta": info["kl_beta"],
            "v3_metrics": plain_data(info["metrics"] or {}, "metrics"),
            "converted_from": Path(src).name,
        },
    }


def convert_v3_to_v2(
    src: str | Path, dst: str | Path | None = None, force: bool = False, study_renames: bool = False,
    study_layers: int | None = None,
) -> Path:
    """Convert one v3 checkpoint to v2; the output is verified to select identically before it appears.

    `study_renames`: also accept a v2 file written by the study's converter (see module doc); `study_layers=1`:
    the same, when nothing in or beside the file shows that its source had one layer but you know it.
    """
    src = Path(src)
    dst = Path(dst) if dst is not None else v2_path(src)
    if dst.is_dir():
        raise KitError(f"Output {dst} is a directory; pass a file name such as {v2_path(src).name}.")
    if dst.exists() and not force:
        raise KitError(f"Output {dst} already exists; pass --force (force=True) to overwrite it.")
    if dst.resolve() == src.resolve():
        raise KitError(f"Output {dst} is the input itself; choose another output path.")
    selector, info = load_checkpoint(src, study_renames, study_layers=study_layers)
    if info["layout"] != "v3" and not info["study_renames"]:
        raise KitError(f"{src} is a {info['layout']} checkpoint, not v3 (no 'model_state_dict'); nothing to convert.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(to_v2(selector, info, src), fh)
            fh.flush()
            os.fsync(fh.fileno())
        _verify_same(selector, load_selector(tmp), src)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dst


@torch.no_grad()
def _verify_same(a: PointerSelector, b: PointerSelector, src: str | Path) -> None:
    """Both selectors pick the same ICDs with the same log-probs on seeded random inputs (eval mode)."""
    a, b = a.eval(), b.eval()
    g = torch.Generator().manual_seed(0)
    q = torch.randn(VERIFY_QUERIES, a.input_dim, generator=g)
    c = torch.randn(VERIFY_QUERIES, VERIFY_CANDIDATES, a.input_dim, generator=g)
    picks = a.select(q, c, VERIFY_SHOTS)
    same = a.config() == b.config() and torch.equal(picks, b.select(q, c, VERIFY_SHOTS)) and torch.equal(
        a.sequence_logprob(q, c, picks), b.sequence_logprob(q, c, picks)
    )
    if not same:
        raise KitError(f"Converted {src} does not select like the original; no output was written.")


def convert_paths(
    v3_ckpt: str, output: str | None = None, force: bool = False, echo: Callable[[str], Any] = log.info,
    study_renames: bool = False, study_layers: int | None = None,
) -> list[Path]:
    """CLI entry: one file (optional output) or a glob of files; echoes one line per input.

    In a glob, `*_v2format.ckpt` inputs and inputs whose output already exists are skipped;
    every other failure is echoed, and all are reported together in one KitError at the end.
    Returns the files written.
    """
    if not has_magic(v3_ckpt):
        dst = convert_v3_to_v2(v3_ckpt, output, force, study_renames, study_layers)
        echo(f"converted {v3_ckpt} -> {dst}")
        return [dst]
    if output is not None:
        raise KitError("--output names one file, so it cannot be used with a glob; drop it.")
    sources = sorted(Path(p) for p in glob(v3_ckpt) if not p.endswith(V2_SUFFIX))
    if not sources:
        raise KitError(f"No checkpoint matches {v3_ckpt!r}; check the pattern (quote it in the shell).")
    written: list[Path] = []
    failures: list[str] = []
    for src in sources:
        if v2_path(src).exists() and not force:
            echo(f"skipped {src} ({v2_path(src).name} exists)")
            continue
        try:
            written.append(convert_v3_to_v2(src, force=force, study_renames=study_renames, study_layers=study_layers))
            echo(f"converted {src} -> {written[-1]}")
        except KitError as exc:
            failures.append(str(exc))
            echo(f"failed {src}: {exc}")
    if failures:
        raise KitError(f"{len(failures)} of {len(sources)} matched files could not be converted (listed above).")
    return written
