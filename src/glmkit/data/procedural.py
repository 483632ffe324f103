"""Procedural images: an offline, deterministic stand-in for web-scale image data.

Each image is a pure function of ``(seed, index)``. Scenes have structure a teacher can encode:
coloured shapes on gradient or textured backgrounds (a stand-in for natural images), rendered text
and UI-like panels (instruction-following data), bar and line charts (scientific imagery), and
periodic patterns. GLM-5V-Turbo section 2.1 mixes those three kinds of data 80/10/10; with
``kinds`` one procedural source per kind gives the same mixture offline.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from glmkit.data.sources import DATASETS, ImageSource

KINDS: tuple[str, ...] = ("shapes", "text", "chart", "pattern")

_WORDS: tuple[str, ...] = (
    "glm",
    "vision",
    "token",
    "patch",
    "encoder",
    "agent",
    "chart",
    "axis",
    "value",
    "model",
    "image",
    "layer",
    "query",
    "key",
    "mask",
    "teacher",
    "student",
    "signal",
    "noise",
    "scale",
    "batch",
    "epoch",
    "loss",
    "grid",
    "pixel",
    "colour",
    "shape",
    "text",
    "search",
    "tool",
    "crop",
    "box",
    "point",
    "line",
    "bar",
    "plot",
    "data",
    "train",
    "eval",
    "open",
    "close",
    "start",
    "stop",
    "next",
    "back",
    "menu",
    "file",
    "edit",
    "view",
    "help",
)
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow's bundled default font scales when FreeType is present; otherwise a fixed bitmap font.
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    r, g, b = rng.integers(lo, hi, size=3)
    return int(r), int(g), int(b)


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A linear or radial gradient, smooth noise, or a flat colour with grain."""
    style = rng.integers(4)
    c0 = rng.uniform(0, 255, size=3).astype(np.float32)
    c1 = rng.uniform(0, 255, size=3).astype(np.float32)
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    if style == 0:  # linear gradient at a random angle
        angle = rng.uniform(0, 2 * math.pi)
        t = axis[None, :] * math.cos(angle) + axis[:, None] * math.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif style == 1:  # radial gradient around a random centre
        cy, cx = rng.uniform(0, 1, size=2)
        t = np.sqrt((axis[None, :] - cx) ** 2 + (axis[:, None] - cy) ** 2)
        t = np.clip(t / max(float(t.max()), 1e-6), 0, 1)
    elif style == 2:  # smooth noise texture: a small random grid upsampled
        cells = int(rng.integers(3, 12))
        small = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.uint8)
        return Image.fromarray(small, "RGB").resize((size, size), Image.Resampling.BICUBIC)
    else:  # flat colour with grain
        grain = rng.normal(0, rng.uniform(2, 20), size=(size, size, 1)).astype(np.float32)
        return Image.fromarray(np.clip(c0 + grain, 0, 255).astype(np.uint8), "RGB")
    pixels = c0 + t[..., None] * (c1 - c0)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def _shapes(rng: np.random.Generator, size: int) -> Image.Image:
    img = _background(rng, size)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 9))):
        kind = rng.integers(5)
        x0, y0 = rng.uniform(-0.1, 0.9, size=2) * size
        w, h = rng.uniform(0.08, 0.5, size=2) * size
        box = (float(x0), float(y0), float(x0 + w), float(y0 + h))
        fill = _colour(rng)
        outline = _colour(rng) if rng.random() < 0.5 else None
        width = int(rng.integers(1, 5))
        if kind == 0:
            draw.ellipse(box, fill=fill, outline=outline, width=width)
        elif kind == 2 and min(w, h) >= 8:  # PIL mis-draws rounded corners on tiny boxes
            draw.rounded_rectangle(box, radius=float(min(w, h) / 4), fill=fill, outline=outline, width=width)
        elif kind in (1, 2):
            draw.rectangle(box, fill=fill, outline=outline, width=width)
        elif kind == 3:
            points = [tuple(p) for p in (rng.uniform(0, 1, size=(int(rng.integers(3, 7)), 2)) * size)]
            draw.polygon(points, fill=fill, outline=outline)
        else:
            draw.line(box, fill=fill, width=int(rng.integers(2, 10)))
    return img


def _random_word(rng: np.random.Generator) -> str:
    if rng.random() < 0.7:
        return _WORDS[int(rng.integers(len(_WORDS)))]
    return "".join(_ALPHABET[i] for i in rng.integers(len(_ALPHABET), size=int(rng.integers(2, 8))))


