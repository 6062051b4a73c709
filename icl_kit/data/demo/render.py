"""Procedural images of the demo world: a few copies of one concept on a background.

Small (IMAGE_SIZE square) so the build is fast and a tiny vision model is cheap.
Every random choice draws from the generator passed in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from icl_kit.data.demo.concepts import PALETTE, Concept

IMAGE_SIZE = 96
BACKGROUNDS: tuple[tuple[int, int, int], ...] = (
    (150, 200, 240), (110, 170, 90), (220, 200, 150), (175, 175, 175),
    (232, 232, 225), (70, 70, 85), (150, 110, 70), (200, 225, 205),
)  # fmt: skip
SHADE_JITTER = 18  # max per-channel change of an object's colour
NOISE_SD = 6.0  # background pixel noise
Box = tuple[float, float, float, float]
RGB = tuple[int, int, int]
Draw = ImageDraw.ImageDraw
ShapeFn = Callable[[Draw, Box, RGB, RGB], None]


def _legs(d: Draw, x0: float, x1: float, y: float, h: float, c: RGB) -> None:
    for x in np.linspace(x0, x1, 4):
        d.line([(x, y), (x, y + h)], fill=c, width=max(1, int(h / 4)))


def _wheels(d: Draw, xs: list[float], y: float, r: float, c: RGB) -> None:
    for x in xs:
        d.ellipse([x - r, y - r, x + r, y + r], fill=c)


def _crescent(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    width = max(2, int((b[2] - b[0]) / 4))
    d.arc(b, 20, 160, fill=p, width=width)
    d.arc(b, 15, 25, fill=s, width=width)
    d.arc(b, 155, 165, fill=s, width=width)


def _truck(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    x0, y0, x1, y1 = b
    h = y1 - y0
    d.rectangle([x0, y0 + h * 0.25, x1, y1 - h * 0.2], fill=p)
    d.line([(x0, y0 + h * 0.2), (x1, y0 + h * 0.2)], fill=s, width=max(1, int(h / 10)))
    _wheels(d, [x0 + h * 0.25, x1 - h * 0.25], y1 - h * 0.2, h * 0.15, (20, 20, 20))


def _bus(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    x0, y0, x1, y1 = b
    h = y1 - y0
    d.rectangle([x0, y0 + h * 0.3, x1, y1 - h * 0.15], fill=p)
    for x in np.linspace(x0 + h * 0.1, x1 - h * 0.3, 3):
        d.rectangle([x, y0 + h * 0.38, x + h * 0.18, y0 + h * 0.55], fill=s)
    _wheels(d, [x0 + h * 0.2, x1 - h * 0.2], y1 - h * 0.15, h * 0.12, (20, 20, 20))


def _car(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    x0, y0, x1, y1 = b
    h = y1 - y0
    d.rectangle([x0, y0 + h * 0.45, x1, y1 - h * 0.2], fill=p)
    d.rectangle([x0 + h * 0.25, y0 + h * 0.25, x1 - h * 0.25, y0 + h * 0.45], fill=p)
    d.rectangle([x0 + h * 0.4, y0 + h * 0.15, x0 + h * 0.6, y0 + h * 0.25], fill=s)
    _wheels(d, [x0 + h * 0.25, x1 - h * 0.25], y1 - h * 0.2, h * 0.14, (20, 20, 20))


def _van(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    x0, y0, x1, y1 = b
    h = y1 - y0
    d.rectangle([x0, y0 + h * 0.2, x1, y1 - h * 0.2], fill=p)
    cx, cy, a = (x0 + x1) / 2, (y0 + y1) / 2, h * 0.15
    d.rectangle([cx - a, cy - a / 3, cx + a, cy + a / 3], fill=s)
    d.rectangle([cx - a / 3, cy - a, cx + a / 3, cy + a], fill=s)
    _wheels(d, [x0 + h * 0.25, x1 - h * 0.25], y1 - h * 0.2, h * 0.13, (20, 20, 20))


def _tractor(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    x0, y0, x1, y1 = b
    h = y1 - y0
    d.rectangle([x0 + h * 0.2, y0 + h * 0.3, x1, y1 - h * 0.35], fill=p)
    d.rectangle([x0 + h * 0.2, y0 + h * 0.05, x0 + h * 0.5, y0 + h * 0.3], fill=p)
    _wheels(d, [x0 + h * 0.35], y1 - h * 0.3, h * 0.28, (20, 20, 20))
    _wheels(d, [x1 - h * 0.15], y1 - h * 0.2, h * 0.15, s)


def _boat(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    x0, y0, x1, y1 = b
    h = y1 - y0
    d.polygon([(x0, y0 + h * 0.55), (x1, y0 + h * 0.55), (x1 - h * 0.2, y1), (x0 + h * 0.2, y1)], fill=p)
    d.polygon([((x0 + x1) / 2, y0), ((x0 + x1) / 2, y0 + h * 0.5), (x1 - h * 0.1, y0 + h * 0.5)], fill=s)


def _animal(d: Draw, b: Box, p: RGB, s: RGB, *, neck: float = 0.0, pattern: str = "") -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    top = y0 + h * (0.25 + 0.25 * (neck == 0))
    body = [x0, top, x1 - w * 0.2, y1 - h * 0.25]
    d.ellipse(body, fill=p)
    head_y = y0 if neck else top - h * 0.1
    if neck:
        d.line([(x1 - w * 0.25, top + h * 0.1), (x1 - w * 0.12, head_y + h * 0.1)], fill=p, width=int(w / 8) + 1)
    d.ellipse([x1 - w * 0.25, head_y, x1, head_y + h * 0.22], fill=p)
    _legs(d, x0 + w * 0.15, x1 - w * 0.35, y1 - h * 0.3, h * 0.3, p)
    if pattern == "spots":
        for fx, fy in ((0.2, 0.1), (0.45, 0.3), (0.3, 0.55)):
            cx, cy = x0 + w * fx + w * 0.1, top + (body[3] - top) * fy
            d.ellipse([cx - w * 0.06, cy - w * 0.05, cx + w * 0.06, cy + w * 0.05], fill=s)
    elif pattern == "stripes":
        for fx in np.linspace(0.1, 0.7, 5):
            x = x0 + w * fx
            d.line([(x, top), (x, body[3])], fill=s, width=max(1, int(w / 18)))


def _umbrella(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    x0, y0, x1, y1 = b
    d.pieslice([x0, y0, x1, y1 + (y1 - y0) * 0.4], 180, 360, fill=p)
    cx = (x0 + x1) / 2
    d.line([(cx, (y0 + y1) / 2), (cx, y1)], fill=s, width=2)


def _pizza(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    x0, y0, x1, y1 = b
    d.ellipse(b, fill=p)
    w = x1 - x0
    for fx, fy in ((0.3, 0.3), (0.6, 0.35), (0.4, 0.62), (0.68, 0.65)):
        cx, cy = x0 + w * fx, y0 + (y1 - y0) * fy
        d.ellipse([cx - w * 0.07, cy - w * 0.07, cx + w * 0.07, cy + w * 0.07], fill=s)


def _clock(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    x0, y0, x1, y1 = b
    d.ellipse(b, fill=p, outline=s, width=2)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    d.line([(cx, cy), (cx, y0 + (y1 - y0) * 0.2)], fill=s, width=2)
    d.line([(cx, cy), (x1 - (x1 - x0) * 0.3, cy)], fill=s, width=2)


def _regular(n: int, rot: float) -> ShapeFn:
    def draw(d: Draw, b: Box, p: RGB, s: RGB) -> None:
        x0, y0, x1, y1 = b
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
        ang = np.arange(n) * 2 * np.pi / n + rot
        d.polygon([(cx + r * np.cos(a), cy + r * np.sin(a)) for a in ang], fill=p, outline=s, width=2)
    return draw


def _racket(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    x0, y0, x1, y1 = b
    h = y1 - y0
    d.ellipse([x0 + h * 0.2, y0, x1 - h * 0.2, y0 + h * 0.6], outline=p, width=3)
    d.line([((x0 + x1) / 2, y0 + h * 0.6), ((x0 + x1) / 2, y1)], fill=s, width=3)


def _circle(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    x0, y0, x1, y1 = b
    d.ellipse(b, fill=p)
    d.rectangle([(x0 + x1) / 2 - 1, y0 - 2, (x0 + x1) / 2 + 1, y0 + 3], fill=(90, 60, 30))
    d.ellipse([(x0 + x1) / 2, y0 - 3, (x0 + x1) / 2 + (x1 - x0) * 0.25, y0 + 2], fill=s)


def _dimpled(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    d.ellipse(b, fill=p)
    x0, y0, x1, _ = b
    d.ellipse([(x0 + x1) / 2 - 2, y0, (x0 + x1) / 2 + 2, y0 + 4], fill=s)


def _ellipse(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    x0, y0, x1, y1 = b
    h = y1 - y0
    d.ellipse([x0, y0 + h * 0.2, x1, y1 - h * 0.2], fill=p)
    d.ellipse([x1 - 3, (y0 + y1) / 2 - 2, x1 + 1, (y0 + y1) / 2 + 2], fill=s)


def _cluster(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    x0, y0, x1, y1 = b
    w = x1 - x0
    r = w * 0.14
    for row, n in enumerate((4, 3, 2, 1)):
        for i in range(n):
            cx = x0 + w * 0.5 + (i - (n - 1) / 2) * 2 * r
            cy = y0 + r * 2 + row * 1.7 * r
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=p)
    d.line([(x0 + w * 0.5, y0), (x0 + w * 0.5, y0 + r)], fill=s, width=2)


def _triangle(d: Draw, b: Box, p: RGB, s: RGB) -> None:
    x0, y0, x1, y1 = b
    h = y1 - y0
    d.polygon([(x0, y0 + h * 0.2), (x1, y0 + h * 0.2), ((x0 + x1) / 2, y1)], fill=p)
    d.rectangle([x0 + h * 0.2, y0, x1 - h * 0.2, y0 + h * 0.2], fill=s)


SHAPES: dict[str, ShapeFn] = {
    "crescent": _crescent, "circle": _circle, "dimpled": _dimpled, "ellipse": _ellipse,
    "cluster": _cluster, "triangle": _triangle, "truck": _truck, "bus": _bus, "car": _car,
    "van": _van, "tractor": _tractor, "boat": _boat,
    "spotted_animal": lambda d, b, p, s: _animal(d, b, p, s, pattern="spots"),
    "big_animal": lambda d, b, p, s: _animal(d, b, p, s),
    "tall_animal": lambda d, b, p, s: _animal(d, b, p, s, neck=1.0, pattern="spots"),
    "striped_animal": lambda d, b, p, s: _animal(d, b, p, s, pattern="stripes"),
    "round_animal": lambda d, b, p, s: _animal(d, b, p, s),
    "fluffy_animal": lambda d, b, p, s: _animal(d, b, p, s),
    "umbrella": _umbrella, "diamond": _regular(4, 0.0), "pizza": _pizza, "clock": _clock,
    "octagon": _regular(8, np.pi / 8), "racket": _racket,
}  # fmt: skip


def _shade(rgb: RGB, rng: np.random.Generator) -> RGB:
    r, g, b = (int(np.clip(v + rng.integers(-SHADE_JITTER, SHADE_JITTER + 1), 0, 255)) for v in rgb)
    return r, g, b


def _layout(count: int, rng: np.random.Generator) -> list[Box]:
    """`count` non-overlapping square boxes: one big, or a grid of smaller ones."""
    cols = 1 if count == 1 else 2 if count <= 4 else 3
    rows = -(-count // cols)
    cell = IMAGE_SIZE / max(cols, rows)
    size = cell * rng.uniform(0.65, 0.85)
    cells = rng.permutation(cols * rows)[:count]
    boxes = []
    for c in cells:
        cx = (c % cols) * cell + rng.uniform(0, cell - size) + (IMAGE_SIZE - cols * cell) / 2
        cy = (c // cols) * cell + rng.uniform(0, cell - size) + (IMAGE_SIZE - rows * cell) / 2
        boxes.append((cx, cy, cx + size, cy + size))
    return boxes


def render(concept: Concept, count: int, rng: np.random.Generator) -> Image.Image:
    """An RGB image with `count` copies of `concept` on a random noisy background."""
    bg = np.asarray(BACKGROUNDS[rng.integers(len(BACKGROUNDS))], dtype=np.float32)
    noise = rng.normal(0.0, NOISE_SD, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
    pixels = np.clip(bg + noise, 0, 255).astype(np.uint8)  # (H, W, 3)
    im = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(im)
    primary, secondary = (_shade(PALETTE[c], rng) for c in concept.colors)
    for box in _layout(count, rng):
        SHAPES[concept.shape](draw, box, primary, secondary)
    return im.filter(ImageFilter.SMOOTH)
