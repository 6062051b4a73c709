"""Selector checkpoints: v3 (`*.pt`), v2 (Lightning `*_v2format.ckpt`), bare state dicts.

v3: {"epoch": int (0-based), "phase": "rce"|"grpo", "model_state_dict": {...},
     "kl_beta": float, "metrics": {...}, "selector_config": {...}}
     (`selector_config` is ours; the existing study's files lack it, so loading
     never requires it.)
v2: {"epoch", "global_step", "pytorch-lightning_version",
     "state_dict": {"lever_lm.pointer_selector.<name>": tensor, ...},
     "hyper_parameters": {...}}; other modules' weights may sit beside the selector's.

Loading is strict and safe: `torch.load(weights_only=True)` only, every selector
key must be present with its DESIGN.md shape, and nothing else may be; all
problems are reported in one KitError. Dims are inferred from the weights
(d, h, number of layers); heads and dropout from the stored config when present.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from glob import glob, has_magic
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icl_kit.core.errors import KitError
from icl_kit.core.names import PHASES
from icl_kit.core.runs import atomic_torch_save
from icl_kit.selection.selector import PointerSelector

log = logging.getLogger(__name__)

V2_PREFIX = "lever_lm.pointer_selector."
V2_SUFFIX = "_v2format.ckpt"
LIGHTNING_VERSION = "2.1.0"  # written into converted files; Lightning reads it to pick migrations
VERIFY_QUERIES, VERIFY_CANDIDATES, VERIFY_SHOTS = 8, 16, 4  # converter round-trip check
_LAYER_KEY = re.compile(r"^(?:cross_attn_layers|attn_norms)\.(\d+)\.")
_GLOBAL = re.compile(r"GLOBAL (\S+)")


# numpy scalars (e.g. metrics from np.mean) are plain data, not code: allow them under weights_only
NUMPY_SCALAR_GLOBALS = [np._core.multiarray.scalar, np.dtype, np.dtypes.Float64DType, np.dtypes.Float32DType,
                        np.dtypes.Float16DType, np.dtypes.Int64DType, np.dtypes.Int32DType, np.dtypes.BoolDType]


# ------------------------------------------------------------------ reading
def read_checkpoint_file(path: str | Path) -> Any:
    """`torch.load(weights_only=True)` with one clear sentence for each way a file can be wrong."""
    path = Path(path)
    if path.is_dir():
        raise KitError(f"Checkpoint path {path} is a directory; pass a .pt or .ckpt file inside it.")
    if not path.is_file():
        raise KitError(f"Checkpoint {path} does not exist; check the path.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pickle-protocol notes from torch
            with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if found:
            raise KitError(
                f"Checkpoint {path} needs arbitrary unpickling (it refers to {found.group(1)}), which "
                "could run code, so it is refused; re-save it with only tensors and plain Python values."
            ) from None
        raise KitError(f"Checkpoint {path} is not a PyTorch checkpoint (or is corrupted); re-export it.") from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as exc:
        raise KitError(
            f"Checkpoint {path} is truncated or not a PyTorch checkpoint ({type(exc).__name__}); "
            "re-copy or re-export it."
        ) from None


def split_layout(obj: Any, path: str | Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """-> (layout "v3"|"v2"|"state_dict", selector weights with bare names, stored config hints)."""
    if not isinstance(obj, Mapping):
        raise KitError(f"Checkpoint {path} holds a {type(obj).__name__}, not a checkpoint mapping; re-export it.")
    if "model_state_dict" in obj:
        return "v3", _mapping(obj["model_state_dict"], path, "model_state_dict"), _hints(obj.get("selector_config"))
    if "state_dict" in obj:
        state = _mapping(obj["state_dict"], path, "state_dict")
        return "v2", _strip_v2_prefix(state, path), _hints(obj.get("hyper_parameters"))
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        has_prefix = any(str(k).startswith(V2_PREFIX) for k in obj)
        return "state_dict", (_strip_v2_prefix(dict(obj), path) if has_prefix else dict(obj)), {}
    raise KitError(
        f"Checkpoint {path} has neither 'model_state_dict' (v3) nor 'state_dict' (v2) and is not a "
        "state dict of tensors; pass a selector checkpoint."
    )


def _mapping(value: Any, path: str | Path, key: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise KitError(f"Checkpoint {path}: '{key}' is a {type(value).__name__}, not a mapping of tensors.")
    return dict(value)


def _strip_v2_prefix(state: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """Selector weights under `lever_lm.pointer_selector.`; other modules' weights are ignored."""
    ours = {k[len(V2_PREFIX) :]: v for k, v in state.items() if k.startswith(V2_PREFIX)}
    others = [k for k in state if not k.startswith(V2_PREFIX)]
    if not ours:
        raise KitError(f"Checkpoint {path} holds no '{V2_PREFIX}*' weights; it is not a selector checkpoint.")
    if others:
        log.info("%s: ignored %d non-selector weights (e.g. %s)", path, len(others), others[0])
    return ours


