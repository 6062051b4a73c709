"""Selector checkpoints: v3 (`*.pt`), v2 (Lightning `*_v2format.ckpt`), bare state dicts.

v3: {"epoch": int (0-based), "phase": "rce"|"grpo", "model_state_dict": {...},
     "kl_beta": float, "metrics": {...}, "selector_config": {...}, "params": {...}, "provenance": {...}}
     (`selector_config`, `params` (the resolved run params) and `provenance` (commit and versions)
     are ours; the existing study's files lack them, so loading never requires them.)
v2: {"epoch", "global_step", "pytorch-lightning_version",
     "state_dict": {"lever_lm.pointer_selector.<name>": tensor, ...},
     "hyper_parameters": {...}}; other modules' weights may sit beside the selector's.

Loading is strict and safe: `torch.load(weights_only=True)` only, every selector
key must be present with its shape (docs/study.md, "Checkpoints"), and nothing else may be; all
problems are reported in one KitError. Dims are inferred from the weights
(d, h, number of layers) and the generation from the gate keys (`query_update_gate.*` present:
"gate", absent: "none"; docs/study.md, "Checkpoints"); heads and dropout from the stored config when
present. A stored config that names the other generation is reported, never loaded silently.
The study's V4-x files, its converter's renamed keys and tuned-encoder weights: see `icl_kit.study.formats.keys`.
"""

from __future__ import annotations

import logging
import pickle
import re
import warnings
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icl_kit.core.errors import KitError
from icl_kit.core.names import PHASES
from icl_kit.core.runs import atomic_torch_save
from icl_kit.selection.selector import QUERY_UPDATES, PointerSelector
from icl_kit.study.formats import keys as study_keys

log = logging.getLogger(__name__)

V2_PREFIX = "lever_lm.pointer_selector."
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
    study_keys.split_lightning_extras(others, path)
    return ours


def _hints(cfg: Any) -> dict[str, Any]:
    """Selector dims stored beside the weights (ours at top level or under `selector_config`)."""
    if not isinstance(cfg, Mapping):
        return {}
    nested = cfg.get("selector_config")
    src = nested if isinstance(nested, Mapping) else cfg
    out = {k: src[k] for k in ("input_dim", "num_heads", "num_layers") if isinstance(src.get(k), int)}
    if isinstance(src.get("dropout"), int | float):
        out["dropout"] = float(src["dropout"])
    if src.get("query_update") in QUERY_UPDATES:
        out["query_update"] = src["query_update"]
    return out


# ------------------------------------------------------------- strict check
def expected_shapes(input_dim: int, hidden_dim: int, num_layers: int,
                    query_update: str = "gate") -> dict[str, tuple[int, ...]]:
    """Every selector key and its shape (docs/study.md, "Checkpoints"; the gate only in "gate")."""
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
    shapes |= {"query_proj.weight": (h, h), "cand_proj.weight": (h, h)}
    if query_update == "gate":
        shapes |= {"query_update_gate.weight": (h, 2 * h), "query_update_gate.bias": (h,)}
    return shapes


