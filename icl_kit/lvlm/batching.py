"""Batches for the LVLM backends: a function over consecutive chunks, halving the batch on CUDA out-of-memory."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from icl_kit.core.errors import KitError

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError)


def run_in_batches(
    items: Sequence[T],
    batch_size: int,
    fn: Callable[[list[T]], list[Any]],
    desc: str = "",
) -> list[Any]:
    """`fn` over consecutive chunks of `items`; on CUDA OOM the batch is halved and retried.

    The halved size is kept for the rest of the call. A batch of 1 that still runs out of
    memory raises a KitError.
    """
    out: list[Any] = []
    start = 0
    with tqdm(total=len(items), desc=desc, disable=not desc, leave=False) as bar:
        while start < len(items):
            chunk = list(items[start:start + batch_size])
            try:
                out += fn(chunk)
            except Exception as exc:
                if not is_oom(exc):
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if batch_size == 1:
                    raise KitError(
                        "CUDA ran out of memory on a single prompt; lower lvlm.max_pixels or use "
                        "a smaller lvlm.dtype (e.g. bfloat16)."
                    ) from None
                batch_size //= 2
                log.warning("CUDA out of memory: retrying with batch size %d", batch_size)
                continue
            start += len(chunk)
            bar.update(len(chunk))
    return out
