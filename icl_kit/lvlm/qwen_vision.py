"""Each distinct image through Qwen2.5-VL's vision tower once, and the work of every forward counted.

In in-context prompts the same pool images recur in thousands of prompts (a beam search over 64
candidates, 8 GRPO samples per query, 15 systems x 4 shots in evaluation), and transformers re-encodes
every image of every prompt. While the backend runs (`hooked`), the model's `get_image_features`
(Qwen2_5_VLModel's; both the forward and generate's pre-encoding call it) is replaced by one that

1. takes each image's pixel rows: the flat `pixel_values` split by each image's t·h·w patch count
   (`image_grid_thw`), or, when the backend serves pixels apart (`Counting.pixels`), its per-image host
   tensors, `pixel_values` being a placeholder (only a missing image's pixels are moved to the device),
2. keys each image by sha256 of its patch tensor's bytes + its grid + the pixels' and the tower's dtypes
   (the bytes are the processor's output, so the key covers the image, the pixel budget and every
   processor setting); the backend hands over the digests its pixel cache computed once per image
   (`Counting.digests`, icl_kit.lvlm.qwen_images), so an image is hashed when first processed, not in
   every forward,
3. takes the merged features of each known key from an LRU kept on the model's device
   (`lvlm.qwen.vision_cache_mb`), runs the tower on each unknown one, ALONE, and stores it,
4. returns the per-image features in order, as transformers' own `get_image_features` does.

Why alone: the tower's attention is per image (cu_seqlens), but a matrix product's rounding can depend on
how many rows it has (multi-threaded CPU GEMMs and cuBLAS pick their kernel by shape; on 2 CPU threads
the merger's small product rounds differently, by ~1e-5, with one image than with ten). Encoded alone, an
image's features are a function of the image only, whatever shares its batch, whatever was evicted or
asked before: answers do not depend on the cache's history. With one CPU thread a product rounds each
row the same from 3 rows up (an image has at least 16 patches, 4 merged tokens), so the tower's output
for an image does not depend on its batch at all, and cached answers and scores equal uncached ones
exactly (tests/lvlm/test_vision_cache.py).

The hooks on the language model and the LM head only count (`icl_kit.lvlm.work`); nothing is installed
outside a backend call, so several backends may share one model. A forward on a KV cache counts as decoding
unless the backend says it is a prompt's (`Counting.prompt`: prefix blocks, suffixes and answers computed on
cached prefixes, icl_kit.lvlm.qwen_prefix).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from icl_kit.lvlm.qwen_images import pixel_digest
from icl_kit.lvlm.work import Work

MB = 2**20
FEATURES = "get_image_features"
OUTPUT_FLAGS = ("output_attentions", "output_hidden_states")  # outputs the cache cannot give: not cached

ImageKey = tuple[str, tuple[int, ...], str]


class FeatureLRU:
    """Merged image features by ImageKey, least recently used dropped first beyond `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.entries: OrderedDict[ImageKey, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def get(self, key: ImageKey) -> torch.Tensor | None:
        feats = self.entries.get(key)
        if feats is not None:
            self.entries.move_to_end(key)
        return feats

    def put(self, key: ImageKey, feats: torch.Tensor) -> None:
        """Keep `feats` (an entry larger than the whole budget is not kept)."""
        size = _nbytes(feats)
        if size > self.max_bytes or key in self.entries:
            return
        self.entries[key] = feats
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= _nbytes(old)
            self.evictions += 1

    def __len__(self) -> int:
        return len(self.entries)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def image_keys(parts: list[torch.Tensor], grids: list[list[int]], tower_dtype: torch.dtype,
               digests: list[str] | None = None) -> list[ImageKey]:
    """One key per image: sha256 of its pixel rows `parts[i]` (`digests`, when the caller has them: equal to
    `pixel_digest` of the rows), its (t, h, w) grid, the pixels' and tower's dtypes."""
    if digests is None or len(digests) != len(grids):
        digests = [pixel_digest(p) for p in parts]
    dtypes = f"{parts[0].dtype}->{tower_dtype}" if parts else ""
    return [(d, tuple(g), dtypes) for d, g in zip(digests, grids, strict=True)]


def cached_features(original: Callable[..., Any], cache: FeatureLRU | None, work: Work,
                    tower_dtype: torch.dtype, counting: Counting | None = None) -> Callable[..., Any]:
    """A `get_image_features(pixel_values, image_grid_thw, **kwargs)` in front of transformers' `original`.

    `cache` None: the original call as is (one batched tower call), counted. Otherwise each image is
    looked up by key (its digest from `counting.digests` when the backend set them for this call, which
    the call uses up); a miss, or a repeat of a miss in the same call, is encoded once, alone (see the
    module docstring), and kept. When the backend handed the images' pixels over apart (`counting.pixels`,
    on the host), `pixel_values` is a placeholder: a cached image's pixels are never copied to the device,
    a missing one is moved alone.
    """

    def get_image_features(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor | None = None,
                           **kwargs: Any) -> Any:
        digests = parts = None
        if counting is not None:
            digests, parts, counting.digests, counting.pixels = counting.digests, counting.pixels, None, None
        if image_grid_thw is None:  # nothing to key by: transformers' own call, uncounted
            return original(pixel_values, image_grid_thw, **kwargs)
        grids = image_grid_thw.tolist()
        sizes = [t * h * w for t, h, w in grids]
        work.images += len(grids)
        if cache is None or kwargs.get("return_dict") is False or any(kwargs.get(k) for k in OUTPUT_FLAGS):
            work.images_encoded += len(grids)
            work.vision_patches += sum(sizes)
            if parts is not None:
                pixel_values = torch.cat([p.to(image_grid_thw.device) for p in parts])
            return original(pixel_values, image_grid_thw, **kwargs)
        if parts is None:
            parts = list(torch.split(pixel_values, sizes))
        elif [len(p) for p in parts] != sizes:
            raise RuntimeError(f"get_image_features: pixels of {[len(p) for p in parts]} patches for {sizes}")
        keys = image_keys(parts, grids, tower_dtype, digests)
        found: dict[ImageKey, torch.Tensor] = {}
        for i, key in enumerate(keys):
            if key not in found:
                hit = cache.get(key)
                if hit is None:
                    pixels = parts[i].to(image_grid_thw.device)
                    found[key] = original(pixels, image_grid_thw[i : i + 1], **kwargs).pooler_output[0]
                    cache.put(key, found[key])
                    work.images_encoded += 1
                    work.vision_patches += sizes[i]
                    continue
                found[key] = hit
            work.image_cache_hits += 1
        return BaseModelOutputWithPooling(pooler_output=tuple(found[k] for k in keys))

    return get_image_features


# ------------------------------------------------------------------ counting the language model
class Counting:
    """What the hooks are told: `prompt` is set around a prompt's forward on a KV cache (a prefix block, a
    suffix after cached prefixes, answers after their prompt), which is prefill work, not decoding;
    `digests` and `pixels`, before a forward that shows images, are their pixel digests and, when the
    forward's `pixel_values` is a placeholder, their pixels, in order (used up by it)."""

    prompt: bool = False
    digests: list[str] | None = None
    pixels: list[torch.Tensor] | None = None  # the images' pixels apart, on the host (pixel_values: a placeholder)
    cached: bool = False  # the feature cache is on: the only case in which `pixels` may be handed over


def _count_llm(work: Work, counting: Counting, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
    """Forward pre-hook of the language model: positions computed for prompts (prefill) or while decoding."""
    x = kwargs.get("inputs_embeds")
    x = kwargs.get("input_ids") if x is None else x
    if x is None:
        return
    batch, length = int(x.shape[0]), int(x.shape[1])
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if not counting.prompt and cache is not None and cache.get_seq_length() > 0:
        work.decode_tokens += batch * length
        return
    work.prefill_tokens += batch * length
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 2 and mask.shape[1] >= length:
        work.pad_tokens += int((mask[:, -length:] == 0).sum())


def _count_head(work: Work, module: torch.nn.Module, args: tuple, output: Any) -> None:
    """Forward hook of the LM head: positions whose logits were computed."""
    x = args[0]
    work.logit_tokens += x.numel() // x.shape[-1]


@contextmanager
def hooked(model: Any, cache: FeatureLRU | None, work: Work) -> Iterator[Counting]:
    """While inside: `model.model.get_image_features` goes through `cache` (None: counted only), and the
    language model and LM head count their work into `work` (told by the yielded Counting what a forward on a
    KV cache is). Everything is removed on exit."""
    base = model.model
    handles = []
    counting = Counting()
    counting.cached = cache is not None
    if (lm := getattr(base, "language_model", None)) is not None:
        handles.append(lm.register_forward_pre_hook(partial(_count_llm, work, counting), with_kwargs=True))
    if (head := getattr(model, "lm_head", None)) is not None:
        handles.append(head.register_forward_hook(partial(_count_head, work)))
    previous = vars(base).get(FEATURES)  # an instance attribute someone else set, or None
    tower_dtype = base.visual.dtype
    setattr(base, FEATURES, cached_features(getattr(base, FEATURES), cache, work, tower_dtype, counting))
    try:
        yield counting
    finally:
        counting.cached = False  # the hook is gone: no forward may get a placeholder for pixels any more
        counting.digests = counting.pixels = None
        for h in handles:
            h.remove()
        if previous is None:
            delattr(base, FEATURES)
        else:
            setattr(base, FEATURES, previous)
