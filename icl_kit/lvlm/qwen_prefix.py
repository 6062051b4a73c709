"""Qwen2.5-VL's language model with each prompt's KV computed once: shared by its beams, its scored answers,
and, through the prefix LRU (icl_kit.lvlm.prefix, `lvlm.qwen.prefix_cache_mb`), by every prompt that starts
with the same blocks (the system header, then the same first ICDs in the same order).

For a batch of prompts (`PrefixRunner.run`):

1. each prompt's blocks but the last (its prefix) come from the LRU; a missing block is computed ALONE on its
   parent's KV (one prompt, no padding, M-RoPE positions of the whole prompt) and kept, so a prefix's KV is a
   function of the prefix only;
2. the prompts' last blocks (the query's image, question and generation prompt) run as ONE batched forward on
   the stacked prefixes, each row laid out [pads][prefix][pads][suffix] (`icl_kit.lvlm.prefix.Layout`):
   every suffix ends in the last column, as with left padding, so generation starts together;
3. scoring: every answer of every prompt is scored from that KV (answer token 0 from the prompt's last logits,
   the rest in one forward over all (prompt, answer) pairs), so a prompt is computed once for all its answers;
   generation: the KV of all but the last token is repeated per beam and handed to `generate` with the M-RoPE
   offsets (`rope_deltas`) the model would have computed, as the shared prefill always did.

With no LRU (`prefix_cache_mb: 0`) every prompt's prefix is empty: one batched forward of the whole prompts,
which is the shared prefill of earlier versions, now also shared by the answers scored for a prompt.

Exactness: splitting a prompt's forward at a block boundary changes no value as such (the same positions,
the same keys); what can differ is the shape of the products that sum over them (attention over prefix +
block instead of the whole masked prompt, another SDPA kernel once a mask or a cache is given, other padding
in a batch, answers in smaller products): a few ulps of a summed log p, within 1e-6 relative in fp32, and
bit for bit for most prompts alone (tests/lvlm/test_prefix_cache.py; docs/gpu.md, "Prefix reuse").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from icl_kit.core.errors import KitError
from icl_kit.lvlm.base import Score
from icl_kit.lvlm.prefix import Block, PrefixLRU, ensure_prefix, layout
from icl_kit.lvlm.qwen_loading import cache_kwarg, output_cache
from icl_kit.lvlm.work import Work

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (1 or B, kv heads, positions, width)


@dataclass
class Row:
    """One prompt of an encoded batch, unpadded: token ids, M-RoPE positions (3, n), its images' pixels (and
    their digests, None: not known, icl_kit.lvlm.qwen_images)."""

    ids: torch.Tensor
    positions: torch.Tensor
    pixels: list[torch.Tensor]
    grids: list[torch.Tensor]
    blocks: list[Block]
    digests: list[str] | None = None


@dataclass
class Stacked:
    """The batched forward's result: KV of every row (P + S columns), its attention mask, last logits."""

    cache: Any
    mask: torch.Tensor
    logits: torch.Tensor | None
    next_positions: list[int]
    lengths: list[int]


