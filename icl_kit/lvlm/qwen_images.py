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


STAND_IN = Image.new("RGB", (28, 28))  # what the processor is handed for an image; the pixel cache never reads it


class LazyPixels:
    """An image's pixels known by their digest, dtype and patch rows but not kept (`PixelCache`, served apart):
    made again, and checked against the digest, only when a forward needs them, i.e. when the vision-feature
    cache does not hold the image. Looks enough like a tensor for the feature-cache hook: `len`, `dtype`, `to`."""

    def __init__(self, cache: PixelCache, key: tuple, kwargs: dict[str, Any], digest: str, dtype: torch.dtype,
                 rows: int) -> None:
        self.cache, self.key, self.kwargs, self.digest, self.dtype, self.rows = cache, key, kwargs, digest, dtype, rows

    def __len__(self) -> int:
        return self.rows

    def to(self, device: Any) -> torch.Tensor:
        out, digest = self.cache.process(self.key, self.kwargs)
        if digest != self.digest:
            raise KitError(f"Image {self.key[0]} changed while the run read it (its pixels no longer match the "
                           "ones first read); keep image files unchanged during a run, and run again.")
        return out["pixel_values"].to(device)


class PixelCache:
    """The image processor's output for each image, by (path, pixel budget): a prompt's images that another
    prompt showed skip loading, resizing, rescaling, normalising and patching (about 3 ms a COCO-sized image on
    a CPU core for the processor alone, in the critical path of a GPU that answers hundreds of images a
    second). Used as the processor's image processor during one call (`serving`; the processor is handed
    stand-ins, and this cache loads each image by its key when it must process it); an image it has not seen
    goes through the real one ALONE (its patches do not depend on the other images of a call:
    tests/lvlm/test_vision_cache.py), and the outputs of a call's images are concatenated as the real one
    concatenates them. `digests` and `parts` hold the last call's images' `pixel_digest`s (each computed
    once, when its image was first processed) and pixels, in order.

    The last `max_entries` images' outputs are kept whole; every image's digest, dtype and other outputs (its
    grid) are kept for the run (`meta`, a few hundred bytes an image). Served `apart`, the call's output
    leaves the pixels out, and an image known by `meta` whose pixels were dropped is not processed at all: its
    part is a `LazyPixels`, made again only if a forward needs it (icl_kit.lvlm.qwen_prefix.vision_inputs).
    So with the feature cache warm, a beam search whose working set of images exceeds `max_entries` does not
    decode, resize or process its images again."""

    def __init__(self, inner: Any, max_entries: int) -> None:
        self.inner, self.max_entries = inner, max_entries
        self.entries: OrderedDict[tuple, tuple[dict[str, Any], str]] = OrderedDict()
        self.meta: dict[tuple, tuple[str, dict[str, Any], torch.dtype, int]] = {}
        self.keys: list[tuple] = []  # the next call's images, in order (`serving`)
        self.digests: list[str] = []  # the last call's images' pixel digests, in order
        self.parts: list[Any] = []  # and their pixels (tensors on the host, or LazyPixels)
        self.apart = False  # `serving(apart=True)`: the call's output leaves `pixel_values` out
        self.hits = 0  # images served without the real image processor
        self.processed = 0  # images through it

    def __getattr__(self, name: str) -> Any:  # merge_size, size, ...: the real processor's
        return getattr(self.inner, name)

    def process(self, key: tuple, kwargs: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The image of `key` (path, min_pixels, max_pixels) through the real image processor, alone, kept."""
        full = (*key, repr(sorted(kwargs.items())))
        if full in self.entries:
            self.entries.move_to_end(full)
            return self.entries[full]
        out = dict(self.inner(images=[resized_image(*key)], **kwargs))
        self.processed += 1
        digest = pixel_digest(out["pixel_values"])
        self.entries[full] = out, digest
        small = {k: v for k, v in out.items() if k != "pixel_values"}
        self.meta[full] = digest, small, out["pixel_values"].dtype, len(out["pixel_values"])
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return out, digest

    def __call__(self, images: Any = None, **kwargs: Any) -> Any:
        images = list(images)
        if len(images) != len(self.keys):
            raise RuntimeError(f"PixelCache: {len(images)} images but {len(self.keys)} keys")
        parts, self.digests, self.parts = [], [], []
        for key in self.keys:
            full = (*key, repr(sorted(kwargs.items())))
            if self.apart and full not in self.entries and full in self.meta:
                digest, small, dtype, rows = self.meta[full]
                out, pixels = small, LazyPixels(self, key, kwargs, digest, dtype, rows)
                self.hits += 1
            else:
                self.hits += full in self.entries
                out, digest = self.process(key, kwargs)
                pixels = out["pixel_values"]
            parts.append(out)
            self.digests.append(digest)
            self.parts.append(pixels)
        names = [n for n in parts[0] if n != "pixel_values"] if self.apart else list(parts[0])
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
