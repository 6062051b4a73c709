"""What the notebooks call first: find the project, load typed params, print them.

Notebooks run from JupyterLab (cwd = notebooks/), from papermill (cwd = where
`icl-kit run` was called) and from nbval (cwd = notebooks/). `setup` makes
relative paths in params mean the same thing in all three.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from icl_kit.core.config import Params, dump_yaml, load_params
from icl_kit.core.errors import KitError


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` holding `params/` and `icl_kit/` (else `start`)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params").is_dir() and (folder / "icl_kit").is_dir():
            return folder
    return here


def setup(params_path: str, overrides: dict[str, Any] | list[str] | None = None, verbose: bool = True) -> Params:
    """Load and validate params, print the resolved config.

    Relative paths (params_path, runs_dir, data.root) mean the folder the run was started from;
    when the params file is not found there (JupyterLab or nbval start in notebooks/), the
    project root above it is used instead.
    """
    path = Path(params_path)
    if not path.is_file():
        root = project_root()
        if not (root / path).is_file():
            raise KitError(f"Params file {params_path} not found from {Path.cwd()} or {root}; "
                           "set params_path in the parameters cell.")
        os.chdir(root)
    params = load_params(path, overrides or {})
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    if verbose:
        print(f"# run folder: {params.run_dir}\n{dump_yaml(params)}")
    return params
