"""Query/ICD embeddings for the selector: CLIP, or the model-free `simple` encoder (and, for the learning
check only, `demo_features`: the demo world's latent features, not an encoder).

Both follow the same recipe: an image embedding and a question embedding, each
L2-normalised, averaged, and the mean re-normalised,

    e = normalize((normalize(e_img) + normalize(e_txt)) / 2)        # (d,)

`embed_records` caches embeddings in the run folder as
`{"ids": [question ids], "emb": float32 [N, d], "img": [N, d], "txt": [N, d], "encoder": name}`
(img/txt: each modality alone, L2-normalised, for the one-modality similarity baselines
`similarity_i2t/i2i/t2t`) and reuses the file when the ids and the encoder match. CLIP's image
and text embeddings share one space, so i2t is meaningful; the `simple` encoder's two parts do
not (a colour projection vs hashed words), so its i2t is a number without meaning.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from icl_kit.core.config import EncoderConfig
from icl_kit.core.errors import KitError
from icl_kit.core.runs import atomic_torch_save
from icl_kit.data.records import Record

NORM_EPS = 1e-12


class Encoder(Protocol):
    """What `embed_records` needs from an encoder."""

    name: str  # identifies the encoder and its settings; part of the cache check
    batch_size: int

    def encode(self, records: Sequence[Record]) -> torch.Tensor:
        """Unit-norm embeddings, float32 (N, d)."""
        ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, NORM_EPS)


def combine(img: np.ndarray, txt: np.ndarray) -> np.ndarray:
    """normalize((normalize(img) + normalize(txt)) / 2), rows (N, d)."""
    return l2_normalize((l2_normalize(img) + l2_normalize(txt)) / 2)


# ----------------------------------------------------------------------- simple
FEATURE_SIZE = 24  # images are resized to FEATURE_SIZE² before feature extraction
FG_THRESHOLD = 40.0  # max channel distance from the background colour that marks foreground
COLOR_LEVELS = 6  # per channel: 6³ = 216 colour bins
GRID = 4  # coarse layout grid (GRID x GRID cells)
# Relative weights of the image feature blocks (each block is L2-normalised first).
W_FG_COLOR, W_FG_LAYOUT, W_GLOBAL = 1.0, 0.5, 0.25
PROJECTION_SEED = 20240611  # fixed: the projection is part of the encoder's definition
SIMPLE_VERSION = 1
TOKEN = re.compile(r"[a-z0-9]+")


def _stable_hash(text: str) -> int:
    """A hash that does not change between processes (unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def image_features(im: Image.Image) -> np.ndarray:
    """Foreground colour histogram, foreground layout and coarse colours, float64 (F,).

    The background colour is the median border pixel; foreground pixels differ
    from it by more than FG_THRESHOLD in some channel.
    """
    x = np.asarray(im.convert("RGB").resize((FEATURE_SIZE, FEATURE_SIZE), Image.BILINEAR), np.float64)
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])  # (4S, 3)
    fg = np.abs(x - np.median(border, axis=0)).max(axis=-1) > FG_THRESHOLD  # (S, S)
    bins = np.minimum((x * COLOR_LEVELS / 256).astype(int), COLOR_LEVELS - 1)
    idx = (bins[..., 0] * COLOR_LEVELS + bins[..., 1]) * COLOR_LEVELS + bins[..., 2]  # (S, S)
    hist = np.bincount(idx[fg], minlength=COLOR_LEVELS**3).astype(np.float64)
    cell = FEATURE_SIZE // GRID
    layout = fg.reshape(GRID, cell, GRID, cell).mean(axis=(1, 3)).ravel()  # (GRID²,)
    coarse = x.reshape(GRID, cell, GRID, cell, 3).mean(axis=(1, 3)).ravel() / 255  # (3 GRID²,)
    blocks = [(hist, W_FG_COLOR), (layout, W_FG_LAYOUT), (coarse - coarse.mean(), W_GLOBAL)]
    return np.concatenate([w * l2_normalize(b) for b, w in blocks])


