"""Which parts of a prompt's language-model work can be reused: prompt blocks and the prefix LRU (no torch).

A prompt (icl_kit.lvlm.prompts) is one chat-template text whose images each open with `<|vision_start|>`:

    block 0        the system message and the user turn's header          (the same in every prompt of a run)
    block 1..k     ICD i: its image and "Question:{q_i} Short answer:{a_i}"
    query block    the query's image, its question and the generation prompt (last: it differs per prompt)

A causal model's keys and values (KV) at a position depend only on the tokens up to it, and Qwen2.5-VL's
M-RoPE positions of a prefix do not depend on what follows; so the KV of blocks 0..j is the same in every
prompt that starts with the same blocks 0..j. Shot k's prompt (first k ICDs, then the query) therefore shares
blocks 0..k-1 with shot k-1's (not the query block, which comes last), and with every other prompt whose
first ICDs are the same in the same order. The split is at `<|vision_start|>`: the tokenizer splits text at
special tokens, so the blocks' token counts add up to the prompt's.

Each block is keyed by a chain hash: sha256 of its parent's key, its template text and its image's identity
(the image file and the pixel budget), so a key names the whole prefix up to the block's end. `PrefixLRU`
keeps blocks by key, least recently used dropped first beyond a byte budget. A prompt's chain is touched
deepest block first, so a block is always more recent than all its descendants and the LRU drops leaves
before their parents: a cached block's whole prefix is cached.

The same code decides what the Qwen backend computes (`icl_kit.lvlm.qwen_prefix`) and what the work model
of the benchmarks counts (`icl_kit.lvlm.work_model`): the value kept is the KV there and None here.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

VISION_START = "<|vision_start|>"  # Qwen2.5-VL's chat template opens every image with it


@dataclass(frozen=True)
class Block:
    """One block of a prompt: its chain key, its language-model positions and its image (None: block 0)."""

    key: str
    tokens: int
    image: str | None


def prompt_blocks(text: str, images: Sequence[str], image_tokens: Sequence[int],
                  count_tokens: Callable[[str], int]) -> list[Block]:
    """The blocks of a prompt's template text (one `<|vision_start|><|image_pad|><|vision_end|>` per image).

    `images` identify the prompt's images in order (path and pixel budget), `image_tokens` their LLM tokens,
    `count_tokens` tokenizes a text without special tokens added. A text whose images are not exactly its
    `<|vision_start|>` markers (a question quoting the marker) is one block: nothing of it is shared.
    """
    parts = text.split(VISION_START)
    if len(parts) != len(images) + 1:
        whole = count_tokens(text) + sum(n - 1 for n in image_tokens)
        return [Block(_chain("", text, "|".join(images)), whole, None)]
    blocks = [Block(_chain("", parts[0], ""), count_tokens(parts[0]), None)]
    for part, image, n in zip(parts[1:], images, image_tokens, strict=True):
        seg = VISION_START + part
        blocks.append(Block(_chain(blocks[-1].key, seg, image), count_tokens(seg) + n - 1, image))
    return blocks


def _chain(parent: str, text: str, image: str) -> str:
    h = hashlib.sha256(parent.encode())
    h.update(b"\0" + text.encode() + b"\0" + image.encode())
    return h.hexdigest()


@dataclass
class Entry:
    value: Any
    nbytes: int
    tokens: int


class PrefixLRU:
    """Prefix blocks by chain key (module docstring), least recently used dropped first beyond `max_bytes`.

    `hits`/`misses` count blocks found or not by `cached`, `reused_tokens` the positions of the blocks found.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def cached(self, chain: Sequence[Block]) -> int:
        """How many leading blocks of `chain` are kept (their values make the prefix; the rest must be computed)."""
        n = 0
        while n < len(chain) and chain[n].key in self.entries:
            n += 1
        return n

    def value(self, key: str) -> Any:
        return self.entries[key].value

    def put(self, block: Block, value: Any, nbytes: int) -> None:
        """Keep `value` for `block` (an entry larger than the whole budget is not kept)."""
        if nbytes > self.max_bytes or block.key in self.entries:
            return
        self.entries[block.key] = Entry(value, int(nbytes), block.tokens)
        self.bytes += int(nbytes)
        while self.bytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.nbytes
            self.evictions += 1

    def touch(self, chain: Sequence[Block]) -> None:
        """Mark `chain` used, deepest block first: every block stays more recent than its descendants."""
        for block in reversed(chain):
            if block.key in self.entries:
                self.entries.move_to_end(block.key)

    def __len__(self) -> int:
        return len(self.entries)


def ensure_prefix(lru: PrefixLRU, chain: Sequence[Block],
                  compute: Callable[[int, list[Any]], tuple[Any, int]]) -> tuple[list[Any], int]:
    """The values of every block of `chain` (a prompt's blocks but its last) and how many were kept.

    A missing block j is made by `compute(j, values of blocks 0..j-1)` -> (value, bytes), in order, and kept;
    the Qwen backend computes it ALONE (one prompt, no padding) on its parent's KV, so a block's KV is a
    function of its prefix only, whatever was asked, kept or evicted before.
    """
    n = lru.cached(chain)
    lru.touch(chain[:n])  # kept while this prompt's missing blocks are put
    values = [lru.value(b.key) for b in chain[:n]]
    for j in range(n, len(chain)):
        value, nbytes = compute(j, values)
        values.append(value)
        lru.put(chain[j], value, nbytes)
    lru.touch(chain)
    return values, n


def kv_bytes_per_token(text_config: dict[str, Any], dtype_bytes: int) -> int:
    """Bytes of keys and values one position keeps: layers x 2 x key/value heads x head width x dtype."""
    d, heads = text_config["hidden_size"], text_config["num_attention_heads"]
    head = text_config.get("head_dim") or d // heads
    return text_config["num_hidden_layers"] * 2 * text_config["num_key_value_heads"] * head * dtype_bytes


@dataclass(frozen=True)
class Layout:
    """Columns of one batched forward over suffixes after stacked prefixes (`layout`):

    row i = [P - p_i pads][prefix p_i][S - s_i pads][suffix s_i]; the forward computes B x S positions.
    """

    prefix: int  # P: the longest prefix in the batch
    suffix: int  # S: the longest suffix
    pads: int  # of the B x S computed positions, padding


def layout(prefixes: Sequence[int], suffixes: Sequence[int]) -> Layout:
    p, s = max(prefixes, default=0), max(suffixes, default=0)
    return Layout(p, s, len(suffixes) * s - sum(suffixes))
