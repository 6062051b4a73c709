"""Training of the selector (SFT, RCE, GRPO); the stage itself is `icl_kit.train.trainer.train`.

The public function `icl_kit.train` shares its name with this subpackage, and Python sets the attribute
`icl_kit.train` to this module as soon as any `icl_kit.train.*` module is imported. So this module is itself
callable: `icl_kit.train(params, ...)` forwards to `icl_kit.train.trainer.train`, whatever was imported
before, while `import icl_kit.train.trainer` keeps working. The trainer (and torch) is imported on the first
call only.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    """This package module, callable as the trainer's `train`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """`icl_kit.train.trainer.train(*args, **kwargs)` (looked up at each call)."""
        from icl_kit.train import trainer

        return trainer.train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
