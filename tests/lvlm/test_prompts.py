"""Prompt protocol: layout, image placeholders (tiny Qwen processor), post-processing, hashes."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoProcessor

from icl_kit.core.config import GenerationConfig, PromptConfig
from icl_kit.core.errors import KitError
from icl_kit.data.demo.world import build_demo_world
from icl_kit.data.okvqa import load_split
from icl_kit.data.records import Record
from icl_kit.lvlm.prompts import build_messages, describe_messages, postprocess, protocol_hash, split_spec, system_text

TINY_QWEN = Path(__file__).parents[1] / "fixtures" / "tiny-qwen2.5-vl"
QWEN_DEFAULT_SYSTEM = "You are a helpful assistant."


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    root = build_demo_world(tmp_path_factory.mktemp("demo"), n_train=12, n_test=10, seed=3)
    return load_split(root, "train")


@pytest.fixture(scope="module")
def processor():
    return AutoProcessor.from_pretrained(TINY_QWEN)


def _texts(messages: list[dict]) -> list[str]:
    return [c["text"] for c in messages[-1]["content"] if c["type"] == "text"]


def _images(messages: list[dict]) -> list[str]:
    return [c["image"] for c in messages[-1]["content"] if c["type"] == "image"]


# ------------------------------------------------------------------- layout
def test_layout_interleaves_images_in_icd_order_with_query_last(records):
    icds, query = records[:3], records[5]
    msgs = build_messages(icds, query, PromptConfig(), load_images=False)
    assert [c["type"] for c in msgs[-1]["content"]] == ["image", "text"] * 4
    assert _images(msgs) == [str(r.image_path) for r in [*icds, query]]
    assert _texts(msgs) == [
        *(f"Question:{r.question} Short answer:{r.answer}" for r in icds),
        f"Question:{query.question} Short answer:",
    ]


def test_reversed_order_and_first_answer(records):
    icds, query = records[:3], records[5]
    cfg = PromptConfig(icd_order="reversed", icd_answer_field="first")
    msgs = build_messages(icds, query, cfg, load_images=False)
    assert _images(msgs) == [str(r.image_path) for r in [icds[2], icds[1], icds[0], query]]
    assert _texts(msgs)[0] == f"Question:{icds[2].question} Short answer:{icds[2].answers[0]}"


def test_zero_shot_and_loaded_images_and_vision_keys(records):
    msgs = build_messages([], records[0], PromptConfig(), vision={"max_pixels": 3136})
    (img, text) = msgs[-1]["content"]
    assert img["image"].mode == "RGB" and img["max_pixels"] == 3136
    assert text["text"] == f"Question:{records[0].question} Short answer:"


def test_system_prompt_present_unless_empty(records, processor):
    with_sys = build_messages(records[:1], records[2], PromptConfig(system_prompt="Be brief."),
                              load_images=False)
    text = processor.apply_chat_template(with_sys, tokenize=False, add_generation_prompt=True)
    assert with_sys[0] == {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("Short answer:<|im_end|>\n<|im_start|>assistant\n")
    assert QWEN_DEFAULT_SYSTEM not in text

    no_sys = build_messages(records[:1], records[2], PromptConfig(system_prompt=""), load_images=False)
    text = processor.apply_chat_template(no_sys, tokenize=False, add_generation_prompt=True)
    assert [m["role"] for m in no_sys] == ["user"]
    assert "Be brief." not in text and PromptConfig().system_prompt not in text
    assert text.startswith(f"<|im_start|>system\n{QWEN_DEFAULT_SYSTEM}<|im_end|>\n")  # the template's


# ------------------------------------------------------------ system prompt file
# A stand-in for the study's configs/infer_model/qwen2.5_vl_3B.yaml, written here (the kit ships no copy).
STUDY_LIKE_YAML = """\
vqa_prompt_template: "Question:<X> Short answer:<Y>"
system_prompt: "In the upcoming turns you will see 2 example dialogues.\\n  Answer briefly."
nested:
  inner: deep text
