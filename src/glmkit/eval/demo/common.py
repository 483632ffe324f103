"""What the demo generators share: seeded draws, the scene style, words, serial codes, sample writing.

Every generator draws from one ``numpy.random.Generator`` made by :func:`demo_rng` from the seed and
the demo's own stream number, so two demos with the same seed do not repeat each other's draws.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from glmkit.data.procedural import NAMED_SHAPES, SHAPE_COLORS, ShapeScene, shape_scene

if TYPE_CHECKING:
    from PIL import Image

T = TypeVar("T")

BACKGROUND = (245, 245, 240)
"""The flat, light canvas of every demo scene."""

WORDS: tuple[str, ...] = (
    "river",
    "apple",
    "window",
    "garden",
    "silver",
    "planet",
    "orange",
    "bridge",
    "marble",
    "castle",
    "forest",
    "signal",
    "harbor",
    "lantern",
    "meadow",
    "rocket",
    "violet",
    "thunder",
    "pepper",
    "candle",
    "falcon",
    "summit",
    "velvet",
    "anchor",
    "crystal",
    "compass",
    "harvest",
    "island",
    "jigsaw",
    "kettle",
    "ladder",
    "magnet",
    "nectar",
    "oyster",
    "pillow",
    "quartz",
    "saddle",
)

# No vowels (Y included), so that a code cannot spell a word ("SEX-VAX"); no digits that read as
# vowels in leetspeak (0 O, 1 I, 3 E, 4 A), which also drops the look-alikes 0/O and 1/I.
CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ" + "256789"


def demo_rng(seed: int, stream: int) -> np.random.Generator:
    """The generator of demo ``stream`` (one number per demo) for ``seed``."""
    return np.random.default_rng([seed, stream])


def randint(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer in ``[low, high]`` (both ends included)."""
    return int(rng.integers(low, high + 1))


def choice(rng: np.random.Generator, items: Sequence[T]) -> T:
    """One element of ``items``."""
    return items[int(rng.integers(len(items)))]


def sample(rng: np.random.Generator, items: Sequence[T], k: int) -> list[T]:
    """``k`` distinct elements of ``items`` in random order."""
    return [items[int(i)] for i in rng.choice(len(items), size=k, replace=False)]


def serial_code(rng: np.random.Generator) -> str:
    """A code such as ``"K7T-9ZB"``: two groups of three characters from :data:`CODE_ALPHABET`."""
    chars = [choice(rng, CODE_ALPHABET) for _ in range(6)]
    return "".join(chars[:3]) + "-" + "".join(chars[3:])


def demo_scene(
    rng: np.random.Generator, size: tuple[int, int], count: int, *, unique_first: bool = True
) -> ShapeScene:
    """Named shapes (square, circle, triangle in :data:`~glmkit.data.procedural.SHAPE_COLORS`),
    whole and 6 px apart on a light canvas; ``shapes[0]`` is unique in colour and kind by default."""
    return shape_scene(
        rng,
        size,
        count=count,
        kinds=NAMED_SHAPES,
        palette=SHAPE_COLORS,
        extent=(0.07, 0.2),
        gap=6,
        background=BACKGROUND,
        outlines=False,
        unique_first=unique_first,
    )


def pixel_box(box: Sequence[float]) -> list[int]:
    """A scene box as the integer pixel box the answers hold."""
    return [round(v) for v in box]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as JSON Lines (UTF-8, one object per line) and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


class DemoSamples:
    """One demo's samples as they are made: each image saved under ``out_dir/images``, each row kept
    for the benchmark JSONL that :meth:`write` writes.

    Args:
        out_dir: the demo's data folder; ``images`` and each of ``subdirs`` are created in it.
        subdirs: further folders the demo writes (``"masks"``, ``"pages"``).
    """

    def __init__(self, out_dir: Path, *subdirs: str) -> None:
        self.out_dir = Path(out_dir)
        for sub in ("images", *subdirs):
            (self.out_dir / sub).mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        sample_id: str,
        image: Image.Image,
        question: str,
        answer: Any,
        category: str,
        metadata: dict[str, Any] | None = None,
        *,
        image_stem: str | None = None,
    ) -> None:
        """Save ``image`` as ``images/<image_stem>.png`` (by default the id with ``_`` for ``-``) and
        keep the sample's row; ``metadata.image_size`` is set to the saved image's (width, height)."""
        name = f"images/{image_stem or sample_id.replace('-', '_')}.png"
        image.save(self.out_dir / name)
        self.rows.append(
            {
                "id": sample_id,
                "question": question,
                "images": [name],
                "answer": answer,
                "category": category,
                "metadata": {**(metadata or {}), "image_size": list(image.size)},
            }
        )

    def write(self, benchmark: str) -> Path:
        """Write the rows to ``out_dir/<benchmark>.jsonl`` and return its path."""
        return write_jsonl(self.out_dir / f"{benchmark}.jsonl", self.rows)
