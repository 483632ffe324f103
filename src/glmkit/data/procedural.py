"""Procedural images: an offline, deterministic stand-in for web-scale image data.

Each image is a pure function of ``(seed, index)``. Scenes have structure a teacher can encode:
coloured shapes on gradient or textured backgrounds (a stand-in for natural images), rendered text
and UI-like panels (instruction-following data), bar and line charts (scientific imagery), and
periodic patterns. GLM-5V-Turbo section 2.1 mixes those three kinds of data 80/10/10; with
``kinds`` one procedural source per kind gives the same mixture offline.

The shape scenes come from :func:`shape_scene`, glmkit's one procedural scene generator: it
returns the image together with every shape's kind, colour and box (:class:`ShapeScene`), so the
evaluation demos (grounding, pointing, counting) and RL tasks build on the same scenes the encoder
is pretrained on. With its defaults it draws exactly the ``shapes`` images of
:class:`ProceduralImages`; with a named palette, box-shaped kinds and a ``gap`` it draws separated,
nameable shapes ("the red triangle") whose boxes, centres and masks are exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from glmkit.data.fonts import load_font
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


RGB = tuple[int, int, int]

SHAPE_COLORS: dict[str, RGB] = {
    "red": (220, 30, 30),
    "blue": (30, 70, 220),
    "green": (30, 160, 60),
    "yellow": (235, 200, 20),
    "purple": (140, 50, 170),
    "orange": (245, 130, 20),
}
"""A palette of colours with names a question can use ("the red triangle")."""

NAMED_SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
"""Box-shaped kinds with names a question can use; their box is tight and their mask exact."""

FREE_KINDS: tuple[str, ...] = ("ellipse", "rectangle", "rounded_rectangle", "polygon", "line")
"""The kinds of the pretraining ``shapes`` scenes (in this order: the draw of kind k is part of the stream)."""

_BOX_KINDS = frozenset({"square", "circle", "triangle", "ellipse", "rectangle", "rounded_rectangle"})
_ALL_KINDS = _BOX_KINDS | {"polygon", "line"}
_EQUAL_SIDES = frozenset({"square", "circle", "triangle"})


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    r, g, b = rng.integers(lo, hi, size=3)
    return int(r), int(g), int(b)


def _background(rng: np.random.Generator, width: int, height: int | None = None) -> Image.Image:
    """A linear or radial gradient, smooth noise, or a flat colour with grain."""
    height = width if height is None else height
    style = rng.integers(4)
    c0 = rng.uniform(0, 255, size=3).astype(np.float32)
    c1 = rng.uniform(0, 255, size=3).astype(np.float32)
    axis_x = np.linspace(0.0, 1.0, width, dtype=np.float32)
    axis_y = np.linspace(0.0, 1.0, height, dtype=np.float32)
    if style == 0:  # linear gradient at a random angle
        angle = rng.uniform(0, 2 * math.pi)
        t = axis_x[None, :] * math.cos(angle) + axis_y[:, None] * math.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif style == 1:  # radial gradient around a random centre
        cy, cx = rng.uniform(0, 1, size=2)
        t = np.sqrt((axis_x[None, :] - cx) ** 2 + (axis_y[:, None] - cy) ** 2)
        t = np.clip(t / max(float(t.max()), 1e-6), 0, 1)
    elif style == 2:  # smooth noise texture: a small random grid upsampled
        cells = int(rng.integers(3, 12))
        small = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.uint8)
        return Image.fromarray(small, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    else:  # flat colour with grain
        grain = rng.normal(0, rng.uniform(2, 20), size=(height, width, 1)).astype(np.float32)
        return Image.fromarray(np.clip(c0 + grain, 0, 255).astype(np.uint8), "RGB")
    pixels = c0 + t[..., None] * (c1 - c0)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


@dataclass(frozen=True)
class SceneShape:
    """One shape of a :class:`ShapeScene`, as drawn.

    Args:
        kind: ``square``, ``circle``, ``triangle`` (apex up), ``ellipse``, ``rectangle``,
            ``rounded_rectangle``, ``polygon`` or ``line``.
        xy: what PIL draws: ``(x1, y1, x2, y2)`` with inclusive pixel ends for box kinds and
            ``line``, the vertices for ``polygon``.
        fill: RGB fill (the stroke colour of a line).
        color_name: the palette name of ``fill`` (``None`` for a random colour).
        outline: RGB outline, or ``None``.
        width: outline width (a line's stroke width).
        radius: corner radius of a ``rounded_rectangle``.
    """

    kind: str
    xy: tuple[Any, ...]
    fill: RGB
    color_name: str | None = None
    outline: RGB | None = None
    width: int = 1
    radius: float = 0.0

    @property
    def box(self) -> tuple[float, float, float, float]:
        """``(x1, y1, x2, y2)`` in continuous pixel coordinates (pixel ``i`` spans ``[i, i + 1)``),
        the convention of the grounding metrics; in a free layout it may reach past the canvas."""
        if self.kind == "polygon":
            xs = [float(p[0]) for p in self.xy]
            ys = [float(p[1]) for p in self.xy]
            return min(xs), min(ys), max(xs) + 1, max(ys) + 1
        x1, y1, x2, y2 = (float(v) for v in self.xy)
        return min(x1, x2), min(y1, y2), max(x1, x2) + 1, max(y1, y2) + 1

    @property
    def center(self) -> tuple[float, float]:
        """The centre of :attr:`box` (inside the shape for every box kind)."""
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2, (y1 + y2) / 2

    @property
    def label(self) -> str:
        """``"red triangle"``, or just the kind when the colour has no name."""
        return f"{self.color_name} {self.kind}" if self.color_name else self.kind

    def draw(self, draw: ImageDraw.ImageDraw, fill: Any = None) -> None:
        """Draw the shape with ``draw``; with ``fill``, in that colour and without outline (a mask)."""
        colour = self.fill if fill is None else fill
        outline = self.outline if fill is None else None
        if self.kind in ("ellipse", "circle"):
            draw.ellipse(self.xy, fill=colour, outline=outline, width=self.width)
        elif self.kind in ("rectangle", "square"):
            draw.rectangle(self.xy, fill=colour, outline=outline, width=self.width)
        elif self.kind == "rounded_rectangle":
            draw.rounded_rectangle(
                self.xy, radius=self.radius, fill=colour, outline=outline, width=self.width
            )
        elif self.kind == "triangle":
            x1, y1, x2, y2 = self.xy
            apex = ((x1 + x2 + 1) / 2, y1)  # the middle of the continuous box's top edge
            draw.polygon([apex, (x2, y2), (x1, y2)], fill=colour, outline=outline)
        elif self.kind == "polygon":
            draw.polygon(list(self.xy), fill=colour, outline=outline)
        elif self.kind == "line":
            draw.line(self.xy, fill=colour, width=self.width)
        else:
            raise ValueError(
                f"unknown shape kind {self.kind!r}; valid kinds: {', '.join(sorted(_ALL_KINDS))}"
            )


@dataclass
class ShapeScene:
    """An image of shapes and what is in it: ``shapes`` in drawing order (later ones on top).

    With ``unique_first`` (see :func:`shape_scene`) ``shapes[0]`` is the target: no other shape
    has both its colour and its kind.
    """

    image: Image.Image
    shapes: list[SceneShape]

    @property
    def boxes(self) -> list[tuple[float, float, float, float]]:
        """Each shape's :attr:`SceneShape.box`."""
        return [s.box for s in self.shapes]

    @property
    def points(self) -> list[tuple[float, float]]:
        """Each shape's :attr:`SceneShape.center`."""
        return [s.center for s in self.shapes]

    @property
    def labels(self) -> list[str]:
        """Each shape's :attr:`SceneShape.label`."""
        return [s.label for s in self.shapes]

    def mask(self, index: int) -> Image.Image:
        """Shape ``index``'s silhouette as an ``L`` image (255 inside, 0 outside), drawn alone."""
        mask = Image.new("L", self.image.size, 0)
        self.shapes[index].draw(ImageDraw.Draw(mask), fill=255)
        return mask

    def count(self, kind: str) -> int:
        """How many shapes of ``kind`` the scene holds."""
        return sum(s.kind == kind for s in self.shapes)


def shape_scene(
    rng: np.random.Generator,
    size: int | tuple[int, int],
    *,
    count: int | tuple[int, int] = (2, 9),
    kinds: Sequence[str] = FREE_KINDS,
    palette: Mapping[str, RGB] | None = None,
    extent: tuple[float, float] = (0.08, 0.5),
    gap: int | None = None,
    background: RGB | None = None,
    outlines: bool = True,
    unique_first: bool = False,
) -> ShapeScene:
    """Draw a scene of shapes and return it with every shape's kind, colour and box.

    With the defaults this is the ``shapes`` scene of :class:`ProceduralImages` (random
    background, 2-8 overlapping shapes of :data:`FREE_KINDS` in random colours, some outlined,
    some reaching past the edges). Evaluation and RL scenes pass a palette, box-shaped kinds and a
    ``gap``, so that every shape is whole, apart from the others and nameable.

    Args:
        rng: the only source of randomness; the same generator state gives the same scene.
        size: side of a square canvas, or ``(width, height)``.
        count: the number of shapes, or a ``[low, high)`` range to draw it from.
        kinds: the kinds to draw from (see :class:`SceneShape`); with a ``gap`` only box kinds.
        palette: ``{name: RGB}`` to draw colours from (e.g. :data:`SHAPE_COLORS`); ``None``: random
            RGB colours without names.
        extent: shape sides as fractions ``[low, high)`` of the canvas (free layout: of its width
            and height; with a ``gap``: of its shorter side). Square, circle and triangle have
            equal sides.
        gap: ``None``: free layout, shapes may overlap and leave the canvas. An int: every shape
            inside the canvas (4 px margin) and at least ``gap`` pixels from every other.
        background: a flat background colour; ``None``: a random gradient, noise or grain.
        outlines: give about half the shapes a random outline.
        unique_first: ``shapes[0]`` gets a (colour, kind) that no other shape has (needs a
            palette), so "the red circle" names it.

    Raises:
        ValueError: an unknown kind, a polygon or line with a ``gap``, ``unique_first`` without
            a palette or with a single (colour, kind) combination.
        RuntimeError: the shapes do not fit apart on the canvas (ask for fewer or smaller ones).
    """
    width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    unknown = [k for k in kinds if k not in _ALL_KINDS]
    if unknown or not kinds:
        raise ValueError(
            f"shape_scene: unknown kinds {unknown or list(kinds)!r}; valid kinds: {', '.join(sorted(_ALL_KINDS))}"
        )
    if gap is not None and not set(kinds) <= _BOX_KINDS:
        raise ValueError(
            f"shape_scene: kinds {sorted(set(kinds) - _BOX_KINDS)} have no box to keep apart (gap={gap}); "
            f"with a gap use {', '.join(sorted(_BOX_KINDS))}"
        )
    names = list(palette) if palette is not None else []
    if unique_first and len(names) * len(set(kinds)) < 2:
        raise ValueError(
            "shape_scene: unique_first needs a palette and more than one (colour, kind) combination"
        )

    if background is None:
        image = _background(rng, width, height)
    else:
        image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    n = int(count) if isinstance(count, int) else int(rng.integers(count[0], count[1]))
    shapes: list[SceneShape] = []
    taken: list[tuple[int, int, int, int]] = []
    for i in range(n):
        kind = kinds[int(rng.integers(len(kinds)))]
        color_name = names[int(rng.integers(len(names)))] if names else None
        if unique_first and i > 0:
            while (color_name, kind) == (shapes[0].color_name, shapes[0].kind):
                kind = kinds[int(rng.integers(len(kinds)))]
                color_name = names[int(rng.integers(len(names)))]
        xy: tuple[Any, ...]
        if gap is None:
            x0, y0 = rng.uniform(-0.1, 0.9, size=2) * (width, height)
            w, h = rng.uniform(*extent, size=2) * (width, height)
            if kind in _EQUAL_SIDES:
                h = w
            xy = (float(x0), float(y0), float(x0 + w), float(y0 + h))
        else:
            xy = _place(rng, width, height, kind, extent, gap, taken)
            taken.append(xy)
            w, h = xy[2] - xy[0] + 1, xy[3] - xy[1] + 1
        fill = _colour(rng) if palette is None else palette[color_name]  # type: ignore[index]
        outline, line_width = None, 1
        if outlines:
            outline = _colour(rng) if rng.random() < 0.5 else None
            line_width = int(rng.integers(1, 5))
        radius = 0.0
        if kind == "rounded_rectangle":
            if min(w, h) >= 8:
                radius = float(min(w, h) / 4)
            else:  # PIL mis-draws rounded corners on tiny boxes
                kind = "rectangle"
        elif kind == "polygon":  # vertices anywhere on the canvas
            vertices = rng.uniform(0, 1, size=(int(rng.integers(3, 7)), 2)) * (width, height)
            xy = tuple((float(px), float(py)) for px, py in vertices)
        elif kind == "line":
            line_width = int(rng.integers(2, 10))
        shape = SceneShape(kind, xy, fill, color_name, outline, line_width, radius)
        shape.draw(draw)
        shapes.append(shape)
    return ShapeScene(image, shapes)


def _place(
    rng: np.random.Generator,
    width: int,
    height: int,
    kind: str,
    extent: tuple[float, float],
    gap: int,
    taken: list[tuple[int, int, int, int]],
) -> tuple[int, int, int, int]:
    """An integer box (PIL's inclusive ends) inside the canvas with a 4 px margin, ``gap`` pixels
    from every box in ``taken``."""
    short = min(width, height)
    for _ in range(200):
        w, h = (max(4, int(v * short)) for v in rng.uniform(*extent, size=2))
        if kind in _EQUAL_SIDES:
            h = w
        if w + 8 > width or h + 8 > height:
            continue
        x, y = int(rng.integers(4, width - w - 3)), int(rng.integers(4, height - h - 3))
        box = (x, y, x + w - 1, y + h - 1)
        if all(
            box[2] + gap < t[0] or t[2] + gap < box[0] or box[3] + gap < t[1] or t[3] + gap < box[1]
            for t in taken
        ):
            return box
    raise RuntimeError(
        f"shape_scene: could not place {len(taken) + 1} shapes {gap} px apart on a {width}x{height} "
        "canvas; ask for fewer or smaller shapes or a larger canvas"
    )


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
        draw.text(
            (6, bar_h * 0.2), _random_word(rng).upper(), fill=bg, font=load_font(max(8, int(bar_h * 0.6)))
        )
        for k in range(int(rng.integers(1, 4))):
            cx = size - (k + 1) * bar_h
            draw.ellipse((cx, bar_h * 0.25, cx + bar_h * 0.5, bar_h * 0.75), fill=_colour(rng))
        y = bar_h + 4
    font_size = int(rng.integers(max(8, size // 28), max(9, size // 9)))
    font = load_font(font_size)
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
        draw.text((bx + 4, by + 2), _random_word(rng), fill=bg, font=load_font(max(8, size // 20)))
    return img


def _chart(rng: np.random.Generator, size: int) -> Image.Image:
    """A bar or line chart with axes, ticks and a title."""
    img = Image.new("RGB", (size, size), _colour(rng, 220, 256))
    draw = ImageDraw.Draw(img)
    font = load_font(max(8, size // 20))
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


def _shapes(rng: np.random.Generator, size: int) -> Image.Image:
    return shape_scene(rng, size).image


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
