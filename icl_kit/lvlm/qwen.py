"""Qwen2.5-VL through transformers + qwen-vl-utils: batched beam search and answer scoring.

Batches are formed from requests of similar prompt length (sorted by exact token count,
order restored afterwards) and padded on the LEFT, so every prompt ends at the same
column and generation starts together. The 3D (M-RoPE) position ids are computed by
the model's `get_rope_index` from the attention mask, so padding does not move them:
a prompt gets the same answer alone as in a batch up to float round-off near ties; in
bf16 that round-off does flip some answers, which `icl_kit.lvlm.agreement` measures.

Four savings: each prompt's KV is computed once and shared by its beams and its scored answers, and
the KV of prompt prefixes (system header, first ICDs) once for every prompt that starts with them
(`qwen_prefix`, `lvlm.shared_prefill`, `lvlm.qwen.prefix_cache_mb`); resized images and the processor's
output are cached per image, the latter with its pixels' digest (`qwen_images`); and each distinct image goes
through the vision tower once, its features kept on the device (`qwen_vision`, `lvlm.qwen.vision_cache_mb`),
since ICD and query images recur across shots and prompts. The work done is counted in `QwenLVLM.work`
(`icl_kit.lvlm.work`). Loading (dtype, attention, device, transformers' cache API) is in `qwen_loading`;
decoding params -> GenerationConfig in `decoding`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from qwen_vl_utils import extract_vision_info
from transformers import DynamicCache, GenerationConfig

from icl_kit.core.config import LVLMConfig
from icl_kit.core.errors import KitError
from icl_kit.lvlm.base import LVLM, Generation, Request, Score
from icl_kit.lvlm.batching import run_in_batches
from icl_kit.lvlm.decoding import decoding_record, resolve_generation, token_ids
from icl_kit.lvlm.prefix import Block, PrefixLRU, prompt_blocks
from icl_kit.lvlm.prompts import build_messages, postprocess, protocol_hash
from icl_kit.lvlm.qwen_images import IMAGE_CACHE_SIZE, STAND_IN, PixelCache, image_tokens, pixel_budget, resized_image
from icl_kit.lvlm.qwen_loading import load_model_and_processor, weights_digest
from icl_kit.lvlm.qwen_prefix import PrefixRunner, kv_of, rows_of, scores_of
from icl_kit.lvlm.qwen_vision import MB, Counting, FeatureLRU, hooked
from icl_kit.lvlm.registry import register_backend
from icl_kit.lvlm.work import Work

log = logging.getLogger(__name__)

SCORE_CHECK_TOL = {torch.float32: 1e-3}  # auto check: |shared - plain| log p allowed (bf16/fp16: 0.1 nats)


# ---------------------------------------------------------------------- model
@dataclass(frozen=True)
class Prepared:
    """One prompt ready to batch: chat messages (image paths), template text, token length, blocks (prefix),
    and its images' identities (path and budget) and LLM tokens."""

    messages: list[dict[str, Any]]
    text: str
    length: int
    blocks: tuple[Block, ...] = ()
    images: tuple[tuple[str, int], ...] = ()


