"""ClipEncoder on the tiny local CLIP: unit norm, batch invariance, manual reference."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPModel, CLIPProcessor

from icl_kit.core.config import EncoderConfig
from icl_kit.core.errors import KitError
from icl_kit.data.demo.world import build_demo_world
from icl_kit.data.okvqa import load_split
from icl_kit.selection.encoders import ClipEncoder, build_encoder, embed_records

TINY_CLIP = Path(__file__).parents[1] / "fixtures" / "tiny-clip"


def clip_cfg(**kw) -> EncoderConfig:
    return replace(EncoderConfig(backend="clip", model=str(TINY_CLIP), device="cpu", batch_size=4), **kw)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory):
    root = build_demo_world(tmp_path_factory.mktemp("demo"), n_train=11, n_test=10, seed=2)
    return load_split(root, "train")


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    enc = build_encoder(clip_cfg())
    assert isinstance(enc, ClipEncoder)
    return enc


def test_unit_norm_shape_and_dtype(encoder, records):
    emb = encoder.encode(records)
    assert emb.shape == (len(records), 16) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=1), torch.ones(len(records)), atol=1e-6)
    assert encoder.encode([]).shape == (0, 16)


def test_batched_equals_unbatched(encoder, records):
    batched = encoder.encode(records)  # chunks of 4, text padded within each chunk
    single = torch.cat([encoder.encode([r]) for r in records])
    assert torch.allclose(batched, single, atol=1e-5)


def test_matches_manual_clip_features(records):
    model = CLIPModel.from_pretrained(TINY_CLIP).eval()
    proc = CLIPProcessor.from_pretrained(TINY_CLIP)
    with torch.inference_mode():
        img = model.get_image_features(**proc(images=[r.image() for r in records], return_tensors="pt"))
        txt = model.get_text_features(**proc.tokenizer([r.question for r in records], padding=True,
                                                         return_tensors="pt"))
    img, txt = img.pooler_output, txt.pooler_output
    expected = F.normalize((F.normalize(img, dim=-1) + F.normalize(txt, dim=-1)) / 2, dim=-1)
    assert torch.allclose(ClipEncoder(clip_cfg(batch_size=64)).encode(records), expected, atol=1e-5)


def test_image_and_question_both_matter(encoder, records):
    a, b = records[0], records[1]
    swapped = replace(a, question=b.question)
    e = encoder.encode([a, swapped, b])
    assert not torch.allclose(e[0], e[1], atol=1e-4) and not torch.allclose(e[1], e[2], atol=1e-4)


def test_embed_records_with_clip(encoder, records, tmp_path):
    out = embed_records(records, encoder, tmp_path / "embeddings.pt")
    assert out["ids"] == [r.question_id for r in records]
    assert torch.allclose(out["emb"], encoder.encode(records), atol=1e-6)


def test_missing_clip_folder(tmp_path):
    with pytest.raises(KitError, match="encoder.model"):
        ClipEncoder(clip_cfg(model=str(tmp_path / "nope")))
