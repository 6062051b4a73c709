"""The LVLM backends by name (as lm-eval's `@register_model`).

A backend module decorates its factory with `@register_backend("name")`; the factory takes
the `lvlm` params section, the data root and the top-level seed, and returns an `LVLM`. Its settings are the
section `lvlm.<name>` of the params (a dataclass in `icl_kit.core.config`, the one home of
defaults). Built-in backends are imported only when asked for, so the simulated LVLM does
not pay for importing transformers.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from icl_kit.core.config import backend_sections
from icl_kit.core.errors import KitError

if TYPE_CHECKING:
    from icl_kit.core.config import LVLMConfig, Params
    from icl_kit.lvlm.base import LVLM

Factory = Callable[["LVLMConfig", "str | Path | None", int], "LVLM"]
_FACTORIES: dict[str, Factory] = {}


def register_backend(name: str) -> Callable[[Factory], Factory]:
    """Register `factory` as backend `name`; the params must have a section `lvlm.<name>`."""
    if name not in backend_sections():
        raise KitError(f"LVLM backend {name!r} has no section lvlm.{name} in icl_kit.core.config; add one.")

    def deco(factory: Factory) -> Factory:
        _FACTORIES[name] = factory
        return factory

    return deco


def _factory(name: str) -> Factory:
    if name not in _FACTORIES:
        try:
            importlib.import_module(f"icl_kit.lvlm.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"icl_kit.lvlm.{name}":
                raise
    if name not in _FACTORIES:
        raise KitError(f"lvlm.backend={name!r} is not a registered backend; choose one of "
                       f"{list(backend_sections())}.")
    return _FACTORIES[name]


def build_lvlm(
    params_or_cfg: Params | LVLMConfig, data_root: str | Path | None = None, seed: int | None = None
) -> LVLM:
    """The LVLM named by `lvlm.backend`.

    `params_or_cfg` is the whole Params (its `lvlm` section is used; `data.root`, else
    $OKVQA_PATH / $VQAV2_PATH as for the loader, is the default `data_root`) or an
    LVLMConfig. The simulated backend reads the demo world at `data_root`. `seed` defaults
    to the params' top-level seed (0 for a bare LVLMConfig).
    """
    cfg = getattr(params_or_cfg, "lvlm", params_or_cfg)
    if seed is None:
        seed = getattr(params_or_cfg, "seed", 0)
    if data_root is None and hasattr(params_or_cfg, "data"):
        from icl_kit.data.okvqa import ROOT_ENV

        data = params_or_cfg.data
        data_root = data.root or os.environ.get(ROOT_ENV[data.dataset], "")
    return _factory(cfg.backend)(cfg, data_root, seed)
