"""The Qwen backend's work for a request stream, counted without running a model (for the benchmarks).

`QwenWorkModel` wraps an LVLM that answers (the demo world's simulator) and, for every `generate` and `score`
call, counts in `work` (icl_kit.lvlm.work) what `QwenLVLM` with the same params would compute at an
architecture's size: it prepares the same prompts (QwenLVLM.prepare: the chat template, the tokenizer, the
image budget), forms the same length-sorted batches, and decides what to compute with the same code: the
prompt blocks and prefix LRU (icl_kit.lvlm.prefix.ensure_prefix), the suffix layout (prefix.layout), and the
vision-feature LRU (qwen_vision.FeatureLRU, looked up as `cached_features` does). Its sizes are the
architecture's (`config`: a Qwen2.5-VL config.json: KV bytes per position, feature bytes per image token), so
the LRUs fill and evict as they would at that size. tests/lvlm/test_prefix_cache.py checks that its counts
equal the tiny model's measured ones.

It also counts the images the image processor handles (`images_processed`), as the backend's pixel cache
(icl_kit.lvlm.qwen_images.PixelCache, served apart with the shared prefill) decides: an image is processed when
a batch shows it for the first time or after its pixels were dropped and a forward needs them (a feature-cache
miss); without the caches, every image of every prompt.

Two things it assumes rather than observes: every generation runs `max_new_tokens` steps (a real one may
stop earlier on an end token: an upper bound on decoding), and `lvlm.shared_prefill: auto` as on (the
one-time start-up check is not counted). Images may be given one size (`image_size`, e.g. COCO's 640 x 480)
instead of their own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from icl_kit.core.config import LVLMConfig
from icl_kit.lvlm.base import LVLM, Generation, Request, Score
from icl_kit.lvlm.prefix import PrefixLRU, ensure_prefix, kv_bytes_per_token, layout
from icl_kit.lvlm.qwen import Prepared, QwenLVLM
from icl_kit.lvlm.qwen_images import IMAGE_CACHE_SIZE, image_tokens
from icl_kit.lvlm.qwen_vision import MB, FeatureLRU
from icl_kit.lvlm.work import Work

LABEL = "modelled: what the Qwen backend would compute (no model ran)"


class _Sized:
    """What FeatureLRU needs of a value: its size (a stand-in for the features' tensor)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def numel(self) -> int:
        return self.n

    def element_size(self) -> int:
        return 1


class PixelModel:
    """What PixelCache processes, by image key: the last `max_entries` images' pixels kept, every image known."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries, self.processed = max_entries, 0
        self.entries: OrderedDict[str, None] = OrderedDict()
        self.known: set[str] = set()

    def process(self, key: str) -> None:
        """PixelCache.process: kept pixels are used, others made (counted) and kept."""
        if key in self.entries:
            self.entries.move_to_end(key)
            return
        self.processed += 1
        self.entries[key] = None
        self.known.add(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def encode(self, keys: Sequence[str], apart: bool) -> list[bool]:
        """One processor call's images in order: whether each one's pixels were left lazy (served apart)."""
        lazy = []
        for key in keys:
            lazy.append(apart and key not in self.entries and key in self.known)
            if not lazy[-1]:
                self.process(key)
        return lazy


class QwenWorkModel(QwenLVLM):
    """`inner` answers; `work` counts what QwenLVLM(cfg) would compute for the same calls (module docstring)."""

    def __init__(self, inner: LVLM, cfg: LVLMConfig, processor: Any, config: dict[str, Any], dtype_bytes: int = 2,
                 image_size: tuple[int, int] | None = None) -> None:
        self.inner, self.cfg, self.processor = inner, cfg, processor
        self.image_size = image_size  # (width, height) for every image, or None: each image's own
        self.beams, self.steps = cfg.generation.num_beams or 1, cfg.generation.max_new_tokens or 20  # transformers'
        self.use_prefill = cfg.shared_prefill != "off"
        self._image_token_cache: dict[Any, int] = {}
        text = {**config, **config.get("text_config", {})}
        self.kv_per_token = kv_bytes_per_token(text, dtype_bytes)
        self.feature_per_token = config["vision_config"]["out_hidden_size"] * dtype_bytes
        self.merge = config["vision_config"]["spatial_merge_size"] ** 2
        mb, pmb = cfg.qwen.vision_cache_mb, cfg.qwen.prefix_cache_mb
        self.vision_cache = FeatureLRU(mb * MB) if mb else None
        self.prefix_cache = PrefixLRU(pmb * MB) if pmb and self.use_prefill else None
        self.work = Work(label=LABEL)
        self.pixels = PixelModel(IMAGE_CACHE_SIZE if mb else 0)  # no caches: every image processed every time
        self.answer_tokens = lambda a: len(processor.tokenizer(a, add_special_tokens=False).input_ids)

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    @property
    def images_processed(self) -> int:
        """Images through the image processor (module docstring)."""
        return self.pixels.processed

    def _image_tokens(self, record: Any) -> int:
        if self.image_size is None:
            return super()._image_tokens(record)
        width, height = self.image_size
        return image_tokens(height, width, self.cfg.qwen.min_pixels, self.cfg.qwen.max_pixels)

    # ------------------------------------------------------------- the calls
    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        self.work.prompts += len(requests)
        self._in_length_order(requests, self._count_generate, "")
        return self.inner.generate(requests)

    def score(self, requests: Sequence[Request], answers: Sequence[str]) -> list[Score]:
        self.work.prompts += len(requests)
        self._in_length_order(requests, lambda items: self._count_score(items, [answers[i] for i, _ in items]), "")
        return self.inner.score(requests, answers)

    def generate_scored(self, requests: Sequence[Request],
                        answers: Sequence[Sequence[str]]) -> tuple[list[Generation], list[list[Score]]]:
        """Counted as `generate`, then `score`: an upper bound of the backend's one forward for both (the
        benchmarks' workloads never score the prompts they generate)."""
        return LVLM.generate_scored(self, requests, answers)

    # ------------------------------------------------------------- counting
    def _count_generate(self, items: list[tuple[int, Prepared]]) -> list[None]:
        prepared = [p for _, p in items]
        beams, steps, w = self.beams, self.steps, self.work
        if self.use_prefill:
            self._count_prompts(prepared, drop_last=True)
            w.decode_tokens += len(prepared) * beams * steps  # the last prompt token, then a token a step
            w.logit_tokens += len(prepared) * beams * steps
        else:  # transformers' generate: every beam prefills the whole (left-padded) prompt
            self._encode(prepared, apart=False)
            self._vision([img for p in prepared for img in self._images(p)])
            width = max(p.length for p in prepared)
            w.prefill_tokens += beams * len(prepared) * width
            w.pad_tokens += beams * (len(prepared) * width - sum(p.length for p in prepared))
            w.decode_tokens += len(prepared) * beams * (steps - 1)
            w.logit_tokens += len(prepared) * beams * steps
        return [None] * len(items)

    def _count_score(self, items: list[tuple[int, Prepared]], answers: list[str]) -> list[None]:
        n_ans = [self.answer_tokens(a) for a in answers]
        width = max(1, max(n_ans))
        w = self.work
        if not self.use_prefill:  # every (prompt, answer) in one left-padded forward, A + 1 logits kept
            prepared = [p for _, p in items]
            self._encode(prepared, apart=False)
            self._vision([img for p in prepared for img in self._images(p)])
            cols = max(p.length for p in prepared) + width
            w.prefill_tokens += len(items) * cols
            w.pad_tokens += len(items) * cols - sum(p.length for p in prepared) - sum(n_ans)
            w.logit_tokens += len(items) * (width + 1)
            return [None] * len(items)
        distinct: dict[str, Prepared] = {}
        for _, p in items:
            distinct.setdefault(p.blocks[-1].key, p)
        self._count_prompts(list(distinct.values()), drop_last=False)
        w.logit_tokens += len(distinct)  # the prompts' last logits: every answer's first token
        if width > 1:  # the answers but their last token, on the prompts' KV
            w.prefill_tokens += len(items) * (width - 1)
            w.pad_tokens += len(items) * (width - 1) - sum(min(n, width - 1) for n in n_ans)
            w.logit_tokens += len(items) * (width - 1)
        return [None] * len(items)

    def _count_prompts(self, prepared: Sequence[Prepared], drop_last: bool) -> None:
        """As PrefixRunner.run: each prompt's prefix through the LRU (missing blocks computed alone, in order),
        then one forward over the suffixes."""
        prefixes, suffix_images, suffix_lazy = [], [], []
        for p, lazy in zip(prepared, self._encode(prepared, apart=True), strict=True):
            n, shown = self._prefix(p, lazy)
            prefixes.append(n)
            suffix_images += self._images(p)[shown:]
            suffix_lazy += lazy[shown:]
        suffixes = [p.length - n - drop_last for p, n in zip(prepared, prefixes, strict=True)]
        lay = layout(prefixes, suffixes)
        self._vision(suffix_images, suffix_lazy)
        self.work.prefill_tokens += len(prepared) * lay.suffix
        self.work.pad_tokens += lay.pads

    def _encode(self, prepared: Sequence[Prepared], apart: bool) -> list[list[bool]]:
        """A batch's processor call through the pixel model: per prompt, per image, whether its pixels were left
        lazy (`apart`, with the caches, as QwenLVLM.encode(apart=True) with the shared prefill)."""
        lazy = iter(self.pixels.encode([key for p in prepared for key, _ in self._images(p)],
                                       apart and self.vision_cache is not None))
        return [[next(lazy) for _ in p.images] for p in prepared]

    def _prefix(self, p: Prepared, lazy: list[bool]) -> tuple[int, int]:
        """The prompt's prefix through the LRU: (its positions, its images); missing blocks computed alone."""
        chain = list(p.blocks[:-1]) if self.prefix_cache is not None else []
        if not chain:
            return 0, 0
        shown = [j for j, b in enumerate(chain) if b.image is not None]
        images = {j: (*self._images(p)[k], lazy[k]) for k, j in enumerate(shown)}  # block -> (key, tokens, lazy)
        _, found = ensure_prefix(self.prefix_cache, chain, lambda j, _: self._block(chain[j], images.get(j)))
        self.work.prefix_hits += found
        self.work.prefix_tokens_reused += sum(b.tokens for b in chain[:found])
        return sum(b.tokens for b in chain), sum(b.image is not None for b in chain)

    def _block(self, block: Any, image: tuple[str, int, bool] | None) -> tuple[None, int]:
        """A prefix block computed alone: its positions, and its image (key, tokens, lazy) through the vision
        stage."""
        if image is not None:
            self._vision([image[:2]], [image[2]])
        self.work.prefill_tokens += block.tokens
        return None, block.tokens * self.kv_per_token

    @staticmethod
    def _images(p: Prepared) -> list[tuple[str, int]]:
        """(identity, LLM tokens) of a prompt's images in prompt order."""
        return list(p.images)

    def _vision(self, images: Sequence[tuple[str, int]], lazy: Sequence[bool] | None = None) -> None:
        """The vision stage of one forward, as qwen_vision.cached_features: each image looked up, a miss (or
        a repeat of one in the same call) encoded once, alone, and kept; a miss whose pixels were left lazy
        makes them again (PixelModel.process)."""
        w = self.work
        w.images += len(images)
        if self.vision_cache is None:
            w.images_encoded += len(images)
            w.vision_patches += sum(n * self.merge for _, n in images)
            return
        found: set[str] = set()
        for (key, n), is_lazy in zip(images, lazy or [False] * len(images), strict=True):
            if key not in found:
                found.add(key)
                if self.vision_cache.get(key) is None:
                    if is_lazy:
                        self.pixels.process(key)
                    self.vision_cache.put(key, _Sized(n * self.feature_per_token))
                    w.images_encoded += 1
                    w.vision_patches += n * self.merge
                    continue
            w.image_cache_hits += 1
