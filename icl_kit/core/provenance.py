"""Where a result came from: the kit's git commit and the versions that made it."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path


def git_commit(cwd: str | Path | None = None) -> str:
    """The current git commit of the kit's checkout ('unknown' outside git)."""
    here = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def provenance() -> dict[str, str]:
    """Commit, Python and key package versions, saved beside every output."""
    from importlib.metadata import PackageNotFoundError, version

    info = {"git_commit": git_commit(), "python": platform.python_version()}
    for pkg in ("torch", "transformers", "scipy", "statsmodels", "numpy", "pandas"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = "absent"
    return info