def _hints(cfg: Any) -> dict[str, Any]:
    """Selector dims stored beside the weights (ours at top level or under `selector_config`)."""
    if not isinstance(cfg, Mapping):
        return {}
    nested = cfg.get("selector_config")
    src = nested if isinstance(nested, Mapping) else cfg
    out = {k: src[k] for k in ("input_dim", "num_heads") if isinstance(src.get(k), int)}
    if isinstance(src.get("dropout"), int | float):
        out["dropout"] = float(src["dropout"])
    return out


# ------------------------------------------------------------- strict check
def expected_shapes(input_dim: int, hidden_dim: int, num_layers: int) -> dict[str, tuple[int, ...]]:
    """Every selector key and its shape (DESIGN.md, "Selector parameters")."""
    d, h = input_dim, hidden_dim
    shapes: dict[str, tuple[int, ...]] = {} if d == h else {"input_proj.weight": (h, d)}
    for i in range(num_layers):
        shapes |= {
            f"cross_attn_layers.{i}.in_proj_weight": (3 * h, h),
            f"cross_attn_layers.{i}.in_proj_bias": (3 * h,),
            f"cross_attn_layers.{i}.out_proj.weight": (h, h),
            f"cross_attn_layers.{i}.out_proj.bias": (h,),
            f"attn_norms.{i}.weight": (h,),
            f"attn_norms.{i}.bias": (h,),
        }
    return shapes | {
        "query_proj.weight": (h, h),
        "cand_proj.weight": (h, h),
        "query_update_gate.weight": (h, 2 * h),
        "query_update_gate.bias": (h,),
    }