def infer_config(state: dict[str, Any], hints: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """input_dim, hidden_dim, num_layers, query_update from the weights; num_heads, dropout from hints.

    A stored query_update wins over the keys, so a gated file that lost its gate is reported as missing keys.
    """
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
    gated = any(k.startswith("query_update_gate.") for k in state)
    return {
        "input_dim": d,
        "hidden_dim": h,
        "num_layers": max(layers) + 1 if layers else 1,
        "num_heads": hints.get("num_heads", 1),
        "dropout": hints.get("dropout", 0.1),
        "query_update": hints.get("query_update", "gate" if gated else "none"),
    }


def check_state(state: dict[str, Any], cfg: dict[str, Any], path: str | Path) -> None:
    """One KitError naming every missing, unexpected or mis-shaped key with its expected shape."""
    want = expected_shapes(cfg["input_dim"], cfg["hidden_dim"], cfg["num_layers"], cfg["query_update"])
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
        dims = (f"d={cfg['input_dim']}, h={cfg['hidden_dim']}, {cfg['num_layers']} layer(s), "
                f"query_update={cfg['query_update']}")
        raise KitError(
            f"Checkpoint {path} does not match the selector ({dims}): {'; '.join(problems)}; "
            "fix these keys or re-export the checkpoint."
        )


def _shape(value: Any) -> list[int] | str:
    return list(value.shape) if isinstance(value, torch.Tensor) else f"<{type(value).__name__}, not a tensor>"


# ------------------------------------------------------------------ loading
def load_checkpoint(
    path: str | Path, study_renames: bool = False, query_update: str | None = None, study_layers: int | None = None
) -> tuple[PointerSelector, dict[str, Any]]:
    """Selector (eval mode) and info {layout, epoch, phase, metrics, kl_beta, global_step, config, study_renames}.

    `study_renames`: map the study converter's `cross_attn.`/`attn_norm.` keys back to layer 0 (one-layer
    sources only: shown by the file or its source beside it, or said with `study_layers=1`, which implies
    `study_renames`; see `icl_kit.study.formats.keys`). `query_update`: the generation the caller expects
    (None: the file's).
    """
    study_renames = study_renames or study_layers is not None
    obj = read_checkpoint_file(path)
    layout, state, hints = split_layout(obj, path)
    study_keys.refuse_v4(list(state), path)
    renamed = study_keys.renamed_keys(list(state))
    if renamed and not study_renames:
        raise study_keys.explain_renames(path, len(renamed))
    if renamed:
        state = study_keys.map_renames(state, path, hints, file_layers, study_layers)
    cfg = infer_config(state, hints, path)
    check_state(state, cfg, path)
    if query_update is not None and query_update != cfg["query_update"]:
        raise KitError(f"Checkpoint {path} is a query_update={cfg['query_update']!r} selector (its gate keys say "
                       f"so) but {query_update!r} was asked; set selector.query_update={cfg['query_update']!r}.")
    try:
        selector = PointerSelector(**cfg)
    except KitError as exc:
        raise KitError(f"Checkpoint {path}: {exc}") from None
    selector.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    info = {**_training_info(layout, obj), "layout": layout, "config": cfg, "study_renames": bool(renamed)}
    return selector.eval(), info


def file_layers(path: Path) -> int:
    """Layer count of another checkpoint file (the source `.pt` next to a converted file)."""
    _, state, _ = split_layout(read_checkpoint_file(path), path)
    layers = [int(m.group(1)) for k in state if (m := _LAYER_KEY.match(k))]
    return max(layers) + 1 if layers else 1


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


def load_selector(path: str | Path, study_renames: bool = False, study_layers: int | None = None) -> PointerSelector:
    """The selector in any layout (v3, v2, bare state dict) and either generation, strictly checked, eval mode."""
    return load_checkpoint(path, study_renames, study_layers=study_layers)[0]


# ------------------------------------------------------------------- saving
def save_v3(
    path: str | Path,
    selector: PointerSelector,
    epoch: int,
    phase: str,
    kl_beta: float,
    metrics: Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write a v3 checkpoint atomically (epoch is 0-based); the selector config, and the resolved params and
    provenance when given, ride along (loading never needs them)."""
    if phase not in PHASES:
        raise KitError(f"phase={phase!r} must be one of {PHASES}.")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise KitError(f"epoch={epoch!r} must be a 0-based non-negative int.")
    ckpt = {
        "epoch": epoch,
        "phase": phase,
        "model_state_dict": {k: v.detach().cpu() for k, v in selector.state_dict().items()},
        "kl_beta": float(kl_beta),
        "metrics": plain_data(dict(metrics), "metrics"),
        "selector_config": selector.config(),
    }
    if params is not None:
        ckpt["params"] = plain_data(dict(params), "params")
    if provenance is not None:
        ckpt["provenance"] = plain_data(dict(provenance), "provenance")
    atomic_torch_save(ckpt, path)
    return Path(path)


def plain_data(value: Any, where: str) -> Any:
    """Numbers, strings and containers only, so `weights_only=True` can read the file back."""
    if isinstance(value, np.generic):  # before float: np.float64 subclasses float but pickles as numpy
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain_data(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    raise KitError(f"{where} is a {type(value).__name__}; checkpoint metrics must be numbers, strings, "
                   "lists or tensors.")