def question_features(question: str, dim: int) -> np.ndarray:
    """Signed feature hashing of words and word bigrams into `dim` buckets, float64 (dim,)."""
    words = TOKEN.findall(question.lower())
    out = np.zeros(dim)
    for tok in words + [f"{a}_{b}" for a, b in zip(words, words[1:], strict=False)]:
        h = _stable_hash(tok)
        out[h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    return out


class SimpleEncoder:
    """Model-free, deterministic encoder for the demo world (not a learned model).

    Image part: `image_features` mapped to d dims by a fixed Gaussian random
    projection; text part: hashed question words. Nearest neighbours mostly
    share the question type (from the words) and the concept (from the colours).
    """

    def __init__(self, dim: int = 512, batch_size: int = 64) -> None:
        if dim < 1:
            raise KitError(f"encoder.dim={dim} must be at least 1.")
        self.dim = dim
        self.batch_size = batch_size
        self.name = f"simple-v{SIMPLE_VERSION}-d{dim}"
        n_feat = COLOR_LEVELS**3 + GRID**2 + 3 * GRID**2
        rng = np.random.default_rng(PROJECTION_SEED)
        self._proj = rng.normal(size=(n_feat, dim)) / np.sqrt(dim)  # (F, d)

    @classmethod
    def from_config(cls, cfg: EncoderConfig) -> SimpleEncoder:
        return cls(dim=cfg.dim, batch_size=cfg.batch_size)

    def parts(self, records: Sequence[Record]) -> tuple[np.ndarray, np.ndarray]:
        """Raw (image, question) features, float64 (N, d) each."""
        img = np.stack([image_features(r.image()) for r in records]) @ self._proj  # (N, d)
        txt = np.stack([question_features(r.question, self.dim) for r in records])  # (N, d)
        return img, txt

    def encode(self, records: Sequence[Record]) -> torch.Tensor:
        """Unit-norm embeddings, float32 (N, d)."""
        if not records:
            return torch.zeros(0, self.dim)
        return torch.from_numpy(combine(*self.parts(records))).float()


# ------------------------------------------------------------------------- CLIP
CLIP_MAX_TOKENS = 77  # CLIP's text context; longer questions are truncated


class ClipEncoder:
    """CLIP (transformers `CLIPModel`) image and question embeddings, combined by `combine`.

    `cfg.model` is a hub id (default openai/clip-vit-base-patch32) or a local folder;
    d = the model's projection_dim (512 for ViT-B/32). Weights stay float32.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        from transformers import CLIPModel, CLIPProcessor

        from icl_kit.core.hub import locate_model

        source = locate_model(cfg.model, "CLIP model", "encoder.model")
        device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device
        device = "cpu" if device == "auto" else device
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise KitError(f"encoder.device={cfg.device!r} but CUDA is not available here; use 'auto' or 'cpu'.")
        try:
            self.processor = CLIPProcessor.from_pretrained(source)
            self.model = CLIPModel.from_pretrained(source, dtype=torch.float32).to(device).eval()
        except (OSError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise KitError(f"encoder.model={cfg.model!r} could not be loaded as CLIP ({first}).") from None
        self.device = torch.device(device)
        self.batch_size = cfg.batch_size
        self.dim = int(self.model.config.projection_dim)
        self.name = f"clip:{cfg.model}:d{self.dim}"

    @torch.inference_mode()
    def features(self, records: Sequence[Record]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw projected (image, question) features, each float32 (N, d), one forward pass each."""
        pixels = self.processor(images=[r.image() for r in records], return_tensors="pt")
        text = self.processor.tokenizer([r.question for r in records], padding=True, truncation=True,
                                        max_length=CLIP_MAX_TOKENS, return_tensors="pt")
        # transformers 5: get_*_features return a model output; the projection is `pooler_output`.
        img = self.model.get_image_features(pixel_values=pixels["pixel_values"].to(self.device))
        txt = self.model.get_text_features(**text.to(self.device))
        return img.pooler_output.float().cpu(), txt.pooler_output.float().cpu()

    def parts(self, records: Sequence[Record]) -> tuple[np.ndarray, np.ndarray]:
        """Raw projected (image, question) features, float64 (N, d) each (one batch)."""
        img, txt = self.features(records)
        return img.double().numpy(), txt.double().numpy()

    def encode(self, records: Sequence[Record]) -> torch.Tensor:
        """Unit-norm embeddings, float32 (N, d), in chunks of `batch_size`."""
        if not records:
            return torch.zeros(0, self.dim)
        chunks = []
        for start in range(0, len(records), max(1, self.batch_size)):
            img, txt = self.features(records[start:start + self.batch_size])
            chunks.append(torch.from_numpy(combine(img.double().numpy(), txt.double().numpy())).float())
        return torch.cat(chunks)


# ---------------------------------------------------------------- demo_features
DEMO_FEATURES_VERSION = 1
DEMO_LATENT = "demo_latent.json"  # icl_kit.data.demo.world.LATENT, beside the world's image folders


class DemoFeatureEncoder:
    """The learning check's encoder (`encoder.backend: demo_features`): NOT an encoder of images or text.

    It reads the demo world's latent sidecar and embeds exactly what the simulated LVLM's relevance depends on
    (icl_kit.lvlm.simulated): the question type (the "text" part, a one-hot over QUESTION_TYPES) and the concept
    the image shows (the "image" part, a one-hot over CONCEPTS), fused by `combine`. Cosine similarity is then 1
    for the same type and concept, 1/2 for one of the two, 0 for neither. It exists to check the training
    machinery where the signal is plainly there (docs/training.md, "The learning check"); it works only in a
    demo world and is never a default.
    """

    def __init__(self, dim: int = 512, batch_size: int = 64) -> None:
        from icl_kit.data.demo.concepts import CONCEPTS, QUESTION_TYPES

        self.types = {t: i for i, t in enumerate(QUESTION_TYPES)}
        self.concepts = {c.name: len(QUESTION_TYPES) + i for i, c in enumerate(CONCEPTS)}
        need = len(self.types) + len(self.concepts)
        if dim < need:
            raise KitError(f"encoder.dim={dim} is too small for encoder.backend 'demo_features' (one-hot question "
                           f"types and concepts need {need}); set encoder.dim and selector.input_dim to at least "
                           f"{need}.")
        self.dim, self.batch_size = dim, batch_size
        self.name = f"demo-features-v{DEMO_FEATURES_VERSION}-d{dim}"
        self._latent: dict[Path, dict[str, dict]] = {}

    @classmethod
    def from_config(cls, cfg: EncoderConfig) -> DemoFeatureEncoder:
        return cls(dim=cfg.dim, batch_size=cfg.batch_size)

    def latent(self, record: Record) -> dict:
        """The record's row of the demo world's latent sidecar (found beside its image folder)."""
        path = record.image_path.parent.parent / DEMO_LATENT
        if path not in self._latent:
            if not path.is_file():
                raise KitError(f"encoder.backend 'demo_features' reads the demo world's {DEMO_LATENT}, not found at "
                               f"{path}; it works only in a demo world (data.demo: true), use 'simple' or 'clip'.")
            self._latent[path] = json.loads(path.read_text(encoding="utf-8"))["questions"]
        row = self._latent[path].get(str(record.question_id))
        if row is None:
            raise KitError(f"Question {record.question_id} is not in {path}; encoder.backend 'demo_features' "
                           "embeds only the questions of the demo world it was built with.")
        return row

    def parts(self, records: Sequence[Record]) -> tuple[np.ndarray, np.ndarray]:
        """(concept one-hot, question-type one-hot), float64 (N, d) each."""
        img, txt = np.zeros((len(records), self.dim)), np.zeros((len(records), self.dim))
        for i, r in enumerate(records):
            row = self.latent(r)
            img[i, self.concepts[row["concept"]]] = 1.0
            txt[i, self.types[row["question_type"]]] = 1.0
        return img, txt

    def encode(self, records: Sequence[Record]) -> torch.Tensor:
        """Unit-norm embeddings, float32 (N, d)."""
        if not records:
            return torch.zeros(0, self.dim)
        return torch.from_numpy(combine(*self.parts(records))).float()


# ------------------------------------------------------------------ entry points
def build_encoder(cfg: EncoderConfig) -> Encoder:
    """The encoder named by `cfg.backend`."""
    if cfg.backend == "simple":
        return SimpleEncoder.from_config(cfg)
    if cfg.backend == "clip":
        return ClipEncoder(cfg)
    if cfg.backend == "demo_features":
        return DemoFeatureEncoder.from_config(cfg)
    raise KitError(f"encoder.backend={cfg.backend!r} is not known; choose 'clip', 'simple' or 'demo_features'.")


def _load_cache(path: Path, ids: list[int], name: str) -> dict[str, Any] | None:
    """The cache at `path` if it holds exactly these ids from this encoder, else None."""
    if not path.is_file():
        return None
    try:
        cache = torch.load(path, weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError):
        return None  # an unreadable cache is rebuilt
    if not isinstance(cache, dict) or cache.get("ids") != ids or cache.get("encoder", name) != name:
        return None
    return cache


def _embed_chunk(encoder: Encoder, records: Sequence[Record]) -> dict[str, torch.Tensor]:
    """Fused embeddings (and, when the encoder has `parts`, each modality alone), float32 (n, d)."""
    if not hasattr(encoder, "parts"):
        return {"emb": encoder.encode(records).float()}
    img, txt = encoder.parts(records)  # the fused embedding is made from the same features
    return {k: torch.from_numpy(x).float() for k, x in
            (("emb", combine(img, txt)), ("img", l2_normalize(img)), ("txt", l2_normalize(txt)))}


def embed_records(records: Sequence[Record], encoder: Encoder,
                  cache_path: str | Path | None = None) -> dict[str, Any]:
    """`{"ids": [question ids], "emb": float32 (N, d), "img", "txt"}` for `records`, in their order
    (img/txt when the encoder has `parts`).

    With `cache_path` (the run's embeddings.pt), a cache with the same ids and
    encoder is reused; otherwise the embeddings are computed in batches and saved.
    """
    ids = [r.question_id for r in records]
    path = Path(cache_path) if cache_path else None
    has_parts = hasattr(encoder, "parts")
    if path is not None and (cache := cached_embeddings(path, ids, encoder.name)) is not None \
            and (not has_parts or "img" in cache):
        return cache
    step = max(1, encoder.batch_size)
    starts = tqdm(range(0, len(records), step), desc=f"embed ({encoder.name})", unit="batch")
    chunks = [_embed_chunk(encoder, records[start:start + step]) for start in starts]
    keys = ("emb", "img", "txt") if has_parts else ("emb",)
    out: dict[str, Any] = {"ids": ids}
    out.update({k: torch.cat([c[k] for c in chunks]) if chunks else torch.zeros(0, 0) for k in keys})
    if path is not None:
        save_embeddings(path, out, encoder.name)
    return out


def cached_embeddings(path: str | Path, ids: list[int], name: str) -> dict[str, Any] | None:
    """`{"ids", "emb"[, "img", "txt"]}` from the cache at `path` when it holds exactly `ids` from encoder
    `name`, else None."""
    cache = _load_cache(Path(path), ids, name)
    return None if cache is None else {k: cache[k] for k in ("ids", "emb", "img", "txt") if k in cache}


def save_embeddings(path: str | Path, out: dict[str, Any], name: str) -> None:
    """Write embeddings.pt (atomically), tagged with the encoder that made them."""
    atomic_torch_save({**out, "encoder": name}, path)
