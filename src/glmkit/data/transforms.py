"""Deterministic record transforms; the image ones for fixed-resolution training (stage 1, 224x224).

A transform maps ``(record, rng) -> record``, where ``rng`` is a NumPy ``Generator``, an integer
seed, a ``torch.Generator`` or ``None``: every random choice comes from it, never from a global
RNG, so a sample's augmentation is reproducible from its index alone (what exact resume and
any-order loading need). An :class:`ImageTransform` rewrites one field of the record (``image`` by
default) and leaves the others as they are; its :meth:`ImageTransform.apply` maps a PIL image to
a float tensor ``[3, H, W]`` in ``[0, 1]``. Normalisation is left to each teacher's and the
student's own preprocessing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from glmkit.registry import declare

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

RandomSource = np.random.Generator | int | torch.Generator | None


def as_generator(rng: RandomSource) -> np.random.Generator:
    """A NumPy generator from a generator, a seed, a ``torch.Generator`` or ``None`` (seed 0)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=rng)))
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, int | np.integer):
        return np.random.default_rng(int(rng))
    raise TypeError(f"expected a numpy Generator, an int seed or a torch.Generator, got {type(rng).__name__}")


def _resample(name: str) -> Image.Resampling:
    try:
        return _RESAMPLE[name]
    except KeyError:
        raise ValueError(f"unknown interpolation {name!r}; valid: {', '.join(_RESAMPLE)}") from None


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> contiguous float tensor ``[3, H, W]`` in ``[0, 1]``."""
    array = np.asarray(image.convert("RGB") if image.mode != "RGB" else image, dtype=np.uint8)
    # NumPy, not torch: single-threaded and steady in the main process of a busy 2-core machine,
    # where torch's intra-op threads can turn a 0.2 ms conversion into tens of milliseconds.
    chw = np.ascontiguousarray(array.transpose(2, 0, 1)).astype(np.float32)  # H W C -> C H W
    chw /= np.float32(255.0)
    return torch.from_numpy(chw)


def random_resized_crop_box(
    width: int,
    height: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[int, int, int, int]:
    """A crop box ``(left, top, right, bottom)`` covering a random area fraction in ``scale`` with an
    aspect ratio in ``ratio`` (log-uniform), as in Inception-style RandomResizedCrop; after ten
    misses it falls back to the largest centred crop with a clamped aspect ratio."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


Record = dict[str, Any]


class Transform:
    """Base class of record transforms: ``transform(record, rng) -> record``."""

    def __call__(self, record: Record, rng: RandomSource = None) -> Record:
        raise NotImplementedError


TRANSFORMS = declare("transforms", "record transforms: (record, rng) -> record", base=Transform)


class ImageTransform(Transform):
    """Base of the transforms that rewrite one image field of a record (``key``, default ``image``).

    Subclasses implement :meth:`apply` on the image; calling the transform on a record returns a
    new record with that field replaced.
    """

    key: str = "image"

    def apply(self, image: Image.Image, rng: RandomSource = None) -> torch.Tensor:
        """The transformed image."""
        raise NotImplementedError

    def __call__(self, record: Record, rng: RandomSource = None) -> Record:
        if not isinstance(record, dict):
            raise TypeError(
                f"{type(self).__name__} maps a record dict to a record; got {type(record).__name__} "
                "(call .apply(image, rng) on a bare image)"
            )
        if self.key not in record:
            raise KeyError(
                f"{type(self).__name__}: the record has no {self.key!r} field; it has {sorted(record)}"
            )
        return {**record, self.key: self.apply(record[self.key], rng)}


@TRANSFORMS.register("to_tensor")
class ToTensor(ImageTransform):
    """The image field as a float tensor ``[3, H, W]`` in ``[0, 1]``, unchanged otherwise.

    Args:
        key: the record field holding the image.
    """

    def __init__(self, key: str = "image") -> None:
        self.key = key

    def apply(self, image: Image.Image, rng: RandomSource = None) -> torch.Tensor:
        """The image as a tensor."""
        return to_tensor(image)


