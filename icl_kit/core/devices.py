"""Devices and determinism: the one place a device name becomes a torch.device."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from icl_kit.core.errors import KitError

log = logging.getLogger(__name__)


@contextmanager
def training_mode(module: torch.nn.Module, training: bool = False) -> Iterator[torch.nn.Module]:
    """`module` in train (dropout on) or eval mode for the block, then back in the mode it was in, even on error:
    the kit's one place that saves and restores a module's mode."""
    was = module.training
    module.train(training)
    try:
        yield module
    finally:
        module.train(was)


def cuda_problem() -> str:
    """Why CUDA is not usable here, as the end of a sentence ('' when it is usable)."""
    if torch.cuda.is_available():
        return ""
    if torch.version.cuda is None:
        return "this torch is a CPU-only build; install the CUDA build of torch that matches the driver"
    try:
        torch.cuda.init()  # raises with the driver's own reason (no driver, too old, no device visible)
        reason = "it sees no GPU"
    except (RuntimeError, AssertionError) as exc:
        reason = (str(exc).strip().splitlines() or ["it sees no GPU"])[0].split(". ")[0].rstrip(".")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    return (f"this torch is a CUDA {torch.version.cuda} build but cannot use the driver ({reason}){hint}; "
            "check `nvidia-smi` and the driver version")


def resolve_device(spec: str, key: str = "device") -> torch.device:
    """'auto' -> CUDA when usable, else CPU (logged, with the reason on a CUDA build); 'cuda' without a
    usable CUDA is a KitError naming `key` and the reason."""
    if spec == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        problem = cuda_problem() if torch.version.cuda is not None else ""
        if problem:
            log.warning("%s=auto chose cpu: %s", key, problem)
        else:
            log.info("%s=auto chose %s", key, device)
        return device
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise KitError(f"{key}={spec!r} but CUDA is not available here: {cuda_problem()}; or use 'auto' or 'cpu'.")
    return device


def set_deterministic(flag: bool) -> None:
    """Deterministic kernels for the run (warn, don't fail, where an op has none).

    Without this, CPU training with 2 threads differed between identical runs in the last bits of
    the weights, enough to flip a few greedy selections; with it, runs are bit-identical.
    """
    if flag:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism
    # torch.use_deterministic_algorithms also sets torch._inductor.config, and importing that pulls in
    # torch._dynamo: seconds at every start of a command that compiles nothing. Set the flag itself and
    # the inductor one only when inductor is loaded already (it is imported by whoever compiles).
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_flag is None:
        torch.use_deterministic_algorithms(flag, warn_only=True)
        return
    set_flag(flag, warn_only=True)
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = flag
