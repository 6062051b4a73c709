"""Build a FLOP-proportional proxy of Qwen2.5-VL-3B: random weights, few layers, the 3B's vision/language split.

    .venv/bin/python benchmarks/make_proxy_qwen.py OUT     # e.g. a folder in the system temp folder

The folder loads with the calls used for the real model (`Qwen2_5_VLForConditionalGeneration.from_pretrained`,
`AutoProcessor.from_pretrained`). Tokenizer, processor (patch 14, merge 2, temporal patch 2: the 3B's image
processor settings), chat template and generation config are copied from the tiny test fixture
(tests/fixtures/tiny-qwen2.5-vl, built by tests/fixtures/make_tiny_qwen.py); only the model is new:

    language model  width 256, 2 layers, 8 heads of 32 (1 key/value head), MLP 1376: the 3B's shape ratios
                    (q/o width = D, k/v width = D/8, MLP = 5.375 D), 2,408,448 weights per token;
                    LM head 256 x 1,088 (0.116 of a token's LM weights; the 3B: 0.112)
    vision tower    width 96, 4 blocks (the last with full attention, the others in 112 px windows, as the
                    3B's every 8th), 2 heads, MLP 208, merger to 256: 561,408 weights per patch

so the vision tower's FLOPs per merged image token (2 x 2 patches) over the language model's FLOPs per token
is 0.9324, against 0.9236 for the 3B (icl_kit.lvlm.work.qwen_arch of benchmarks/qwen2_5_vl_3b_config.json):
+1.0%. An image gives as many tokens as for the 3B at the same pixel budget (same patch and merge sizes; e.g.
640 x 480 -> 234 at the kit's lvlm.qwen.max_pixels). What it does not keep proportional: attention (QK^T,
AV) grows with context over width, so at width 256 it is a larger share than at 2048 (docs/benchmarks.md).
The script prints both ratios and refuses a split more than 10% off. Everything is seeded: rerunning
writes the same files. About 15 MB.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests" / "fixtures") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from make_tiny_qwen import INIT_STD, SEED  # noqa: E402  (tests/fixtures is not a package)
from make_tiny_qwen import OUT as TINY_QWEN  # noqa: E402

CONFIG_3B = ROOT / "benchmarks" / "qwen2_5_vl_3b_config.json"
COPIED = ("chat_template.jinja", "processor_config.json", "tokenizer.json", "tokenizer_config.json",
          "generation_config.json")  # the tiny fixture's tokenizer, processor and generation config
SETTINGS = "proxy_settings.json"  # what the folder was built with: a different one is rebuilt (`ensure`)
TOLERANCE = 0.10  # |proxy split / 3B split - 1| allowed
TINY_WIDTH = 64  # the tiny fixture's text width: INIT_STD is scaled by sqrt(TINY_WIDTH / width), same logit scale

TEXT = dict(hidden_size=256, intermediate_size=1376, num_hidden_layers=2, num_attention_heads=8,
            num_key_value_heads=1, max_position_embeddings=32768)
MROPE_SECTION = [4, 6, 6]  # the 3B's [16, 24, 24] scaled to head width 32 (sums to 32 / 2)
VISION = dict(depth=4, hidden_size=96, intermediate_size=208, num_heads=2, patch_size=14, spatial_merge_size=2,
              temporal_patch_size=2, window_size=112, fullatt_block_indexes=[3])


def split(config: dict) -> float:
    """Vision-tower FLOPs per merged image token over language-model FLOPs per token (icl_kit.lvlm.work's
    weights per patch and per token; one merged token is merge² patches)."""
    from icl_kit.lvlm.work import qwen_arch

    arch = qwen_arch(config)
    return config["vision_config"]["spatial_merge_size"] ** 2 * arch.vision_per_patch / arch.llm_per_token


def proxy_config():
    """The proxy's Qwen2_5_VLConfig: the tiny fixture's token ids and vocabulary, TEXT and VISION sizes."""
    from transformers import Qwen2_5_VLConfig

    tiny = json.loads((TINY_QWEN / "config.json").read_text())
    t = tiny["text_config"]
    text = dict(TEXT, vocab_size=t["vocab_size"], bos_token_id=t["bos_token_id"], eos_token_id=t["eos_token_id"],
                pad_token_id=t["pad_token_id"], initializer_range=INIT_STD * (TINY_WIDTH / TEXT["hidden_size"]) ** 0.5,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": MROPE_SECTION})
    vision = dict(VISION, out_hidden_size=TEXT["hidden_size"],
                  initializer_range=INIT_STD * (TINY_WIDTH / VISION["hidden_size"]) ** 0.5)
    ids = {k: tiny[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")}
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)


def check(config: dict) -> tuple[float, float]:
    """(the proxy's split, the 3B's); raises if they differ by more than TOLERANCE."""
    ours, theirs = split(config), split(json.loads(CONFIG_3B.read_text()))
    if abs(ours / theirs - 1) > TOLERANCE:
        raise ValueError(f"proxy vision/LM split {ours:.4f} is not within {TOLERANCE:.0%} of the 3B's {theirs:.4f}")
    return ours, theirs


def settings() -> dict:
    return {"seed": SEED, "text": TEXT, "mrope_section": MROPE_SECTION, "vision": VISION,
            "copied_from": TINY_QWEN.name}


def build(out: Path) -> Path:
    """Write the proxy folder (seeded); returns its path."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = proxy_config()
    check(config.to_dict())
    torch.manual_seed(SEED)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in COPIED:
        shutil.copyfile(TINY_QWEN / name, out / name)
    (out / SETTINGS).write_text(json.dumps(settings(), sort_keys=True) + "\n")  # last: a killed build rebuilds
    return out


def ensure(out: Path) -> Path:
    """`out`, built first when missing or built with other settings (the benchmark's cache folder)."""
    marker = out / SETTINGS
    if not marker.is_file() or json.loads(marker.read_text()) != json.loads(json.dumps(settings())):
        if marker.is_file():
            marker.unlink()
        build(out)
    return out


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    path = build(Path(sys.argv[1]))
    config = json.loads((path / "config.json").read_text())
    ours, theirs = check(config)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    print(f"wrote {path} ({size / 1e6:.1f} MB)")
    print(f"vision FLOPs per merged image token / LM FLOPs per token: proxy {ours:.4f}, Qwen2.5-VL-3B {theirs:.4f} "
          f"({ours / theirs - 1:+.1%}; allowed ±{TOLERANCE:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