"""


def test_system_prompt_file_text_and_yaml_key(records, tmp_path, processor):
    txt = tmp_path / "system.txt"
    txt.write_text("Answer in one word.\n\n", encoding="utf-8")
    assert system_text(PromptConfig(system_prompt_file=str(txt))) == "Answer in one word."
    yml = tmp_path / "qwen2.5_vl_3B.yaml"
    yml.write_text(STUDY_LIKE_YAML, encoding="utf-8")
    cfg = PromptConfig(system_prompt="ignored", system_prompt_file=f"{yml}:system_prompt")
    expected = "In the upcoming turns you will see 2 example dialogues.\n  Answer briefly."  # YAML escapes
    assert system_text(cfg) == expected
    assert system_text(PromptConfig(system_prompt_file=f"{yml}:nested.inner")) == "deep text"
    msgs = build_messages(records[:1], records[2], cfg, load_images=False)
    assert msgs[0] == {"role": "system", "content": [{"type": "text", "text": expected}]}
    text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text.startswith(f"<|im_start|>system\n{expected}<|im_end|>\n<|im_start|>user\n")


def test_system_prompt_file_env_vars_and_colons(tmp_path, monkeypatch):
    (tmp_path / "a:b.txt").write_text("x", encoding="utf-8")
    monkeypatch.setenv("STUDY_REPO", str(tmp_path))
    assert system_text(PromptConfig(system_prompt_file="$STUDY_REPO/a:b.txt")) == "x"
    assert split_spec("/r/c.yaml:system_prompt") == ("/r/c.yaml", "system_prompt")
    assert split_spec("/r/a:b.txt") == ("/r/a:b.txt", None)
    assert split_spec("C.YML:k") == ("C.YML", "k")


def test_system_prompt_file_errors(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text(STUDY_LIKE_YAML, encoding="utf-8")
    cases = [(f"{tmp_path}/absent.yaml:system_prompt", "absent.yaml does not exist"),
             (str(yml), "is a YAML file; name the key"),
             (f"{yml}:sytem_prompt", "has no key 'sytem_prompt'"),
             (f"{yml}:nested", "holds dict, not text")]
    for spec, message in cases:
        with pytest.raises(KitError, match=message):
            system_text(PromptConfig(system_prompt_file=spec))


def test_protocol_hash_covers_the_text_read_not_the_path(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("Be brief.", encoding="utf-8")
    b.write_text("Be brief.\n", encoding="utf-8")
    from_a, from_b = (PromptConfig(system_prompt_file=str(p)) for p in (a, b))
    inline = PromptConfig(system_prompt="Be brief.")
    assert protocol_hash(from_a, GenerationConfig()) == protocol_hash(from_b, GenerationConfig()) \
        == protocol_hash(inline, GenerationConfig())
    a.write_text("Be very brief.", encoding="utf-8")
    os.utime(a, ns=(1, 1))  # a new mtime even on coarse-clock file systems: the file is read again
    assert system_text(from_a) == "Be very brief."
    assert protocol_hash(from_a, GenerationConfig()) != protocol_hash(inline, GenerationConfig())


@pytest.mark.parametrize("shots", [0, 1, 2, 4])
def test_image_placeholders_equal_shots_plus_one(records, processor, shots):
    msgs = build_messages(records[:shots], records[6], PromptConfig())
    text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    images = [c["image"] for c in msgs[-1]["content"] if c["type"] == "image"]
    out = processor(text=[text], images=images, return_tensors="pt")
    ids = out["input_ids"][0]
    image_id = processor.image_token_id
    is_img = (ids == image_id).int()
    runs = int(((is_img[1:] - is_img[:-1]) == 1).sum() + is_img[0])  # contiguous image-token runs
    assert text.count("<|image_pad|>") == shots + 1
    assert runs == shots + 1 == out["image_grid_thw"].shape[0]
    assert int(is_img.sum()) == int(out["image_grid_thw"].prod(dim=1).sum()) // 4
    starts = torch.nonzero(ids == processor.tokenizer.convert_tokens_to_ids("<|vision_start|>"))
    assert len(starts) == shots + 1


def test_describe_messages_names_images_in_order(records):
    msgs = build_messages(records[:2], records[4], PromptConfig(), load_images=False)
    lines = describe_messages(msgs, [*records[:2], records[4]]).splitlines()
    assert lines[0] == "<system>" and lines[2] == "<user>"
    assert lines[3] == f"  [image qid={records[0].question_id} image_id={records[0].image_id}]"
    assert lines[-2] == f"  [image qid={records[4].question_id} image_id={records[4].image_id}]"


# ---------------------------------------------------------- post-processing
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("red", "red"),
        ("  red  ", "red"),
        ("red Question:what", "red"),
        ("blue\nQuestion: is it", "blue"),
        ("two dogs Short answer:", "two dogs"),
        ("yes Answer: no", "yes"),
        ("cat, dog", "cat"),
        ("cat,dog", "cat,dog"),  # only ", " (comma + space) splits
        ("a, b Question: c, d", "a"),
        ("New York, USA Short", "New York"),
        ("Short answer: red", ""),
        ("question mark", "question mark"),  # case-sensitive, as in the study
        ("", ""),
    ],
)
def test_postprocess_study(text, expected):
    assert postprocess(text) == expected


def test_postprocess_other_rules():
    assert postprocess(" red, blue ", "strip") == "red, blue"
    assert postprocess(" red, blue ", "none") == " red, blue "
    with pytest.raises(ValueError, match="postprocess rule"):
        postprocess("x", "fancy")


# -------------------------------------------------------------------- hashes
def test_protocol_hash_is_stable_and_sensitive():
    base = protocol_hash(PromptConfig(), GenerationConfig())
    assert base == protocol_hash(PromptConfig(), GenerationConfig())
    assert len(base) == 16 and int(base, 16) >= 0
    changed = {
        protocol_hash(replace(PromptConfig(), system_prompt=""), GenerationConfig()),
        protocol_hash(replace(PromptConfig(), icd_order="reversed"), GenerationConfig()),
        protocol_hash(replace(PromptConfig(), postprocess="strip"), GenerationConfig()),
        protocol_hash(PromptConfig(), replace(GenerationConfig(), num_beams=1)),
        protocol_hash(PromptConfig(), replace(GenerationConfig(), max_new_tokens=6)),
    }
    assert base not in changed and len(changed) == 5


def test_protocol_hash_known_value():
    # Pinned: a change here silently invalidates every reward cache, so it must be deliberate
    # (bump PROTOCOL_VERSION or change the defaults on purpose, then update this value).
    assert protocol_hash(PromptConfig(), GenerationConfig()) == PINNED_DEFAULT_HASH


PINNED_DEFAULT_HASH = "2cfd45bc2c71a9ef"  # + generation.inherit/min_new_tokens/temperature/top_k/top_p/eos
