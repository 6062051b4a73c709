"""The demonstration prompt protocol and answer post-processing.

One user message holds the demonstrations and the query, images interleaved:

    [img_1, "Question:{q_1} Short answer:{a_1}", ..., img_k, "...", img_q, "Question:{q} Short answer:"]

preceded by a system message unless the system text is ''. The text is
`PromptConfig.system_prompt`, or the file `PromptConfig.system_prompt_file` names (a text
file, or `PATH:KEY` of a YAML file). With no system message of ours, Qwen2.5-VL's chat
template inserts its own default ("You are a helpful assistant.").

The existing study (docs/study.md, "The study's inference") DID send a system message on its main path: the
`system_prompt` string of its `configs/infer_model/qwen2.5_vl_3B.yaml` (695 characters, which
speaks of a fixed number of example dialogues whatever the shot count). To reproduce it, point
`system_prompt_file` at that file with `:system_prompt`; the kit ships no copy of the text.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image

from icl_kit.core.config import GenerationConfig, PromptConfig, load_yaml_text
from icl_kit.core.errors import KitError
from icl_kit.data.records import Record

# Bump when the meaning of the protocol changes without a params change (e.g. a new
# post-processing rule), so cached rewards made under the old protocol are not reused.
PROTOCOL_VERSION = 1

STUDY_STOP_WORDS = ("Question", "Answer", "Short")
STUDY_CLAUSE_SEP = ", "

YAML_SUFFIXES = (".yaml", ".yml")

Content = dict[str, Any]
Message = dict[str, Any]


# --------------------------------------------------------------- system text
def split_spec(spec: str) -> tuple[str, str | None]:
    """'dir/f.yaml:system_prompt' -> ('dir/f.yaml', 'system_prompt'); 'notes.txt' -> ('notes.txt', None).

    Only a `.yaml`/`.yml` path takes a key, so other paths may contain colons.
    """
    path, sep, key = spec.rpartition(":")
    if sep and path.lower().endswith(YAML_SUFFIXES) and key:
        return path, key
    return spec, None


def system_text(cfg: PromptConfig) -> str:
    """The system message text: `system_prompt_file`'s text when it is set, else `system_prompt`."""
    if not cfg.system_prompt_file:
        return cfg.system_prompt
    path, key = split_spec(os.path.expanduser(os.path.expandvars(cfg.system_prompt_file)))
    try:
        mtime = os.stat(path).st_mtime_ns  # part of the cache key: an edited file is read again
    except OSError:
        raise KitError(
            f"lvlm.prompt.system_prompt_file={cfg.system_prompt_file!r}: {path} does not exist; point it at a "
            "text file, or at PATH:KEY of a YAML file (for the study: a clone of its repository, "
            "configs/infer_model/qwen2.5_vl_3B.yaml:system_prompt)."
        ) from None
    return _read_system_text(path, key, mtime)


@functools.lru_cache(maxsize=8)
def _read_system_text(path: str, key: str | None, mtime: int) -> str:
    where = f"lvlm.prompt.system_prompt_file ({path})"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KitError(f"{where} cannot be read as UTF-8 text ({type(exc).__name__}); fix the file.") from None
    if key is None:
        if path.lower().endswith(YAML_SUFFIXES):
            raise KitError(f"{where} is a YAML file; name the key that holds the text, as PATH:KEY.")
        return text.rstrip("\n")
    node: Any = load_yaml_text(text)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KitError(f"{where} has no key {key!r}; name an existing (dotted) key as PATH:KEY.")
        node = node[part]
    if not isinstance(node, str):
        raise KitError(f"{where}: key {key!r} holds {type(node).__name__}, not text; name a string key.")
    return node


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
    system = system_text(cfg)
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
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
def protocol_hash(prompt_cfg: PromptConfig, gen_cfg: GenerationConfig | dict[str, Any]) -> str:
    """Stable 16-hex-digit hash of everything that shapes a prompt's answer but the model.

    It covers the system text itself (read from `system_prompt_file` when set), so answers
    cached under one system message are never reused under another. `gen_cfg` is the
    generation params or the resolved decoding dict of a backend.
    Same configs -> same hash across processes and machines (sorted JSON, sha256).
    """
    generation = gen_cfg if isinstance(gen_cfg, dict) else asdict(gen_cfg)
    prompt = asdict(prompt_cfg)
    del prompt["system_prompt_file"]  # where the text came from does not matter, the text does
    prompt["system_prompt"] = system_text(prompt_cfg)
    payload = {"version": PROTOCOL_VERSION, "prompt": prompt, "generation": generation}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
