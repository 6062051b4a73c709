"""The model-free `simple` encoder, the encoder factory and the embeddings cache."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

import icl_kit.selection.encoders as enc_mod
from icl_kit.core.config import EncoderConfig
from icl_kit.core.errors import KitError
from icl_kit.data.demo.world import build_demo_world
from icl_kit.data.okvqa import load_split
from icl_kit.selection.encoders import (
    SimpleEncoder,
    build_encoder,
    combine,
    embed_records,
    image_features,
    question_features,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The default demo world, shared by every test module of the session (idempotent build)."""
    root = build_demo_world(tmp_path_factory.getbasetemp() / "demo_default")
    return root, load_split(root, "train"), load_split(root, "val")


def test_combine_by_hand():
    # normalize(([3,4]/5 + [1,0]) / 2) = normalize([0.8, 0.4]) = [2, 1] / sqrt(5)
    out = combine(np.array([[3.0, 4.0]]), np.array([[2.0, 0.0]]))
    np.testing.assert_allclose(out, [[2 / np.sqrt(5), 1 / np.sqrt(5)]])


def test_question_features_by_hand():
    def signed_bucket(tok, dim):
        h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
        return h % dim, (1.0 if (h >> 32) & 1 else -1.0)

    expected = np.zeros(32)
    for tok, n in (("red", 2), ("red_red", 1)):
        b, s = signed_bucket(tok, 32)
        expected[b] += n * s
    np.testing.assert_array_equal(question_features("Red, red?", 32), expected)


def test_image_features_find_the_object():
    im = Image.new("RGB", (96, 96), (255, 255, 255))
    im.paste((200, 0, 0), (0, 0, 48, 48))  # red square in the top-left quarter
    f = image_features(im)
    n_hist, n_grid = enc_mod.COLOR_LEVELS**3, enc_mod.GRID**2
    hist, layout = f[:n_hist], f[n_hist:n_hist + n_grid]
    red_bin = (200 * 6 // 256) * 36  # (r, g, b) bins (4, 0, 0)
    # Nearly all foreground mass is red (resampling blends a few edge pixels).
    assert hist.argmax() == red_bin and hist[red_bin] == pytest.approx(enc_mod.W_FG_COLOR, abs=1e-3)
    # Foreground fills exactly the 2x2 top-left cells of the 4x4 grid.
    cells = (layout / layout.max()).reshape(4, 4)
    np.testing.assert_allclose(cells, np.kron([[1, 0], [0, 0]], np.ones((2, 2))))


def test_encode_shape_norm_determinism_batching(world):
    _, pool, _ = world
    records = pool[:20]
    e = SimpleEncoder(48).encode(records)
    assert e.dtype == torch.float32 and e.shape == (20, 48)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(20))
    singles = torch.cat([SimpleEncoder(48).encode([r]) for r in records])
    assert torch.equal(e, singles)
    assert SimpleEncoder(48).encode([]).shape == (0, 48)


def test_neighbours_share_type_and_concept(world):
    root, pool, test = world
    latent = json.loads((root / "demo_latent.json").read_text())["questions"]
    key = [(latent[str(r.question_id)]["question_type"], latent[str(r.question_id)]["concept"]) for r in pool]
    test = test[:300]
    enc = SimpleEncoder()
    nearest = (enc.encode(test) @ enc.encode(pool).T).argmax(dim=1).tolist()
    q_key = [(latent[str(r.question_id)]["question_type"], latent[str(r.question_id)]["concept"]) for r in test]
    same_both = np.mean([q_key[i] == key[j] for i, j in enumerate(nearest)])
    same_type = np.mean([q_key[i][0] == key[j][0] for i, j in enumerate(nearest)])
    assert same_both >= 0.7 and same_type >= 0.9  # chance: 1/144 and 1/6


def test_embed_records_cache(world, tmp_path, monkeypatch):
    _, pool, _ = world
    records = pool[:30]
    cache = tmp_path / "embeddings.pt"
    enc = SimpleEncoder(16, batch_size=7)
    out = embed_records(records, enc, cache)
    saved = torch.load(cache, weights_only=True)
    assert saved["ids"] == [r.question_id for r in records] == out["ids"]
    assert saved["emb"].dtype == torch.float32 and saved["emb"].shape == (30, 16)
    assert torch.equal(out["emb"], SimpleEncoder(16, batch_size=1000).encode(records))  # batches == one batch

    def fail(_records):
        raise AssertionError("cache not reused")

    # Each modality alone, unit norm, from the same features as the fused embedding.
    img, txt = enc.parts(records)
    assert torch.allclose(saved["img"], torch.nn.functional.normalize(torch.from_numpy(img).float(), dim=-1))
    assert torch.allclose(saved["txt"], torch.nn.functional.normalize(torch.from_numpy(txt).float(), dim=-1))
    monkeypatch.setattr(enc, "parts", fail)
    assert torch.equal(embed_records(records, enc, cache)["emb"], out["emb"])
    with pytest.raises(AssertionError, match="cache not reused"):
        embed_records(records[:29], enc, cache)  # other ids: recomputed
    other = embed_records(records, SimpleEncoder(8), cache)  # other encoder: recomputed
    assert other["emb"].shape == (30, 8)
    cache.write_bytes(b"garbage")
    assert embed_records(records, SimpleEncoder(8), cache)["emb"].shape == (30, 8)
    assert embed_records(records, SimpleEncoder(8))["emb"].shape == (30, 8)  # no cache path


def test_build_encoder():
    enc = build_encoder(EncoderConfig(backend="simple", dim=24, batch_size=5))
    assert isinstance(enc, SimpleEncoder) and (enc.dim, enc.batch_size) == (24, 5)
    if not hasattr(enc_mod, "ClipEncoder"):
        with pytest.raises(KitError, match="encoder.backend 'clip' is not available"):
            build_encoder(EncoderConfig(backend="clip"))
