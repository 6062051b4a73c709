"""Finding models locally: a folder, or a hub id already in the local cache (no download here).

A hub id found in the local cache resolves to its snapshot folder, so loading it makes no
network call at all (transformers would otherwise ask the hub whether a newer revision exists).
`HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` are honoured: offline, an uncached id fails at once.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from icl_kit.core.errors import KitError

HUB_HOST = "huggingface.co"
HUB_PROBE_TIMEOUT_S = 3.0
TRUE_VALUES = ("1", "true", "yes", "on")
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _looks_like_path(name: str) -> bool:
    """A hub id is `org/name` (one slash, no leading dot or slash); anything else is a path."""
    return name.startswith((".", "/", "~")) or name.count("/") != 1 or os.sep != "/" and os.sep in name


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set to a true value."""
    return any(os.environ.get(v, "0").strip().lower() in TRUE_VALUES for v in OFFLINE_VARS)


def _hub_reachable() -> bool:
    if hub_offline():
        return False
    try:
        socket.create_connection((HUB_HOST, 443), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def download_command(name: str) -> str:
    """The shell command that puts hub model `name` into the local cache."""
    return f"`hf download {name}` (older huggingface_hub: `huggingface-cli download {name}`)"


def cached_snapshot(name: str) -> str | None:
    """The local snapshot folder of hub id `name` when it is cached (with its config.json), else None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(name, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return folder if (Path(folder) / "config.json").is_file() else None


def locate_model(name: str, what: str, key: str) -> str:
    """Check that `name` (a local folder or a hub id) can be loaded; return what to pass on.

    A folder is returned as is; a cached hub id becomes its snapshot folder (no network call
    when loading). A missing folder, a folder without config.json, or a hub id that is
    neither cached nor reachable (or offline) raises a KitError naming `key` (e.g. 'lvlm.model')
    and the download command; this costs no download and fails in seconds, not after retries.
    An uncached id with the hub reachable is returned as is: from_pretrained downloads it.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise KitError(f"{key}={name!r} is a folder without config.json; point it at a {what} folder.")
        return str(path)
    if _looks_like_path(name):
        raise KitError(f"{key}={name!r}: no such folder; point it at a local {what} folder or a hub id.")
    snapshot = cached_snapshot(name)
    if snapshot is not None:
        return snapshot
    if not _hub_reachable():
        why = "HF_HUB_OFFLINE is set" if hub_offline() else "the hub cannot be reached (no network)"
        raise KitError(
            f"{key}={name!r} is not in the local hub cache and {why}; download it where there is network "
            f"with {download_command(name)}, or set {key} to a local {what} folder."
        )
    return name
