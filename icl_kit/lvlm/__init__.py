"""LVLM backends behind one interface (`icl_kit.lvlm.base.LVLM`) and the factory that picks one.

Backends are imported lazily: the simulated LVLM must not pay for importing transformers.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from icl_kit.errors import KitError

if TYPE_CHECKING:
    from icl_kit.config import LVLMConfig, Params
    from icl_kit.lvlm.base import LVLM

HUB_HOST = "huggingface.co"
HUB_PROBE_TIMEOUT_S = 3.0


def build_lvlm(params_or_cfg: Params | LVLMConfig, data_root: str | Path | None = None) -> LVLM:
    """The LVLM named by `lvlm.backend`: 'qwen' (Qwen2.5-VL) or 'simulated' (demo world).

    `params_or_cfg` is the whole Params (its `lvlm` section is used; `data.root`, else
    $OKVQA_PATH / $VQAV2_PATH as for the loader, is the default `data_root`) or an
    LVLMConfig. The simulated backend reads the demo world at `data_root`.
    """
    cfg = getattr(params_or_cfg, "lvlm", params_or_cfg)
    if data_root is None and hasattr(params_or_cfg, "data"):
        from icl_kit.data.okvqa import ROOT_ENV

        data = params_or_cfg.data
        data_root = data.root or os.environ.get(ROOT_ENV[data.dataset], "")
    if cfg.backend == "qwen":
        from icl_kit.lvlm.qwen import QwenLVLM

        return QwenLVLM(cfg)
    if cfg.backend == "simulated":
        from icl_kit.lvlm.simulated import make_simulated

        return make_simulated(cfg, data_root)
    raise KitError(f"lvlm.backend={cfg.backend!r} is unknown; choose 'qwen' or 'simulated'.")


# ------------------------------------------------------------ model locations
def _looks_like_path(name: str) -> bool:
    """A hub id is `org/name` (one slash, no leading dot or slash); anything else is a path."""
    return name.startswith((".", "/", "~")) or name.count("/") != 1 or os.sep != "/" and os.sep in name


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection((HUB_HOST, 443), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def locate_model(name: str, what: str, key: str) -> str:
    """Check that `name` (a local folder or a hub id) can be loaded; return what to pass on.

    A missing folder, a folder without config.json, or a hub id that is neither cached
    nor reachable raises a KitError naming `key` (e.g. 'lvlm.model') and the fix; this
    costs no download and fails in seconds rather than after the hub client's retries.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise KitError(f"{key}={name!r} is a folder without config.json; point it at a {what} folder.")
        return str(path)
    if _looks_like_path(name):
        raise KitError(f"{key}={name!r}: no such folder; point it at a local {what} folder or a hub id.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot_download(name, local_files_only=True)
    except LocalEntryNotFoundError:
        if not _hub_reachable():
            raise KitError(
                f"{key}={name!r} is not in the local hub cache and the hub cannot be reached (no "
                f"network); download it where there is network or set {key} to a local {what} folder."
            ) from None
    return name
