"""The demonstration prompt protocol and answer post-processing.

One user message holds the demonstrations and the query, images interleaved:

    [img_1, "Question:{q_1} Short answer:{a_1}", ..., img_k, "...", img_q, "Question:{q} Short answer:"]

preceded by a system message unless `PromptConfig.system_prompt` is ''. With no system
message of ours, Qwen2.5-VL's chat template inserts its own default system message
("You are a helpful assistant."), exactly as it did in the existing study.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from PIL import Image

from icl_kit.core.config import GenerationConfig, PromptConfig
from icl_kit.data.records import Record

# Bump when the meaning of the protocol changes without a params change (e.g. a new
# post-processing rule), so cached rewards made under the old protocol are not reused.
PROTOCOL_VERSION = 1

STUDY_STOP_WORDS = ("Question", "Answer", "Short")
STUDY_CLAUSE_SEP = ", "

Content = dict[str, Any]
Message = dict[str, Any]


def icd_answer(record: Record, field: str) -> str:
    """The answer shown after a demonstration: most frequent of 10 ('answer') or the first."""
    if field == "answer":
        return record.answer
    if field == "first":
        return record.answers[0]
    raise ValueError(f"icd_answer_field={field!r} is not 'answer' or 'first'.")


def ordered_icds(icds: Sequence[Record], order: str) -> list[Record]:
    """ICDs in prompt order: as selected, or reversed (most relevant next to the query)."""
    if order == "as_selected":
        return list(icds)
    if order == "reversed":
        return list(reversed(icds))
    raise ValueError(f"icd_order={order!r} is not 'as_selected' or 'reversed'.")


def image_item(record: Record, load_images: bool, vision: dict[str, Any]) -> Content:
    """A chat content item for the record's image (PIL when `load_images`, else its path)."""
    image: Image.Image | str = record.image() if load_images else str(record.image_path)
    return {"type": "image", "image": image, **vision}


def build_messages(
    icds: Sequence[Record],
    query: Record,
    cfg: PromptConfig,
    *,
    load_images: bool = True,
    vision: dict[str, Any] | None = None,
) -> list[Message]:
    """Chat messages for one prompt: [system?] + one user message of images and texts.

    `vision` adds keys to every image item (e.g. `min_pixels`/`max_pixels` for qwen-vl-utils).
    """
    extra = vision or {}
    content: list[Content] = []
    for r in ordered_icds(icds, cfg.icd_order):
        text = cfg.icd_template.format(question=r.question, answer=icd_answer(r, cfg.icd_answer_field))
        content += [image_item(r, load_images, extra), {"type": "text", "text": text}]
    content += [image_item(query, load_images, extra),
                {"type": "text", "text": cfg.query_template.format(question=query.question)}]
    messages: list[Message] = []
    if cfg.system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": cfg.system_prompt}]})
    messages.append({"role": "user", "content": content})
    return messages


def describe_messages(messages: Sequence[Message], records: Sequence[Record]) -> str:
    """Human-readable layout: one line per item, images shown as `[image qid=N]`.

    `records` are the records whose images appear, in prompt order (ICDs, then the query).
    """
    lines: list[str] = []
    images = iter(records)
    for m in messages:
        lines.append(f"<{m['role']}>")
        for item in m["content"]:
            if item["type"] == "image":
                r = next(images)
                lines.append(f"  [image qid={r.question_id} image_id={r.image_id}]")
            else:
                lines.append(f"  {item['text']!r}")
    return "\n".join(lines)


def prompt_records(icds: Sequence[Record], query: Record, cfg: PromptConfig) -> list[Record]:
    """The records whose images appear in the prompt, in prompt order."""
    return [*ordered_icds(icds, cfg.icd_order), query]


# --------------------------------------------------------------- post-processing
def postprocess(text: str, rule: str = "study") -> str:
    """Turn generated text into the answer that is scored.

    'study': cut at the first "Question", "Answer" or "Short", then at the first ", ",
    strip whitespace (the existing study's rule). 'strip': whitespace only. 'none': as is.
    """
    if rule == "none":
        return text
    if rule == "strip":
        return text.strip()
    if rule != "study":
        raise ValueError(f"postprocess rule {rule!r} is not one of 'study', 'strip', 'none'.")
    cut = re.split("|".join(STUDY_STOP_WORDS), text, maxsplit=1)[0]
    return cut.split(STUDY_CLAUSE_SEP, 1)[0].strip()


# ------------------------------------------------------------------ cache keys
def protocol_hash(prompt_cfg: PromptConfig, gen_cfg: GenerationConfig) -> str:
    """Stable 16-hex-digit hash of everything that shapes a prompt's answer but the model.

    Same configs -> same hash across processes and machines (sorted JSON, sha256).
    """
    payload = {"version": PROTOCOL_VERSION, "prompt": asdict(prompt_cfg), "generation": asdict(gen_cfg)}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