def rows_of(model: Any, batch: Any, blocks: Sequence[Sequence[Block]], images: Sequence[int] | None = None,
            digests: Sequence[str] | None = None, parts: Sequence[torch.Tensor] | None = None) -> list[Row]:
    """The prompts of a left-padded processor batch as Rows, with their M-RoPE positions (the model's own
    `get_rope_index`, as a forward without positions computes them); `images`: each prompt's image count
    (None: its `<|vision_start|>` tokens); `digests`, `parts`: the batch's images' pixel digests and pixels,
    in order (None: pixels from the batch's `pixel_values`, digests unknown)."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    grids = batch.get("image_grid_thw")
    positions, _ = model.model.get_rope_index(input_ids=ids, mm_token_type_ids=batch["mm_token_type_ids"],
                                              image_grid_thw=grids, attention_mask=mask)
    sizes = [int(t * h * w) for t, h, w in grids.tolist()] if grids is not None else []
    pixels = list(parts) if parts is not None else list(torch.split(batch["pixel_values"], sizes)) if sizes else []
    if len(pixels) != len(sizes) or (digests is not None and len(digests) != len(sizes)):
        raise RuntimeError(f"rows_of: {len(pixels)} images' pixels and {len(digests or [])} digests for "
                           f"{len(sizes)} grids")
    out, k = [], 0
    for i, chain in enumerate(blocks):
        real = mask[i].bool()
        row_ids = ids[i, real]
        n_img = int((row_ids == model.config.vision_start_token_id).sum()) if images is None else images[i]
        out.append(Row(row_ids, positions[:, i, real], pixels[k : k + n_img], list(grids[k : k + n_img]),
                       list(chain), None if digests is None else list(digests[k : k + n_img])))
        k += n_img
        if sum(b.tokens for b in chain) != len(row_ids):
            raise KitError(f"Prompt blocks hold {sum(b.tokens for b in chain)} tokens but the prompt {len(row_ids)} "
                           "(the chat template changed?); set lvlm.shared_prefill: off.")
    return out


def vision_inputs(pixels: Sequence[torch.Tensor], grids: Sequence[torch.Tensor], digests: Sequence[str | None],
                  counting: Any, device: Any) -> dict[str, Any]:
    """A forward's image inputs, and what the feature-cache hook is told (icl_kit.lvlm.qwen_vision.Counting):
    with the cache on and every digest known, the pixels go to the hook apart and `pixel_values` is a
    placeholder, so a cached image is never concatenated or copied to the device, a missing one moved alone;
    otherwise the pixels as one tensor on the device."""
    if not pixels:
        return {}
    known = None not in digests
    counting.digests = list(digests) if known else None
    counting.pixels = list(pixels) if counting.cached and known else None
    grid = torch.stack(list(grids)).to(device)
    if counting.pixels is not None:
        return {"pixel_values": torch.empty(0, device=device), "image_grid_thw": grid}
    return {"pixel_values": torch.cat([p.to(device) for p in pixels]), "image_grid_thw": grid}


def stack(chains: Sequence[Sequence[KV]], width: int) -> KV:
    """Per layer, each row's prefix (its blocks' KV in order, left-padded with zeros to `width` positions), the
    rows stacked (B, kv heads, width, head width): every block copied once, in one `torch.cat` per layer and
    tensor (the rows lie end to end along positions, then are viewed as a batch). A masked pad's key and
    value are never used."""
    first = next(kv for chain in chains for kv in chain)
    out = []
    for layer in range(len(first)):
        pair = []
        for t in (0, 1):
            ref = first[layer][t]
            zeros = ref.new_zeros((1, ref.shape[1], width, ref.shape[3]))
            parts = []
            for chain in chains:
                parts.append(zeros[:, :, : width - sum(kv[layer][t].shape[2] for kv in chain)])
                parts += [kv[layer][t] for kv in chain]
            flat = torch.cat(parts, dim=2)  # (1, heads, B x width, head width)
            pair.append(flat.view(ref.shape[1], len(chains), width, ref.shape[3]).transpose(0, 1))
        out.append((pair[0], pair[1]))
    return out


def concat(chain: Sequence[KV]) -> KV:
    """A prefix's KV from its blocks' (along positions)."""
    return [(torch.cat([kv[layer][0] for kv in chain], dim=2), torch.cat([kv[layer][1] for kv in chain], dim=2))
            for layer in range(len(chain[0]))]


def kv_of(cache: Any) -> KV:
    return [(layer.keys, layer.values) for layer in cache.layers]


def scores_of(logp: torch.Tensor, answer_mask: torch.Tensor) -> list[Score]:
    """Scores from masked per-token log p (B, A): sum, mean over the answer's tokens (0 for none), count."""
    n_tok = answer_mask.sum(dim=1)
    return [Score(sum_logprob=float(s), mean_logprob=float(s / n) if n else 0.0, n_tokens=int(n))
            for s, n in zip(logp.sum(dim=1).tolist(), n_tok.tolist(), strict=True)]


def nbytes(kv: KV) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)