def infer_config(state: dict[str, Any], hints: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """input_dim, hidden_dim, num_layers from the weights; num_heads and dropout from hints (else 1, 0.1)."""
    votes = Counter(
        v.shape[0]
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.dim() >= 1
        and re.fullmatch(r"(query_proj|cand_proj)\.weight|attn_norms\.\d+\.(weight|bias)|query_update_gate\.bias", k)
    )
    if not votes:
        raise KitError(f"Checkpoint {path} holds none of the selector's weights (e.g. query_proj.weight).")
    h = votes.most_common(1)[0][0]  # a majority, so one mis-shaped tensor is reported, not believed
    proj = state.get("input_proj.weight")
    d = hints.get("input_dim") or (proj.shape[1] if isinstance(proj, torch.Tensor) and proj.dim() == 2 else h)
    layers = [int(m.group(1)) for k in state if (m := _LAYER_KEY.match(k))]
    return {
        "input_dim": d,
        "hidden_dim": h,
        "num_layers": max(layers) + 1 if layers else 1,
        "num_heads": hints.get("num_heads", 1),
        "dropout": hints.get("dropout", 0.1),
    }


def check_state(state: dict[str, Any], cfg: dict[str, Any], path: str | Path) -> None:
    """One KitError naming every missing, unexpected or mis-shaped key with its expected shape."""
    want = expected_shapes(cfg["input_dim"], cfg["hidden_dim"], cfg["num_layers"])
    missing = [f"{k} {list(s)}" for k, s in want.items() if k not in state]
    unexpected = [k for k in state if k not in want]
    wrong = [
        f"{k} {_shape(state[k])} (expected {list(s)})"
        for k, s in want.items()
        if k in state and _shape(state[k]) != list(s)
    ]
    problems = [f"{label} {', '.join(items)}" for label, items in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
    if problems:
        dims = f"d={cfg['input_dim']}, h={cfg['hidden_dim']}, {cfg['num_layers']} layer(s)"
        raise KitError(
            f"Checkpoint {path} does not match the selector ({dims}): {'; '.join(problems)}; "
            "fix these keys or re-export the checkpoint."
        )


def _shape(value: Any) -> list[int] | str:
    return list(value.shape) if isinstance(value, torch.Tensor) else f"<{type(value).__name__}, not a tensor>"


# ------------------------------------------------------------------ loading
def load_checkpoint(path: str | Path) -> tuple[PointerSelector, dict[str, Any]]:
    """Selector (eval mode) and info {layout, epoch, phase, metrics, kl_beta, global_step, config}."""
    obj = read_checkpoint_file(path)
    layout, state, hints = split_layout(obj, path)
    cfg = infer_config(state, hints, path)
    check_state(state, cfg, path)
    try:
        selector = PointerSelector(**cfg)
    except KitError as exc:
        raise KitError(f"Checkpoint {path}: {exc}") from None
    selector.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    info = {**_training_info(layout, obj), "layout": layout, "config": cfg}
    return selector.eval(), info


def _training_info(layout: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """epoch, phase, metrics, kl_beta (and global_step) as stored; v2 keeps the v3 values as v3_*."""
    if layout == "v3":
        return {"epoch": obj.get("epoch"), "phase": obj.get("phase"), "metrics": obj.get("metrics") or {},
                "kl_beta": obj.get("kl_beta"), "global_step": None}
    hp = obj.get("hyper_parameters") if layout == "v2" else None
    hp = hp if isinstance(hp, Mapping) else {}
    return {
        "epoch": obj.get("epoch") if layout == "v2" else None,
        "phase": hp.get("v3_phase"),
        "metrics": hp.get("v3_metrics") or {},
        "kl_beta": hp.get("v3_kl_beta"),
        "global_step": obj.get("global_step") if layout == "v2" else None,
    }


def load_selector(path: str | Path) -> PointerSelector:
    """The selector in any layout (v3, v2, bare state dict), strictly checked, in eval mode."""
    return load_checkpoint(path)[0]


# ------------------------------------------------------------------- saving
def save_v3(
    path: str | Path,
    selector: PointerSelector,
    epoch: int,
    phase: str,
    kl_beta: float,
    metrics: Mapping[str, Any],
) -> Path:
    """Write a v3 checkpoint atomically (epoch is 0-based); the selector config rides along."""
    if phase not in PHASES:
        raise KitError(f"phase={phase!r} must be one of {PHASES}.")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise KitError(f"epoch={epoch!r} must be a 0-based non-negative int.")
    ckpt = {
        "epoch": epoch,
        "phase": phase,
        "model_state_dict": {k: v.detach().cpu() for k, v in selector.state_dict().items()},
        "kl_beta": float(kl_beta),
        "metrics": _plain(dict(metrics), "metrics"),
        "selector_config": selector.config(),
    }
    atomic_torch_save(ckpt, path)
    return Path(path)


def _plain(value: Any, where: str) -> Any:
    """Numbers, strings and containers only, so `weights_only=True` can read the file back."""
    if isinstance(value, np.generic):  # before float: np.float64 subclasses float but pickles as numpy
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    raise KitError(f"{where} is a {type(value).__name__}; checkpoint metrics must be numbers, strings, "
                   "lists or tensors.")


# ---------------------------------------------------------------- converter
def v2_path(src: str | Path) -> Path:
    """Default output of the converter: `<src without .pt>_v2format.ckpt`."""
    src = Path(src)
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
            "v3_metrics": _plain(info["metrics"] or {}, "metrics"),
            "converted_from": Path(src).name,
        },
    }


def convert_v3_to_v2(src: str | Path, dst: str | Path | None = None, force: bool = False) -> Path:
    """Convert one v3 checkpoint to v2; the output is verified to select identically before it appears."""
    src = Path(src)
    dst = Path(dst) if dst is not None else v2_path(src)
    if dst.is_dir():
        raise KitError(f"Output {dst} is a directory; pass a file name such as {v2_path(src).name}.")
    if dst.exists() and not force:
        raise KitError(f"Output {dst} already exists; pass --force (force=True) to overwrite it.")
    if dst.resolve() == src.resolve():
        raise KitError(f"Output {dst} is the input itself; choose another output path.")
    selector, info = load_checkpoint(src)
    if info["layout"] != "v3":
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
    v3_ckpt: str, output: str | None = None, force: bool = False, echo: Callable[[str], Any] = log.info
) -> list[Path]:
    """CLI entry: one file (optional output) or a glob of files; echoes one line per input.

    In a glob, `*_v2format.ckpt` inputs and inputs whose output already exists are skipped;
    every other failure is echoed, and all are reported together in one KitError at the end.
    Returns the files written.
    """
    if not has_magic(v3_ckpt):
        dst = convert_v3_to_v2(v3_ckpt, output, force)
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
            written.append(convert_v3_to_v2(src, force=force))
            echo(f"converted {src} -> {written[-1]}")
        except KitError as exc:
            failures.append(str(exc))
            echo(f"failed {src}: {exc}")
    if failures:
        raise KitError(f"{len(failures)} of {len(sources)} matched files could not be converted (listed above).")
    return written
