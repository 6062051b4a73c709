"""What the notebooks call first: find the project and the run folder, load typed params, say what runs.

Notebooks run from JupyterLab (cwd = the notebook's folder: notebooks/, or runs/<name>/notebooks/ for an
executed copy), from papermill (`icl-kit run`) and from nbval. Every notebook has the same three
parameters: `params_path`, `overrides` and `run_dir`. `setup` makes them mean the same thing everywhere:

- relative paths are tried from the working folder first, then from the project root (the folder above
  holding params/ and icl_kit/), which then becomes the working folder, so the params' own relative paths
  (data.root, runs_dir) mean what they meant when the run was made;
- `run_dir`, when given, is the run folder: the params' run folder is set to it, and the project holding it
  becomes the working folder. An executed copy in runs/<name>/notebooks/ is written with
  `params_path = "../params.yaml"`, `run_dir = ".."` (the run's own resolved params and folder), so it re-runs
  where it lies.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from icl_kit.core.config import Params, load_params
from icl_kit.core.errors import KitError
from icl_kit.core.runs import RunPaths


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` holding `params/` and `icl_kit/` (else `start`)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params").is_dir() and (folder / "icl_kit").is_dir():
            return folder
    return here


def _find(path: str, what: str) -> tuple[Path, bool] | None:
    """(`path` resolved, whether it was found only from the project root); None when empty. Tried as given
    (from the working folder) first, then from the project root."""
    if not path:
        return None
    p = Path(path)
    if p.exists():
        return p.resolve(), False
    if (project_root() / p).exists():
        return (project_root() / p).resolve(), True
    raise KitError(f"{what} {path} not found from {Path.cwd()} or {project_root()}; set it in the parameters cell.")


def _is_project(folder: Path) -> bool:
    return (folder / "params").is_dir() and (folder / "icl_kit").is_dir()


def setup(params_path: str, overrides: dict[str, Any] | list[str] | None = None, run_dir: str = "",
          verbose: bool = True) -> Params:
    """Load and validate params for a notebook, with the run folder resolved (see the module doc); print a
    one-line header (the full resolved params are the run's params.yaml)."""
    found = _find(params_path, "Params file")
    run = _find(run_dir, "Run folder")[0] if run_dir else None
    if found is None and run is None:
        raise KitError("Set params_path (a params file) or run_dir (a run folder) in the parameters cell.")
    params_file = found[0] if found else RunPaths(run).params
    home = project_root(run) if run is not None else project_root() if found[1] else None
    if home is not None and _is_project(home):
        os.chdir(home)  # the params' relative paths (data.root, runs_dir) mean what they meant when written
    params = load_params(params_file, overrides or {})
    if run is not None and params.run_dir.resolve() != run:  # the params name another folder: the run's wins
        params.runs_dir, params.run_name = str(run.parent), run.name
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    if verbose:
        n = len(overrides or {})
        print(f"run folder {params.run_dir} · params {params_path}" + (f" + {n} override(s)" if n else "")
              + f" · LVLM {params.lvlm.backend} · full params: {RunPaths(params.run_dir).params}")
    return params
