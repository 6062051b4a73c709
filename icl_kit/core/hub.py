"""Finding models locally: a folder, or a hub id already in the local cache (no download here)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from icl_kit.core.errors import KitError

HUB_HOST = "huggingface.co"
HUB_PROBE_TIMEOUT_S = 3.0

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
