"""Image-caption pairs for contrastive training: a procedural source, a caption check, a language pick.

- :class:`ShapeCaptions`: offline, deterministic pairs. Each image holds 1-3 shapes of one colour
  and kind, grouped on the left, in the middle or on the right (drawn by
  :func:`glmkit.data.procedural.shape_scene`); its captions say count, colour, kind and position
  in English and Chinese (``{"en": "two red circles on the left", "zh": "左边有两个红色圆形"}``).
- :class:`CaptionedSource`: wraps any source whose records carry captions (e.g.
  ``JsonlManifest(fields=[caption])`` or ``TarShards``) and raises
  :class:`~glmkit.data.sources.BadSampleError` naming the record when its captions are missing or
  empty, so the mixture skips, counts and names it like an undecodable image.
- :class:`PickCaption`: a record transform that draws one caption (one language) per sample from
  the sample's seeded ``rng``, so the choice is a pure function of (seed, epoch, index).

A caption field is a string, a list of strings, or ``{language: string or list of strings}``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from glmkit.data.procedural import NAMED_SHAPES, SHAPE_COLORS, shape_scene
from glmkit.data.sources import DATASETS, BadSampleError, Source
from glmkit.data.transforms import TRANSFORMS, RandomSource, Transform, as_generator

COUNTS_EN = ("one", "two", "three")
COUNTS_ZH = ("一", "两", "三")
COLORS_ZH = {
    "red": "红色",
    "blue": "蓝色",
    "green": "绿色",
    "yellow": "黄色",
    "purple": "紫色",
    "orange": "橙色",
}
SHAPES_ZH = {"square": "正方形", "circle": "圆形", "triangle": "三角形"}
POSITIONS = ("left", "middle", "right")
POSITIONS_EN = {"left": "on the left", "middle": "in the middle", "right": "on the right"}
POSITIONS_ZH = {"left": "左边", "middle": "中间", "right": "右边"}
#: Smallest image side ShapeCaptions can draw on: a third of the width must hold a 4 px shape inside
#: :func:`~glmkit.data.procedural.shape_scene`'s 4 px margins (3 * 12 px).
MIN_SHAPE_IMAGE_SIZE = 36


def caption_options(value: Any, languages: Sequence[str] | None = None) -> list[str]:
    """The non-empty captions of a caption field (restricted to ``languages`` for a dict)."""
    if isinstance(value, str):
        values: list[Any] = [value]
    elif isinstance(value, dict):
        keys = list(value) if languages is None else [k for k in languages if k in value]
        values = []
        for k in keys:
            v = value[k]
            values.extend(v if isinstance(v, list | tuple) else [v])
    elif isinstance(value, list | tuple):
        values = list(value)
    else:
        values = []
    return [v for v in values if isinstance(v, str) and v.strip()]


@DATASETS.register("shape_captions")
class ShapeCaptions(Source):
    """Procedural image-caption pairs; pair ``i`` is a pure function of ``(seed, i)``.

    A record is ``{"image": PIL.Image, "caption": {"en": ..., "zh": ...}, "label": int}``, where
    ``label`` indexes :attr:`class_names` (the colour), for zero-shot classification.

    Args:
        num_pairs: length of the source.
        seed: selects the stream.
        min_size: shortest side of the images in pixels (at least :data:`MIN_SHAPE_IMAGE_SIZE`).
        max_size: longest side; each image's width and height are drawn in ``[min_size, max_size]``.
        max_count: at most this many shapes (1 to 3).
        colors: palette names (of :data:`glmkit.data.procedural.SHAPE_COLORS`).
        kinds: shape kinds (of ``square``, ``circle``, ``triangle``).
    """

    def __init__(
        self,
        num_pairs: int = 100_000,
        seed: int = 0,
        min_size: int = 64,
        max_size: int = 128,
        max_count: int = 3,
        colors: Sequence[str] = tuple(SHAPE_COLORS),
        kinds: Sequence[str] = NAMED_SHAPES,
    ) -> None:
        if num_pairs < 1:
            raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
        if not MIN_SHAPE_IMAGE_SIZE <= min_size <= max_size:
            raise ValueError(
                f"need {MIN_SHAPE_IMAGE_SIZE} <= min_size <= max_size, got min_size={min_size}, "
                f"max_size={max_size} (a third of the width must hold a shape with 4 px margins)"
            )
        if not 1 <= max_count <= len(COUNTS_EN):
            raise ValueError(f"max_count must be in [1, {len(COUNTS_EN)}], got {max_count}")
        unknown = [c for c in colors if c not in SHAPE_COLORS] + [k for k in kinds if k not in SHAPES_ZH]
        if unknown or not colors or not kinds:
            raise ValueError(
                f"unknown colours or kinds {unknown}; colours: {list(SHAPE_COLORS)}, kinds: {list(SHAPES_ZH)}"
            )
        self.num_pairs = int(num_pairs)
        self.seed = int(seed)
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.max_count = int(max_count)
        self.colors = tuple(colors)
        self.kinds = tuple(kinds)

    @property
    def class_names(self) -> list[str]:
        """The names ``label`` indexes: the colours."""
        return list(self.colors)

    def __len__(self) -> int:
        return self.num_pairs

    def describe(self, index: int) -> str:
        return f"shape_captions(seed={self.seed}, index={self._check_index(index)})"

    def read(self, index: int) -> dict[str, Any]:
        """``{"image", "caption": {"en", "zh"}, "label"}`` of pair ``index``."""
        index = self._check_index(index)
        rng = np.random.default_rng([self.seed, index])
        width, height = (int(v) for v in rng.integers(self.min_size, self.max_size + 1, size=2))
        count = int(rng.integers(1, self.max_count + 1))
        color = self.colors[int(rng.integers(len(self.colors)))]
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        position = POSITIONS[int(rng.integers(len(POSITIONS)))]
        third = width // 3
        x0 = {"left": 0, "middle": third, "right": 2 * third}[position]
        # draw the group on its third of the canvas, then paste it onto a flat background
        region = shape_scene(
            rng,
            (third, height),
            count=count,
            kinds=[kind],
            palette={color: SHAPE_COLORS[color]},
            extent=(0.35, 0.6) if count == 1 else (0.2, 0.3),
            gap=2,
            background=(235, 235, 235),
            outlines=False,
        )
        image = Image.new("RGB", (width, height), (235, 235, 235))
        image.paste(region.image, (x0, 0))
        plural = "s" if count > 1 else ""
        caption = {
            "en": f"{COUNTS_EN[count - 1]} {color} {kind}{plural} {POSITIONS_EN[position]}",
            "zh": f"{POSITIONS_ZH[position]}有{COUNTS_ZH[count - 1]}个{COLORS_ZH[color]}{SHAPES_ZH[kind]}",
        }
        return {"image": image, "caption": caption, "label": self.colors.index(color)}

    def __repr__(self) -> str:
        return (
            f"ShapeCaptions(num_pairs={self.num_pairs}, seed={self.seed}, sizes=[{self.min_size}, "
            f"{self.max_size}], max_count={self.max_count}, colors={list(self.colors)}, kinds={list(self.kinds)})"
        )


@DATASETS.register("captioned")
class CaptionedSource(Source):
    """A source whose records must carry a usable caption; others are bad samples, named.

    Args:
        source: the wrapped source (``JsonlManifest(fields=[caption])``, ``TarShards``, ...).
        key: the caption field.
        languages: for ``{language: caption}`` fields, the languages to keep (``None``: all); the
            others are removed from the record, and a record with none of them non-empty is a bad
            sample. A caption without languages (a string or a list) is kept as it is.
    """

    def __init__(self, source: Source, key: str = "caption", languages: Sequence[str] | None = None) -> None:
        self.source = source
        self.key = key
        self.languages = tuple(languages) if languages is not None else None

    def __len__(self) -> int:
        return len(self.source)

    def describe(self, index: int) -> str:
        return self.source.describe(index)

    def read(self, index: int) -> dict[str, Any]:
        """The wrapped record, its caption restricted to ``languages``; :class:`BadSampleError`
        naming it if it has no non-empty caption."""
        record = self.source.read(index)
        value = record.get(self.key)
        if not caption_options(value, self.languages):
            langs = f" in languages {list(self.languages)}" if self.languages else ""
            raise BadSampleError(
                f"{self.source.describe(index)}: no non-empty caption{langs} in field {self.key!r} (got {value!r})"
            )
        if self.languages is not None and isinstance(value, dict):
            kept = {k: value[k] for k in self.languages if caption_options(value, [k])}
            record = {**record, self.key: kept}
        return record

    def __repr__(self) -> str:
        return f"CaptionedSource({self.source!r}, key={self.key!r}, languages={self.languages})"


@TRANSFORMS.register("pick_caption")
class PickCaption(Transform):
    """Replace a caption field by one caption drawn from ``rng`` (one language per sample).

    For a ``{language: caption(s)}`` field a language is drawn first, among those the record has a
    non-empty caption in (by ``weights``, else uniformly), then one of its captions uniformly; so a
    language with more captions is not drawn more often. A record with no such language is a bad
    sample (:class:`BadSampleError`), which the mixture skips.

    Args:
        key: the caption field (a string, a list, or ``{language: caption(s)}``).
        languages: the languages to draw from (``None``: all the record has).
        weights: relative weight per language in ``languages``, finite and >= 0; a language of
            weight 0 is never drawn (default: uniform over the languages present).
    """

    def __init__(
        self,
        key: str = "caption",
        languages: Sequence[str] | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        if weights is not None and (languages is None or len(weights) != len(languages)):
            raise ValueError(
                f"weights need languages, one weight per language; got languages={languages}, weights={weights}"
            )
        self.key = key
        self.languages = tuple(languages) if languages is not None else None
        self.weights = None
        if weights is not None and languages is not None:
            given = dict(zip(languages, weights, strict=True))
            for language, w in given.items():
                if not (isinstance(w, numbers.Real) and math.isfinite(w) and w >= 0):
                    raise ValueError(
                        f"weight of language {language!r} must be a finite number >= 0, got {w!r}"
                    )
            kept = {k: float(w) for k, w in given.items() if w > 0}  # a weight of 0: never drawn
            if not kept:
                raise ValueError(f"all language weights are 0: {given}")
            self.languages, self.weights = tuple(kept), tuple(kept.values())

    def __call__(self, record: dict[str, Any], rng: RandomSource = None) -> dict[str, Any]:
        rng = as_generator(rng)
        value = record.get(self.key)
        if isinstance(value, dict):
            names = self.languages if self.languages is not None else tuple(value)
            present = [i for i, k in enumerate(names) if caption_options(value, [k])]
            if not present:
                langs = f" in languages {list(names)}" if self.languages is not None else ""
                raise BadSampleError(f"no non-empty caption{langs} in field {self.key!r}: {value!r}")
            if self.weights is None:
                pick = present[int(rng.integers(len(present)))]
            else:
                p = np.array([self.weights[i] for i in present])
                pick = present[int(rng.choice(len(present), p=p / p.sum()))]
            value = value[names[pick]]
        options = caption_options(value)
        if not options:
            raise BadSampleError(f"no non-empty caption in field {self.key!r}: {value!r}")
        return {**record, self.key: options[int(rng.integers(len(options)))]}

    def __repr__(self) -> str:
        return f"PickCaption(key={self.key!r}, languages={self.languages}, weights={self.weights})"


__all__ = ["CaptionedSource", "PickCaption", "ShapeCaptions", "caption_options"]
