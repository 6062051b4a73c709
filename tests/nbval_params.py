"""A pytest plugin for nbval: it points each notebook's parameters cell at params/nbval.yaml, so the notebooks
run at small sizes under `make test` (`PYTHONPATH=tests pytest -p nbval_params --nbval-lax notebooks`).

The committed parameters cells default to the real demo (params/demo.yaml), as a user opening a notebook in
JupyterLab expects; only the test run swaps the params file. It lives here, not in notebooks/, so the folder a
user opens holds the notebooks only.
"""

from __future__ import annotations

import re

NBVAL_PARAMS = "params/nbval.yaml"
PARAMS_LINE = re.compile(r'^params_path(?P<ann>: str)? = "[^"]*"', re.MULTILINE)


def pytest_collection_modifyitems(items):
    seen = set()
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None or "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        source, n = PARAMS_LINE.subn(f'params_path = "{NBVAL_PARAMS}"', cell.source)
        if n != 1:
            raise RuntimeError(f"{item.fspath}: the parameters cell has no params_path line to point at "
                               f"{NBVAL_PARAMS}; keep `params_path = \"...\"` in it.")
        cell.source = source
        seen.add(str(item.fspath))
    notebooks = {str(i.fspath) for i in items if getattr(i, "cell", None) is not None}
    missing = notebooks - seen
    if missing:
        raise RuntimeError(f"notebooks without a parameters cell: {sorted(missing)}")