class PrefixRunner:
    """Prompt forwards with prefix reuse (module docstring) for one backend: its model, LRU (None: off) and
    work counts; `counting.prompt` tells the work hook that a forward on a KV cache is still a prompt's."""

    def __init__(self, model: Any, lru: PrefixLRU | None, work: Work, pad_id: int) -> None:
        self.model, self.lru, self.work, self.pad_id = model, lru, work, pad_id
        self.kw = cache_kwarg(type(model))
        self.base_kw = cache_kwarg(type(model.model))

    # ------------------------------------------------------------- prefixes
    def prefix(self, row: Row, counting: Any) -> tuple[list[KV], int]:
        """The KV of each of the row's blocks but its last (none: no LRU, or a one-block prompt), and their
        length."""
        chain = row.blocks[:-1]
        if self.lru is None or not chain:
            return [], 0
        starts = [0]
        for b in chain:
            starts.append(starts[-1] + b.tokens)
        images = iter(range(len(row.pixels)))
        where = {j: next(images) for j, b in enumerate(chain) if b.image is not None}

        def compute(j: int, parents: list[KV]) -> tuple[KV, int]:
            kv = self._extend(concat(parents) if parents else None, row, starts[j], starts[j + 1],
                              where.get(j), counting)
            return kv, nbytes(kv)

        values, found = ensure_prefix(self.lru, chain, compute)
        self.work.prefix_hits += found
        self.work.prefix_tokens_reused += starts[found]
        return values, starts[-1]

    @torch.inference_mode()
    def _extend(self, parent: KV | None, row: Row, start: int, end: int, image: int | None, counting: Any) -> KV:
        """One block alone on its parent's KV: its own keys and values (copied out of the grown cache)."""
        if image is not None and int(row.ids[start]) != self.model.config.vision_start_token_id:
            raise KitError("A prompt block does not start at an image; set lvlm.qwen.prefix_cache_mb: 0.")
        cache = DynamicCache(ddp_cache_data=parent) if parent is not None else None
        shown = [] if image is None else [image]
        counting.prompt = True
        try:  # the hook's inputs are set inside, so the `finally` clears them whatever fails
            vision = vision_inputs([row.pixels[i] for i in shown], [row.grids[i] for i in shown],
                                   [row.digests[i] if row.digests else None for i in shown], counting, row.ids.device)
            out = self.model.model(input_ids=row.ids[None, start:end], position_ids=row.positions[:, None, start:end],
                                   attention_mask=torch.ones(1, end, dtype=torch.long, device=row.ids.device),
                                   use_cache=True, **{self.base_kw: cache}, **vision)
        finally:
            counting.prompt, counting.digests, counting.pixels = False, None, None
        return [(k[:, :, start:].clone(), v[:, :, start:].clone()) for k, v in kv_of(output_cache(out))]

    # ------------------------------------------------------------- the batched suffix forward
    @torch.inference_mode()
    def run(self, rows: Sequence[Row], counting: Any, drop_last: bool, logits: bool) -> Stacked:
        """Every row's prefix (LRU), then one forward over the suffixes (`drop_last`: all but the last token,
        for generate); `logits`: keep the last column's logits (they predict an answer's first token)."""
        prefixes = [self.prefix(r, counting) for r in rows]
        p = [n for _, n in prefixes]
        s = [len(r.ids) - n - drop_last for r, (_, n) in zip(rows, prefixes, strict=True)]
        lay = layout(p, s)
        dev = rows[0].ids.device
        ids = torch.full((len(rows), lay.suffix), self.pad_id, dtype=torch.long, device=dev)
        mask = torch.zeros(len(rows), lay.prefix + lay.suffix, dtype=torch.long, device=dev)
        pos = torch.zeros(3, len(rows), lay.suffix, dtype=torch.long, device=dev)
        pixels, grids, digests = [], [], []
        for i, (r, pi, si) in enumerate(zip(rows, p, s, strict=True)):
            ids[i, lay.suffix - si:] = r.ids[pi : pi + si]
            pos[:, i, lay.suffix - si:] = r.positions[:, pi : pi + si]
            mask[i, lay.prefix - pi : lay.prefix] = 1
            mask[i, lay.prefix + lay.suffix - si:] = 1
            shown = sum(b.image is not None for b in r.blocks[:-1]) if pi else 0  # images in the prefix
            pixels += r.pixels[shown:]
            grids += r.grids[shown:]
            digests += r.digests[shown:] if r.digests is not None else [None] * (len(r.pixels) - shown)
        cache = None
        if lay.prefix:  # a row without a prefix (a one-block prompt) is all padding there
            cache = DynamicCache(ddp_cache_data=stack([chain for chain, _ in prefixes], lay.prefix))
        counting.prompt = True
        try:  # the hook's inputs are set inside, so the `finally` clears them whatever fails
            vision = vision_inputs(pixels, grids, digests, counting, dev)
            if logits:
                out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                                 logits_to_keep=1, **{self.kw: cache}, **vision)
            else:
                out = self.model.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                                       **{self.base_kw: cache}, **vision)
        finally:
            counting.prompt, counting.digests, counting.pixels = False, None, None
        return Stacked(output_cache(out), mask, out.logits[:, -1] if logits else None,
                       [int(r.positions[:, -1].max()) + 1 for r in rows], [len(r.ids) for r in rows])

    # ------------------------------------------------------------- answers
    @torch.inference_mode()
    def score(self, done: Stacked, owner: Sequence[int], answer_ids: torch.Tensor, answer_mask: torch.Tensor,
              counting: Any) -> torch.Tensor:
        """log p of each answer token (pairs x A, 0 where masked): pair j scores answer row j after prompt
        `owner[j]`. Token 0 comes from the prompt's last logits; tokens 1.. from one forward of the answers but
        their last token on the prompts' KV, repeated per pair."""
        which = torch.tensor(list(owner), device=answer_ids.device)
        first = torch.log_softmax(done.logits[which].float(), dim=-1).gather(-1, answer_ids[:, :1])  # (pairs, 1)
        width = answer_ids.shape[1]
        if width < 2:
            return first * answer_mask
        feed, feed_mask = answer_ids[:, :-1], answer_mask[:, :-1]
        cache = DynamicCache(ddp_cache_data=[(k[which], v[which]) for k, v in kv_of(done.cache)])
        start = torch.tensor([done.next_positions[i] for i in owner], device=feed.device)
        pos = (start[:, None] + torch.arange(width - 1, device=feed.device)).expand(3, -1, -1)
        counting.prompt = True
        try:
            logits = self.model(input_ids=feed, attention_mask=torch.cat([done.mask[which], feed_mask], dim=1),
                                position_ids=pos, use_cache=True, **{self.kw: cache}).logits
        finally:
            counting.prompt, counting.digests, counting.pixels = False, None, None
        rest = torch.log_softmax(logits.float(), dim=-1).gather(-1, answer_ids[:, 1:, None])[..., 0]
        return torch.cat([first, rest], dim=1) * answer_mask

    # ------------------------------------------------------------- generation
    def generation_inputs(self, rows: Sequence[Row], done: Stacked, num_beams: int) -> dict[str, Any]:
        """`generate`'s inputs after `run(drop_last=True)`: the rows laid out as the cache (prefix, pads, suffix)
        plus the last token, the cache repeated per beam, and the model's `rope_deltas` set to each prompt's
        M-RoPE offset (position of the last token minus its column among the real tokens)."""
        width = done.mask.shape[1]
        dev = rows[0].ids.device
        ids = torch.full((len(rows), width + 1), self.pad_id, dtype=torch.long, device=dev)
        for i, r in enumerate(rows):
            cols = done.mask[i].nonzero()[:, 0]
            ids[i, cols] = r.ids[:-1]
            ids[i, -1] = r.ids[-1]
        mask = torch.cat([done.mask, torch.ones(len(rows), 1, dtype=done.mask.dtype, device=dev)], dim=1)
        types = (ids == self.model.config.image_token_id).to(torch.int)
        done.cache.batch_repeat_interleave(num_beams)
        self.model.model.rope_deltas = torch.tensor(
            [[p - n] for p, n in zip(done.next_positions, done.lengths, strict=True)], device=dev)
        return {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": types, self.kw: done.cache}