class QwenLVLM(LVLM):
    """Qwen2.5-VL answering demonstration prompts; see the module docstring."""

    def __init__(self, cfg: LVLMConfig, model: Any = None, processor: Any = None) -> None:
        self.cfg = cfg
        if model is None or processor is None:
            model, processor, self.device = load_model_and_processor(cfg)
        else:
            self.device = next(model.parameters()).device
        self.gen_config = resolve_generation(cfg.generation, model.generation_config)
        # generate() fills unset fields from the model's own config: leave it nothing but token ids.
        model.generation_config = GenerationConfig(**token_ids(model.generation_config))
        self.model, self.processor = model, processor
        self.decoding = decoding_record(self.gen_config, cfg.generation)
        log.info("lvlm decoding: %s", json.dumps(self.decoding, sort_keys=True))
        self.use_prefill: bool | None = {"on": True, "off": False}.get(cfg.shared_prefill)  # None: check first
        self._fingerprint = self._make_fingerprint()
        self._image_token_cache: dict[Any, int] = {}  # image path -> vision tokens (`_image_tokens`)
        mb = cfg.qwen.vision_cache_mb
        self.vision_cache = FeatureLRU(mb * MB) if mb else None  # this instance's image features
        self.pixel_cache = PixelCache(processor.image_processor, IMAGE_CACHE_SIZE) if mb else None  # per image
        self.work = Work()  # cumulative; stages log differences (`work_done`)
        pmb = cfg.qwen.prefix_cache_mb
        self.prefix_cache = PrefixLRU(pmb * MB) if pmb else None  # this instance's prompt prefixes (KV)
        self.runner = PrefixRunner(model, self.prefix_cache, self.work, processor.tokenizer.pad_token_id)
        self._counting = Counting()  # the work hook's, while a call runs
        self._encoded: tuple[Any, list[str] | None, list[Any] | None] = (None, None, None)  # last encode's

    # ------------------------------------------------------------- interface
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def attn_implementation(self) -> str:
        return str(getattr(self.model.config, "_attn_implementation", None))

    def describe(self) -> dict[str, Any]:
        """What the run folder records about this LVLM (lvlm_decoding.json)."""
        return {"backend": "qwen", "model": self.cfg.model, "fingerprint": self._fingerprint,
                "device": str(self.device), "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
                "attn_implementation": self.attn_implementation, "batch_size": self.cfg.batch_size,
                "shared_prefill": self.cfg.shared_prefill, "vision_cache_mb": self.cfg.qwen.vision_cache_mb,
                "prefix_cache_mb": self.cfg.qwen.prefix_cache_mb,
                "pixels": pixel_budget(self.cfg.qwen.min_pixels, self.cfg.qwen.max_pixels),
                "decoding": self.decoding}

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """Answer every request; batches are length-sorted, results in input order."""
        self.work.prompts += len(requests)
        with hooked(self.model, self.vision_cache, self.work) as self._counting:
            texts = self._in_length_order(requests, self._generate_batch, "generate")
        rule = self.cfg.prompt.postprocess
        return [Generation(text=t, answer=postprocess(t, rule)) for t in texts]

    def generate_scored(self, requests: Sequence[Request],
                        answers: Sequence[Sequence[str]]) -> tuple[list[Generation], list[list[Score]]]:
        """`generate` and `score` of each request's `answers[i]` from ONE forward of each prompt (with the shared
        prefill): its KV and last logits score the answers, then, cut by the last token, start generation.
        Without the shared prefill: `generate`, then `score` (LVLM.generate_scored)."""
        if self.use_prefill is None and requests:
            self.use_prefill = self._prefill_agrees(self.prepare(requests[0]))
        if not self.use_prefill:
            return super().generate_scored(requests, answers)
        self.work.prompts += len(requests)
        with hooked(self.model, self.vision_cache, self.work) as self._counting:
            out = self._in_length_order(requests, lambda items: self._generate_scored_batch(
                items, [answers[i] for i, _ in items]), "generate")
        rule = self.cfg.prompt.postprocess
        return [Generation(text=t, answer=postprocess(t, rule)) for t, _ in out], [s for _, s in out]

    def score(self, requests: Sequence[Request], answers: Sequence[str]) -> list[Score]:
        """Teacher-forced log p(answer tokens | prompt), summed and averaged over tokens.

        An empty answer has no tokens: sum 0, mean 0, n_tokens 0.
        """
        if len(requests) != len(answers):
            raise ValueError(f"score() got {len(requests)} requests but {len(answers)} answers.")
        self.work.prompts += len(requests)
        with hooked(self.model, self.vision_cache, self.work) as self._counting:
            return self._in_length_order(
                requests, lambda items: self._score_items(items, [answers[i] for i, _ in items]), "score"
            )

    # ---------------------------------------------------------------- prompts
    def messages(self, request: Request, load_images: bool = False) -> list[dict[str, Any]]:
        """Chat messages with the image budget on every image item (paths unless `load_images`)."""
        vision = pixel_budget(self.cfg.qwen.min_pixels, self.cfg.qwen.max_pixels)
        return build_messages(request.icds, request.query, self.cfg.prompt, load_images=load_images,
                              vision=vision)

    def prepare(self, request: Request) -> Prepared:
        """Messages, chat-template text, exact token length and prompt blocks (icl_kit.lvlm.prefix), from image
        headers only (the template holds one <|image_pad|> per image)."""
        messages = self.messages(request)
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        shown = [item for m in messages for item in m["content"] if item["type"] == "image"]
        images = [f"{item['image']}|{item.get('min_pixels')}|{item.get('max_pixels')}" for item in shown]
        records = {str(r.image_path): r for r in (*request.icds, request.query)}
        tokens = [self._image_tokens(records[str(item["image"])]) for item in shown]
        tok = self.processor.tokenizer
        blocks = prompt_blocks(text, images, tokens, lambda t: len(tok(t, add_special_tokens=False).input_ids))
        pairs = tuple(zip(images, tokens, strict=True))
        return Prepared(messages, text, sum(b.tokens for b in blocks), tuple(blocks), pairs)

    def _image_tokens(self, record: Any) -> int:
        """Vision tokens of a record's image, from its header; read once per image file (beam search asks
        for the same few images in hundreds of prompts)."""
        n = self._image_token_cache.get(record.image_path)
        if n is None:
            width, height = record.image_size()  # a missing or unreadable file is a KitError naming it
            n = image_tokens(height, width, self.cfg.qwen.min_pixels, self.cfg.qwen.max_pixels)
            self._image_token_cache[record.image_path] = n
        return n

    def encode(self, prepared: Sequence[Prepared], apart: bool = False) -> Any:
        """Processor output for a batch: input_ids/attention_mask [B, L] left-padded, pixels, grids. `apart`
        (with the pixel cache): without the pixels, which `_encoded_images` holds per image on the host for the
        forwards that show them (icl_kit.lvlm.qwen_prefix.vision_inputs)."""
        items = extract_vision_info([p.messages for p in prepared])  # image items in prompt order
        keys = [(str(it["image"]), it.get("min_pixels"), it.get("max_pixels")) for it in items]
        pixels = self.pixel_cache  # with it, the processor gets stand-ins and the cache loads what it must process
        images = [resized_image(*key) if pixels is None else STAND_IN for key in keys]
        with pixels.serving(self.processor, keys, apart) if pixels is not None and images else contextlib.nullcontext():
            batch = self.processor(text=[p.text for p in prepared], images=images, padding=True,
                                   padding_side="left", return_tensors="pt", **self._processor_budget())
        batch = batch.to(self.device)
        seen = pixels is not None and bool(images)
        self._encoded = batch, (list(pixels.digests) if seen else None), (list(pixels.parts) if seen else None)
        return batch

    def _encoded_images(self, batch: Any) -> tuple[list[str] | None, list[Any] | None]:
        """`batch`'s images' pixel digests and host pixels, in order (None: not known; its `pixel_values` hold the
        pixels). Only the last `encode`'s batch has them; another batch without pixels is refused."""
        last, digests, parts = self._encoded
        if batch is last:
            return digests, parts
        if "pixel_values" not in batch and batch.get("image_grid_thw") is not None:
            raise RuntimeError("QwenLVLM: a batch encoded apart is used after another encode")
        return None, None

    def _processor_budget(self) -> dict[str, Any]:
        """The processor's own resize bounds set to ours (images arrive resized; this keeps them so).

        A null bound keeps the processor's configured value (Qwen2.5-VL's: qwen-vl-utils' defaults).
        """
        q = self.cfg.qwen
        ours = {k: v for k, v in (("shortest_edge", q.min_pixels), ("longest_edge", q.max_pixels)) if v is not None}
        if not ours:
            return {}
        return {"images_kwargs": {"size": {**dict(self.processor.image_processor.size), **ours}}}

    # ---------------------------------------------------------------- batches
    def _in_length_order(
        self, requests: Sequence[Request], fn: Callable[[list[tuple[int, Prepared]]], list[Any]],
        desc: str,
    ) -> list[Any]:
        """Run `fn` on batches of (index, prepared) sorted by prompt length; results in input order."""
        prepared = [self.prepare(r) for r in requests]
        order = sorted(range(len(prepared)), key=lambda i: prepared[i].length)

        def emptying_caches_on_oom(items: list[tuple[int, Prepared]]) -> list[Any]:
            try:
                return fn(items)
            except torch.OutOfMemoryError:  # the caches go first, then run_in_batches halves the batch
                for cache in (self.prefix_cache, self.vision_cache):
                    if cache is not None and len(cache):
                        log.warning("CUDA out of memory: emptying a cache of %d entries", len(cache))
                        cache.entries.clear()
                        cache.bytes = 0
                raise

        sorted_out = run_in_batches([(i, prepared[i]) for i in order], self.cfg.batch_size, emptying_caches_on_oom,
                                    desc=desc if len(order) > self.cfg.batch_size else "")
        out: list[Any] = [None] * len(prepared)
        for i, res in zip(order, sorted_out, strict=True):
            out[i] = res
        return out

    @torch.inference_mode()
    def _generate_batch(self, items: list[tuple[int, Prepared]]) -> list[str]:
        if self.use_prefill is None:
            self.use_prefill = self._prefill_agrees(items[0][1])
        prepared = [p for _, p in items]
        batch = self.encode(prepared, apart=bool(self.use_prefill))
        seqs = self._generate_prefilled(batch, prepared) if self.use_prefill else self._generate_plain(batch)
        new = seqs if self.use_prefill else seqs[:, batch["input_ids"].shape[1]:]  # left padding aligns prompts
        return self.processor.batch_decode(new, skip_special_tokens=True)

    @torch.inference_mode()
    def _generate_scored_batch(self, items: list[tuple[int, Prepared]],
                               answers: list[Sequence[str]]) -> list[tuple[str, list[Score]]]:
        """One batch of `generate_scored`: the prompts' forward with their last token (KV and last logits), the
        answers scored from it, then generation from that KV cut by one column (every prompt's last token sits
        in the last column), as `prefill` would have made it."""
        prepared = [p for _, p in items]
        batch = self.encode(prepared, apart=True)
        ends_in_text(batch)
        rows = rows_of(self.model, batch, [p.blocks for p in prepared], [len(p.images) for p in prepared],
                       *self._encoded_images(batch))
        done = self.runner.run(rows, self._counting, drop_last=False, logits=True)
        scores = self._answer_scores(done, [i for i, given in enumerate(answers) for _ in given],
                                     [a for given in answers for a in given])
        done.cache = DynamicCache(ddp_cache_data=[(k[:, :, :-1], v[:, :, :-1]) for k, v in kv_of(done.cache)])
        done.mask = done.mask[:, :-1]  # (transformers' DynamicCache.crop changed its meaning between versions)
        inputs = self.runner.generation_inputs(rows, done, self.gen_config.num_beams)
        seqs = self.model.generate(**inputs, image_grid_thw=batch["image_grid_thw"], generation_config=self.gen_config)
        texts = self.processor.batch_decode(seqs[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        it = iter(scores)
        return [(t, [next(it) for _ in given]) for t, given in zip(texts, answers, strict=True)]

    def _generate_plain(self, batch: Any) -> torch.Tensor:
        """transformers' generate as is (the study's path): every beam prefills the whole prompt."""
        self._counting.digests, self._counting.pixels = self._encoded_images(batch)[0], None
        return self.model.generate(**batch, generation_config=self.gen_config)

    def _generate_prefilled(self, batch: Any, prepared: Sequence[Prepared] | None = None) -> torch.Tensor:
        """generate on the prompts' shared KV (`prefill`); the sequences end in the new tokens."""
        inputs = self.prefill(batch, prepared)
        seqs = self.model.generate(**inputs, image_grid_thw=batch["image_grid_thw"], generation_config=self.gen_config)
        return seqs[:, inputs["input_ids"].shape[1]:]

    def prefill(self, batch: Any, prepared: Sequence[Prepared] | None = None) -> dict[str, Any]:
        """`generate`'s inputs with the KV of each prompt but its last token computed once (prefixes from the
        prefix cache, the rest in one batched forward; icl_kit.lvlm.qwen_prefix) and repeated per beam.

        Transformers' beam search would prefill every prompt num_beams times. `generate` feeds the last prompt
        token (text: the newline after "assistant") with the M-RoPE offsets (`rope_deltas`) set on the model,
        and decodes as from scratch (tested; `shared_prefill: auto` checks it on a run's first prompt).
        Without `prepared` (blocks) no prefix is looked up.
        """
        ends_in_text(batch)
        counts = None if prepared is None else [len(p.images) for p in prepared]
        rows = rows_of(self.model, batch, self._blocks(batch, prepared), counts, *self._encoded_images(batch))
        done = self.runner.run(rows, self._counting, drop_last=True, logits=False)
        return self.runner.generation_inputs(rows, done, self.gen_config.num_beams)

    def _blocks(self, batch: Any, prepared: Sequence[Prepared] | None) -> list[tuple[Block, ...]]:
        if prepared is not None:
            return [p.blocks for p in prepared]
        return [(Block("", int(n), None),) for n in batch["attention_mask"].sum(dim=1).tolist()]

    def _prefill_agrees(self, one: Prepared) -> bool:
        """lvlm.shared_prefill=auto: one prompt through both paths, answers and a score; False (plain generate and
        scoring) on any difference beyond SCORE_CHECK_TOL, or an error."""
        batch = self.encode([one])
        try:
            new = self._generate_plain(batch)[:, batch["input_ids"].shape[1]:]
            same = torch.equal(self._generate_prefilled(batch, [one]), new)
            why = "its answer differs from plain generate"
            if same:
                text = self.processor.batch_decode(new, skip_special_tokens=True)[0].strip() or "a"
                (plain,), (shared,) = self._score_batch([(0, one)], [text]), self._score_shared([(0, one)], [text])
                tol = SCORE_CHECK_TOL.get(next(self.model.parameters()).dtype, 0.1)
                same = abs(plain.sum_logprob - shared.sum_logprob) <= tol * max(1.0, abs(plain.sum_logprob))
                why = "its score differs from plain scoring"
        except (KitError, RuntimeError, TypeError, ValueError, AttributeError, IndexError) as exc:
            same, why = False, f"it failed ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})"
        if not same:
            log.warning("lvlm.shared_prefill=auto: using plain generate and scoring, because on a check prompt %s",
                        why)
        return same

    @torch.inference_mode()
    def _score_items(self, items: list[tuple[int, Prepared]], answers: list[str]) -> list[Score]:
        if self.use_prefill is None:
            self.use_prefill = self._prefill_agrees(items[0][1])
        return self._score_shared(items, answers) if self.use_prefill else self._score_batch(items, answers)

    @torch.inference_mode()
    def _score_shared(self, items: list[tuple[int, Prepared]], answers: list[str]) -> list[Score]:
        """Each distinct prompt of the batch computed once (prefixes from the prefix cache), then all answers."""
        distinct: dict[str, int] = {}
        prompts = []
        for _, p in items:
            if distinct.setdefault(p.blocks[-1].key, len(distinct)) == len(prompts):
                prompts.append(p)
        batch = self.encode(prompts, apart=True)
        rows = rows_of(self.model, batch, [p.blocks for p in prompts], [len(p.images) for p in prompts],
                       *self._encoded_images(batch))
        done = self.runner.run(rows, self._counting, drop_last=False, logits=True)
        return self._answer_scores(done, [distinct[p.blocks[-1].key] for _, p in items], answers)

    def _answer_scores(self, done: Any, owner: list[int], answers: list[str]) -> list[Score]:
        """Scores of `answers[j]` after prompt `owner[j]` of a prompt forward `done` (PrefixRunner.run)."""
        if not answers:
            return []
        answer_ids, answer_mask = self._answer_tokens(answers)
        return scores_of(self.runner.score(done, owner, answer_ids, answer_mask, self._counting), answer_mask)

    @torch.inference_mode()
    def _score_batch(self, items: list[tuple[int, Prepared]], answers: list[str]) -> list[Score]:
        """Every (prompt, answer) from scratch in one forward (lvlm.shared_prefill: off, the study's way)."""
        batch = self.encode([p for _, p in items])
        answer_ids, answer_mask = self._answer_tokens(answers)  # (B, A)
        n_ans = answer_ids.shape[1]
        inputs = dict(batch)
        inputs["input_ids"] = torch.cat([batch["input_ids"], answer_ids], dim=1)
        inputs["attention_mask"] = torch.cat([batch["attention_mask"], answer_mask], dim=1)
        inputs["mm_token_type_ids"] = torch.nn.functional.pad(batch["mm_token_type_ids"], (0, n_ans))
        # With P prompt columns, logit column P - 1 + j predicts answer token j: keep the last A + 1.
        self._counting.digests, self._counting.pixels = self._encoded_images(batch)[0], None
        logits = self.model(**inputs, logits_to_keep=n_ans + 1, use_cache=False).logits[:, :-1]
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, answer_ids.unsqueeze(-1))[..., 0]
        return scores_of(logp * answer_mask, answer_mask)

    def _answer_tokens(self, answers: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Answer token ids right-padded to the longest (pad after the answer cannot affect it)."""
        tok = self.processor.tokenizer
        ids = [tok(a, add_special_tokens=False).input_ids for a in answers]
        width = max(1, max(len(x) for x in ids))
        pad = tok.pad_token_id
        answer_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=self.device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=self.device)
        return answer_ids, mask

    # ------------------------------------------------------------ fingerprint
    def _make_fingerprint(self) -> str:
        """Hash of the model config, a weights sample, dtype, attention, image budget, prompt and decoding.

        The weights sample tells apart two checkpoints of one architecture (e.g. a fine-tune),
        whose cached answers must not be mixed, wherever their folders are.
        """
        model_cfg = self.model.config.to_dict()
        model_cfg.pop("_name_or_path", None)
        payload = {
            "model": model_cfg,
            "weights": weights_digest(self.model),
            "dtype": str(next(self.model.parameters()).dtype),
            "attn_implementation": self.attn_implementation,
            "pixels": [self.cfg.qwen.min_pixels, self.cfg.qwen.max_pixels],
            "protocol": protocol_hash(self.cfg.prompt, self.decoding),  # the resolved decoding, not the params
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def ends_in_text(batch: Any) -> None:
    """The shared prefill feeds each prompt's last token to `generate` alone: it must be text."""
    if "mm_token_type_ids" in batch and bool(batch["mm_token_type_ids"][:, -1].any()):
        raise KitError("lvlm.shared_prefill needs every prompt to end in a text token, and one ends in an "
                       "image token; set lvlm.shared_prefill: off (or end the query template with text).")


@register_backend("qwen")
def make_qwen(cfg: LVLMConfig, data_root: str | Path | None = None, seed: int = 0) -> QwenLVLM:
    """Qwen2.5-VL (lvlm.backend: qwen); the data root and seed are not needed (decoding is set by params)."""
    return QwenLVLM(cfg)