@TRANSFORMS.register("compose")
class Compose(Transform):
    """Apply record transforms in order, all drawing from the same ``rng``.

    Args:
        transforms: the transforms, first applied first.
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, record: Record, rng: RandomSource = None) -> Record:
        rng = as_generator(rng)
        for transform in self.transforms:
            record = transform(record, rng)
        return record

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


@TRANSFORMS.register("train_crop")
class TrainTransform(ImageTransform):
    """RandomResizedCrop to ``image_size`` plus a random horizontal flip, seeded per sample.

    Args:
        image_size: output side (224 in GLM-5V-Turbo stage 1).
        scale: range of the crop's area as a fraction of the image.
        ratio: range of the crop's aspect ratio (width / height).
        hflip: probability of a horizontal flip.
        interpolation: ``bilinear``, ``bicubic``, ``lanczos`` or ``nearest``.
        key: the record field holding the image.
    """

    def __init__(
        self,
        image_size: int = 224,
        scale: tuple[float, float] = (0.4, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        interpolation: str = "bicubic",
        key: str = "image",
    ) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"crop scale must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"crop ratio must satisfy 0 < min <= max, got {tuple(ratio)}")
        if not 0 <= hflip <= 1:
            raise ValueError(f"hflip is a probability in [0, 1], got {hflip}")
        self.image_size = int(image_size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hflip = float(hflip)
        self.interpolation = interpolation
        self.key = key
        self._resample = _resample(interpolation)

    def apply(self, image: Image.Image, rng: RandomSource = None) -> torch.Tensor:
        """Crop, resize and maybe flip ``image``, every choice drawn from ``rng``."""
        rng = as_generator(rng)
        box = random_resized_crop_box(image.width, image.height, self.scale, self.ratio, rng)
        # One resize with a box crops and resamples in a single pass (antialiased when shrinking).
        out = image.resize((self.image_size, self.image_size), self._resample, box=box)
        if rng.random() < self.hflip:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(out)

    def __repr__(self) -> str:
        return (
            f"TrainTransform(image_size={self.image_size}, scale={self.scale}, ratio={self.ratio}, "
            f"hflip={self.hflip}, interpolation={self.interpolation!r})"
        )


@TRANSFORMS.register("eval_crop")
class EvalTransform(ImageTransform):
    """Resize the shorter side to ``image_size / crop_pct`` and take the centred square.

    The ``rng`` argument is accepted and ignored, so train and eval transforms are interchangeable.

    Args:
        image_size: output side.
        crop_pct: fraction of the resized shorter side kept by the centre crop (timm convention;
            1.0 keeps the whole shorter side).
        interpolation: ``bilinear``, ``bicubic``, ``lanczos`` or ``nearest``.
        key: the record field holding the image.
    """

    def __init__(
        self, image_size: int = 224, crop_pct: float = 1.0, interpolation: str = "bicubic", key: str = "image"
    ) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        self.image_size = int(image_size)
        self.crop_pct = float(crop_pct)
        self.interpolation = interpolation
        self.key = key
        self._resample = _resample(interpolation)

    def apply(self, image: Image.Image, rng: RandomSource = None) -> torch.Tensor:
        """The centred, resized square of ``image``."""
        width, height = image.size
        # Same as resizing the shorter side to image_size / crop_pct and centre-cropping image_size,
        # done as one crop-and-resample in source pixels.
        side = min(width, height) * self.crop_pct
        left, top = (width - side) / 2, (height - side) / 2
        box = (left, top, left + side, top + side)
        return to_tensor(image.resize((self.image_size, self.image_size), self._resample, box=box))

    def __repr__(self) -> str:
        return (
            f"EvalTransform(image_size={self.image_size}, crop_pct={self.crop_pct}, "
            f"interpolation={self.interpolation!r})"
        )
