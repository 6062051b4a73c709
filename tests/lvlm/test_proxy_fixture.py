"""benchmarks/make_proxy_qwen.py: the FLOP-proportional proxy of Qwen2.5-VL-3B that bench_lvlm_proxy.py times.

Built here into a temporary folder (a few seconds). Its FLOP split is checked against the 3B's from the models'
own parameters (the 3B instantiated on the meta device: no memory), not from icl_kit.lvlm.work's formula,
and its image tokens for a COCO-sized image against Qwen's smart-resize rule applied to the 3B's config.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).parents[2]
CONFIG_3B = ROOT / "benchmarks" / "qwen2_5_vl_3b_config.json"
COCO = (640, 480)  # width, height


def load_script():
    spec = importlib.util.spec_from_file_location("make_proxy_qwen", ROOT / "benchmarks" / "make_proxy_qwen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return load_script().build(tmp_path_factory.mktemp("proxy"))


def matmul_weights(model) -> tuple[float, int]:
    """(weights run per vision patch, per language-model token), counted from the parameters: the patch
    embedding and every vision block's linear layers once per patch, the merger's once per merge² patches;
    every linear layer of the decoder layers once per token."""
    visual, lm = model.model.visual, model.model.language_model
    merge = model.config.vision_config.spatial_merge_size

    def linear(module) -> int:
        return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))

    vision = visual.patch_embed.proj.weight.numel() + linear(visual.blocks) + linear(visual.merger) / merge**2
    return vision, linear(lm.layers)


def split(model) -> float:
    """Vision FLOPs per merged image token over language-model FLOPs per token."""
    vision, llm = matmul_weights(model)
    return model.config.vision_config.spatial_merge_size ** 2 * vision / llm


def smart_resize_tokens(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> int:
    """Qwen2.5-VL's smart resize (qwen-vl-utils): sides rounded to multiples of `factor` (patch x merge), scaled
    down (floor) above max_pixels or up (ceil) below min_pixels keeping the aspect; one token a factor² block."""
    h, w = max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return (h // factor) * (w // factor)


def test_flop_split_within_10_percent_of_the_3b(proxy: Path) -> None:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ours = Qwen2_5_VLForConditionalGeneration.from_pretrained(proxy)
    with torch.device("meta"):
        theirs = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig.from_json_file(str(CONFIG_3B)))
    assert matmul_weights(theirs) == (640_645_120, 2_774_532_096)  # icl_kit.lvlm.work.QWEN2_5_VL_3B
    assert abs(split(ours) / split(theirs) - 1) <= 0.10, (split(ours), split(theirs))
    script = load_script()  # what the script prints and checks is the same split
    config = json.loads((proxy / "config.json").read_text())
    assert script.check(config) == pytest.approx((split(ours), split(theirs)))
    text = config["text_config"]
    assert text["num_hidden_layers"] <= 4 and config["vision_config"]["depth"] <= 4  # few layers
    assert sum(p.numel() for p in ours.parameters()) < 10_000_000


def test_image_tokens_equal_the_3b_at_the_kits_pixel_budget(proxy: Path, tmp_path: Path) -> None:
    from icl_kit.core.config import LVLMConfig, QwenConfig
    from icl_kit.data.records import Record
    from icl_kit.lvlm.base import Request
    from icl_kit.lvlm.qwen import QwenLVLM

    budget = QwenConfig()  # the kit's defaults
    big = json.loads(CONFIG_3B.read_text())["vision_config"]
    factor = big["patch_size"] * big["spatial_merge_size"]
    expected = smart_resize_tokens(COCO[1], COCO[0], factor, budget.min_pixels, budget.max_pixels)
    assert expected == 234  # docs/benchmarks.md: 640 x 480 at the kit's budget
    config = json.loads((proxy / "config.json").read_text())
    for key in ("patch_size", "spatial_merge_size", "temporal_patch_size", "window_size"):
        assert config["vision_config"][key] == big[key]

    image = tmp_path / "coco.jpg"
    Image.new("RGB", COCO, (120, 60, 30)).save(image)
    record = Record(question_id=1, image_id=1, question="What is this?", answers=("red",) * 10, answer="red",
                    question_type="what", answer_type="other", image_path=image)
    lvlm = QwenLVLM(LVLMConfig(model=str(proxy), device="cpu", dtype="float32", qwen=budget))
    batch = lvlm.encode([lvlm.prepare(Request((), record))])
    assert int((batch["input_ids"] == config["image_token_id"]).sum()) == expected
    (t, h, w), = batch["image_grid_thw"].tolist()
    assert t * h * w == expected * big["spatial_merge_size"] ** 2
    lvlm.score([Request((), record)], ["red"])  # the proxy's vision tower runs on them
    assert (lvlm.work.images_encoded, lvlm.work.vision_patches) == (1, expected * 4)
