"""Qwen2.5-VL's images before the model: qwen-vl-utils' resize (cached by path), their LLM token counts, and
the processor's output per image (`PixelCache`) with the sha256 of its pixels, which keys the vision-feature
cache (icl_kit.lvlm.qwen_vision).

The digest is computed once, when an image first goes through the processor, on the CPU tensor the processor
made; the feature cache would otherwise hash every image of every forward, and on a GPU copy its pixels back
to the host first (about 4.4 MB a COCO-sized image, and a synchronisation) to do so.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from PIL import Image
from qwen_vl_utils import fetch_image, smart_resize
from transformers import BatchFeature

from icl_kit.core.errors import KitError

PATCH_FACTOR = 28  # patch 14 x spatial merge 2: one LLM token per 28 x 28 pixel block
IMAGE_CACHE_SIZE = 256  # resized images kept: ICD and query images recur across shots and prompts


def pixel_budget(min_pixels: int | None, max_pixels: int | None) -> dict[str, int]:
    """The image budget as qwen-vl-utils keys; a null bound is left out, so its default applies."""
    return {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}


@functools.lru_cache(maxsize=IMAGE_CACHE_SIZE)
def resized_image(path: str, min_pixels: int | None, max_pixels: int | None) -> Image.Image:
    """qwen-vl-utils' `fetch_image` (as `process_vision_info` calls it), cached by path.

    RGB, sides resized to multiples of 28 with min_pixels <= area <= max_pixels (null = its default).
    """
    try:
        return fetch_image({"image": path, **pixel_budget(min_pixels, max_pixels)})
    except OSError as exc:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise KitError(f"Image {path} cannot be read ({exc.__class__.__name__}); replace the file.") from None


def image_tokens(height: int, width: int, min_pixels: int | None, max_pixels: int | None) -> int:
    """LLM tokens of one image: (h/28)(w/28) after qwen-vl-utils' smart resize (2x2 patches merge)."""
    h, w = smart_resize(height, width, factor=PATCH_FACTOR, **pixel_budget(min_pixels, max_pixels))
    return (h // PATCH_FACTOR) * (w // PATCH_FACTOR)


def pixel_digest(pixels: torch.Tensor) -> str:
    """sha256 of a tensor's bytes (its values in its dtype), on the host."""
    return hashlib.sha256(pixels.detach().to("cpu").contiguous().view(torch.uint8).numpy()).hexdigest()


class PixelCache:
    """The image processor's output for each image, by (path, pixel budget): a prompt's images that another
    prompt showed skip resizing, rescaling, normalising and patching (about 3 ms a COCO-sized image on a CPU
    core, in the critical path of a GPU that answers hundreds of images a second). Used as the processor's
    image processor during one call (`serving`); an image it has not seen goes through the real one ALONE
    (its patches do not depend on the other images of a call: tests/lvlm/test_vision_cache.py), and the
    outputs of a call's images are concatenated as the real one concatenates them. `digests` and `parts` hold
    the last call's images' `pixel_digest`s (each computed once, when its image was first processed) and
    pixel tensors, in order; served `apart`, the call's output leaves the pixels out (no copy of them at all:
    the backend hands `parts` to the forwards that need them, icl_kit.lvlm.qwen_prefix)."""

    def __init__(self, inner: Any, max_entries: int) -> None:
        self.inner, self.max_entries = inner, max_entries
        self.entries: OrderedDict[tuple, tuple[dict[str, Any], str]] = OrderedDict()
        self.keys: list[tuple] = []  # the next call's images, in order (`serving`)
        self.digests: list[str] = []  # the last call's images' pixel digests, in order
        self.parts: list[torch.Tensor] = []  # and their pixels (the processor's output rows, on the host)
        self.apart = False  # `serving(apart=True)`: the call's output leaves `pixel_values` out
        self.hits = 0

    def __getattr__(self, name: str) -> Any:  # merge_size, size, ...: the real processor's
        return getattr(self.inner, name)

    def __call__(self, images: Any = None, **kwargs: Any) -> Any:
        images = list(images)
        if len(images) != len(self.keys):
            raise RuntimeError(f"PixelCache: {len(images)} images but {len(self.keys)} keys")
        parts, self.digests, self.parts = [], [], []
        for key, image in zip(self.keys, images, strict=True):
            key = (*key, repr(sorted(kwargs.items())))
            if key in self.entries:
                self.entries.move_to_end(key)
                self.hits += 1
            else:
                out = dict(self.inner(images=[image], **kwargs))
                self.entries[key] = out, pixel_digest(out["pixel_values"])
                while len(self.entries) > self.max_entries:
                    self.entries.popitem(last=False)
            out, digest = self.entries[key]
            parts.append(out)
            self.digests.append(digest)
            self.parts.append(out["pixel_values"])
        names = [n for n in parts[0] if not (self.apart and n == "pixel_values")]
        return BatchFeature({name: torch.cat([p[name] for p in parts], dim=0) for name in names})

    @contextmanager
    def serving(self, processor: Any, keys: list[tuple], apart: bool = False) -> Iterator[None]:
        """`processor`'s image processor is this cache while the block runs, for images `keys` in order
        (`apart`: its output without the pixels)."""
        self.keys, self.digests, self.parts, self.apart, original = keys, [], [], apart, processor.image_processor
        processor.image_processor = self
        try:
            yield
        finally:
            processor.image_processor, self.keys, self.apart = original, [], False