def _text(rng: np.random.Generator, size: int) -> Image.Image:
    """Lines of text, sometimes inside UI-like panels with a title bar and buttons."""
    light = rng.random() < 0.7
    bg = _colour(rng, 200, 256) if light else _colour(rng, 0, 60)
    fg = _colour(rng, 0, 90) if light else _colour(rng, 180, 256)
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    y = 4.0
    if rng.random() < 0.5:  # title bar with buttons
        bar_h = size * rng.uniform(0.08, 0.14)
        draw.rectangle((0, 0, size, bar_h), fill=_colour(rng))
        draw.text((6, bar_h * 0.2), _random_word(rng).upper(), fill=bg, font=_font(max(8, int(bar_h * 0.6))))
        for k in range(int(rng.integers(1, 4))):
            cx = size - (k + 1) * bar_h
            draw.ellipse((cx, bar_h * 0.25, cx + bar_h * 0.5, bar_h * 0.75), fill=_colour(rng))
        y = bar_h + 4
    font_size = int(rng.integers(max(8, size // 28), max(9, size // 9)))
    font = _font(font_size)
    x_margin = float(rng.uniform(2, max(3.0, size * 0.1)))
    while y < size - font_size:
        words = " ".join(_random_word(rng) for _ in range(int(rng.integers(1, 6))))
        draw.text((x_margin, y), words, fill=fg if rng.random() < 0.8 else _colour(rng), font=font)
        y += font_size * rng.uniform(1.2, 1.8)
    if rng.random() < 0.4:  # a button
        bx, by = rng.uniform(0.1, 0.6, size=2) * size
        draw.rounded_rectangle(
            (bx, by, bx + size * 0.3, by + size * 0.1), radius=max(1.0, size * 0.02), fill=_colour(rng)
        )
        draw.text((bx + 4, by + 2), _random_word(rng), fill=bg, font=_font(max(8, size // 20)))
    return img


def _chart(rng: np.random.Generator, size: int) -> Image.Image:
    """A bar or line chart with axes, ticks and a title."""
    img = Image.new("RGB", (size, size), _colour(rng, 220, 256))
    draw = ImageDraw.Draw(img)
    font = _font(max(8, size // 20))
    left, right, top, bottom = size * 0.15, size * 0.95, size * 0.15, size * 0.85
    axis = _colour(rng, 0, 80)
    draw.line((left, top, left, bottom, right, bottom), fill=axis, width=2)
    tick_step = int(rng.integers(1, 50))
    for k in range(5):  # y ticks and grid
        ty = bottom - k * (bottom - top) / 4
        draw.line((left - 4, ty, left, ty), fill=axis, width=1)
        draw.line((left, ty, right, ty), fill=(200, 200, 200), width=1)
        draw.text((2, ty - size * 0.03), str(k * tick_step), fill=axis, font=font)
    draw.text((left, 2), _random_word(rng).title() + " " + _random_word(rng), fill=axis, font=font)
    n = int(rng.integers(3, 12))
    values = rng.uniform(0.05, 1.0, size=(int(rng.integers(1, 4)), n))
    span_x = (right - left) / n
    if rng.random() < 0.5:  # grouped bars
        groups = values.shape[0]
        for g in range(groups):
            colour = _colour(rng, 0, 220)
            for i, v in enumerate(values[g]):
                x0 = left + i * span_x + span_x * (0.1 + 0.8 * g / groups)
                x1 = x0 + span_x * 0.8 / groups
                draw.rectangle((x0, bottom - v * (bottom - top), x1, bottom), fill=colour)
    else:  # lines with markers
        for g in range(values.shape[0]):
            colour = _colour(rng, 0, 220)
            pts = [(left + (i + 0.5) * span_x, bottom - v * (bottom - top)) for i, v in enumerate(values[g])]
            draw.line(pts, fill=colour, width=int(rng.integers(1, 4)))
            for px, py in pts:
                draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
    return img


def _pattern(rng: np.random.Generator, size: int) -> Image.Image:
    """Checkerboards and (rotated) stripes, sometimes with a shape on top."""
    c0 = np.asarray(_colour(rng), dtype=np.uint8)
    c1 = np.asarray(_colour(rng), dtype=np.uint8)
    period = float(rng.uniform(size / 40, size / 4))
    angle = rng.uniform(0, math.pi)
    coords = np.arange(size, dtype=np.float32)
    xx, yy = coords[None, :], coords[:, None]
    u = xx * math.cos(angle) + yy * math.sin(angle)
    if rng.random() < 0.5:
        v = -xx * math.sin(angle) + yy * math.cos(angle)
        on = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    else:
        on = np.broadcast_to(np.floor(u / period) % 2 == 0, (size, size))
    img = Image.fromarray(np.where(on[..., None], c0, c1), "RGB")
    if rng.random() < 0.5:
        draw = ImageDraw.Draw(img)
        x0, y0 = rng.uniform(0.1, 0.6, size=2) * size
        r = float(rng.uniform(0.1, 0.3) * size)
        draw.ellipse((x0, y0, x0 + r, y0 + r), fill=_colour(rng))
    return img


_RENDERERS = {"shapes": _shapes, "text": _text, "chart": _chart, "pattern": _pattern}


def render_scene(seed: int, index: int, image_size: int = 224, kinds: Sequence[str] = KINDS) -> Image.Image:
    """Render image ``index`` of the procedural stream ``seed``: a pure function of its arguments."""
    rng = np.random.default_rng([seed, index])
    kind = kinds[int(rng.integers(len(kinds)))]
    return _RENDERERS[kind](rng, image_size)


@DATASETS.register("procedural")
class ProceduralImages(ImageSource):
    """Synthetic scenes drawn on the fly; image ``i`` is a deterministic function of ``(seed, i)``.

    Args:
        num_images: length of the source.
        seed: selects the stream; two seeds give different images at the same index.
        image_size: side of the square images.
        kinds: which scene kinds to draw (any of ``shapes``, ``text``, ``chart``, ``pattern``); all
            by default.
    """

    def __init__(
        self,
        num_images: int = 100_000,
        seed: int = 0,
        image_size: int = 224,
        kinds: Sequence[str] | None = None,
    ) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
        kinds = tuple(KINDS if kinds is None else kinds)
        unknown = [k for k in kinds if k not in _RENDERERS]
        if unknown or not kinds:
            raise ValueError(
                f"unknown procedural kinds {unknown or kinds!r}; valid kinds: {', '.join(KINDS)}"
            )
        self.num_images = int(num_images)
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.kinds = kinds

    def __len__(self) -> int:
        return self.num_images

    def describe(self, index: int) -> str:
        return f"procedural(seed={self.seed}, index={self._check_index(index)})"

    def load(self, index: int) -> Image.Image:
        return render_scene(self.seed, self._check_index(index), self.image_size, self.kinds)

    def __repr__(self) -> str:
        return (
            f"ProceduralImages(num_images={self.num_images}, seed={self.seed}, "
            f"image_size={self.image_size}, kinds={list(self.kinds)})"
        )
