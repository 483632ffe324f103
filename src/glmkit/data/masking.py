"""Token mask generators for masked image modelling (CogViT stage 1, GLM-5V-Turbo section 2.1).

Stage 1 replaces 35% of the student's patch tokens with a mask token and distils the teachers'
features at those positions. A generator is called as ``mask_gen(batch_size, grid_size, generator)``
and returns a ``BoolTensor [B, h*w]`` (row-major over the patch grid, True = masked) with exactly
``round(ratio * h * w)`` True per row, so masked-token tensors keep a static shape.

:class:`DrawMask` is the record transform that draws one image's mask in the data workers (block
masks cost about 16 ms per 256-image step on the training process otherwise); its draw comes from
the sample's own generator, so a mask is a pure function of (seed, epoch, index) like the crop.
"""

from __future__ import annotations

import math
import numbers
import random
from abc import ABC, abstractmethod

import numpy as np
import torch

from glmkit.data.transforms import TRANSFORMS, RandomSource, Record, Transform, as_generator
from glmkit.registry import declare


def _check_ratio(ratio: float) -> float:
    if not isinstance(ratio, numbers.Real) or isinstance(ratio, bool) or not 0 < ratio < 1:
        raise ValueError(f"mask ratio must be a number strictly between 0 and 1, got {ratio!r}")
    return float(ratio)


def _check_grid(batch_size: int, grid_size: tuple[int, int]) -> tuple[int, int]:
    if batch_size < 0:
        raise ValueError(f"batch_size must be >= 0, got {batch_size}")
    try:
        h, w = (int(v) for v in grid_size)
    except (TypeError, ValueError):
        raise ValueError(f"grid_size must be a pair (height, width) of patches, got {grid_size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"grid_size must be positive, got {tuple(grid_size)}")
    return h, w


class MaskGenerator(ABC):
    """Base class: a fixed masking ratio and an exact per-row count."""

    def __init__(self, ratio: float = 0.35) -> None:
        self.ratio = _check_ratio(ratio)

    def num_masked(self, grid_size: tuple[int, int]) -> int:
        """Number of masked tokens per image on a ``grid_size`` patch grid: ``round(ratio * h * w)``."""
        h, w = _check_grid(1, grid_size)
        count = round(self.ratio * h * w)
        if count == 0:  # the loss over masked tokens would be a mean over nothing: NaN
            raise ValueError(
                f"mask ratio {self.ratio} masks no token of a {h}x{w} patch grid; raise the ratio to at "
                f"least {1 / (h * w):.3g} or use larger images"
            )
        return count

    @abstractmethod
    def __call__(
        self, batch_size: int, grid_size: tuple[int, int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``BoolTensor [batch_size, h*w]``, True = masked."""


MASKINGS = declare("maskings", "token mask generators for masked image modelling", base=MaskGenerator)


@MASKINGS.register("random")
class RandomMask(MaskGenerator):
    """Uniformly random positions (MAE/SimMIM style): exactly ``round(ratio * h * w)`` per row.

    Args:
        ratio: fraction of tokens to mask, 0 < ratio < 1 (0.35 in GLM-5V-Turbo stage 1).
    """

    def __call__(
        self, batch_size: int, grid_size: tuple[int, int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        h, w = _check_grid(batch_size, grid_size)
        count = self.num_masked((h, w))
        noise = torch.rand(batch_size, h * w, generator=generator)  # B, N
        chosen = noise.argsort(dim=1)[:, :count]
        mask = torch.zeros(batch_size, h * w, dtype=torch.bool)
        return mask.scatter_(1, chosen, True)

    def __repr__(self) -> str:
        return f"RandomMask(ratio={self.ratio})"


@MASKINGS.register("block")
class BlockMask(MaskGenerator):
    """Block-wise masking (BEiT, arXiv 2106.08254, Algorithm 1), with an exact count.

    Rectangles of ``min_block`` .. ``max_block`` patches and aspect ratio in
    ``[1/max_aspect, max_aspect]`` (log-uniform) are added while they fit within the remaining
    budget; when no rectangle fits any more, random unmasked positions top the row up to exactly
    ``round(ratio * h * w)``. Masked regions are contiguous, so the student cannot fill them in from
    immediate neighbours alone.

    Args:
        ratio: fraction of tokens to mask, 0 < ratio < 1.
        min_block: smallest rectangle, in patches.
        max_aspect: largest aspect ratio of a rectangle (>= 1).
        max_block: largest rectangle in patches; ``None`` means the whole remaining budget.
    """

    def __init__(
        self, ratio: float = 0.35, min_block: int = 4, max_aspect: float = 3.0, max_block: int | None = None
    ) -> None:
        super().__init__(ratio)
        if min_block < 1:
            raise ValueError(f"min_block must be >= 1 patch, got {min_block}")
        if not max_aspect >= 1:
            raise ValueError(f"max_aspect must be >= 1, got {max_aspect}")
        if max_block is not None and max_block < min_block:
            raise ValueError(f"max_block ({max_block}) must be >= min_block ({min_block})")
        self.min_block = int(min_block)
        self.max_aspect = float(max_aspect)
        self.max_block = max_block

    def __call__(
        self, batch_size: int, grid_size: tuple[int, int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        h, w = _check_grid(batch_size, grid_size)
        count = self.num_masked((h, w))
        # One seed per row from the torch generator; the rectangle loop itself runs on Python's
        # scalar RNG, which is far cheaper per draw than torch or NumPy.
        seeds = torch.randint(0, 2**62, (batch_size,), generator=generator).tolist()
        rows = [self._row(h, w, count, random.Random(seed)) for seed in seeds]
        if not rows:
            return torch.zeros(0, h * w, dtype=torch.bool)
        return torch.from_numpy(np.stack(rows).reshape(batch_size, h * w))

    def _row(self, h: int, w: int, count: int, rng: random.Random) -> np.ndarray:
        mask = np.zeros((h, w), dtype=bool)
        masked = 0
        log_aspect = math.log(self.max_aspect)
        while masked < count:
            budget = count - masked
            if self.max_block is not None:
                budget = min(budget, self.max_block)
            added = 0
            for _ in range(10):
                area = rng.uniform(self.min_block, max(budget, self.min_block))
                aspect = math.exp(rng.uniform(-log_aspect, log_aspect))
                bh = round(math.sqrt(area * aspect))
                bw = round(math.sqrt(area / aspect))
                if not (0 < bh <= h and 0 < bw <= w):
                    continue
                top = rng.randint(0, h - bh)
                left = rng.randint(0, w - bw)
                window = mask[top : top + bh, left : left + bw]
                new = bh * bw - int(window.sum())
                if 0 < new <= budget:  # never overshoot the exact count
                    window[...] = True
                    added = new
                    break
            if added == 0:
                break
            masked += added
        if masked < count:  # top up: no rectangle fits the small remainder
            free = np.flatnonzero(~mask.reshape(-1))
            extra = rng.sample(free.tolist(), count - masked)
            mask.reshape(-1)[extra] = True
        return mask

    def __repr__(self) -> str:
        return (
            f"BlockMask(ratio={self.ratio}, min_block={self.min_block}, max_aspect={self.max_aspect}, "
            f"max_block={self.max_block})"
        )


@TRANSFORMS.register("draw_mask")
class DrawMask(Transform):
    """Record transform: add the masked-image-modelling token mask of the record's image.

    Put it after the crop (``Compose([TrainTransform(...), DrawMask(...)])``): the record gains
    ``key``, a ``BoolTensor [h*w]`` over the image's patch grid (``H / patch_size`` by
    ``W / patch_size``, row-major, True = masked), drawn by ``masking`` from the sample's
    generator. The collate stacks it to ``[B, h*w]``, which :class:`~glmkit.stages.MIMDistill`
    uses instead of drawing a mask itself.

    Args:
        masking: the mask generator (``BlockMask(0.35)`` in the real stage-1 recipe).
        patch_size: the student's patch size in pixels.
        image_key: the record field with the image tensor ``[C, H, W]``.
        key: the record field the mask is written to.
    """

    def __init__(
        self, masking: MaskGenerator, patch_size: int = 16, image_key: str = "image", key: str = "mask"
    ) -> None:
        if patch_size < 1:
            raise ValueError(f"DrawMask: patch_size must be >= 1, got {patch_size}")
        self.masking = masking
        self.patch_size = int(patch_size)
        self.image_key = image_key
        self.key = key

    def __call__(self, record: Record, rng: RandomSource = None) -> Record:
        image = record.get(self.image_key)
        if not isinstance(image, torch.Tensor) or image.ndim != 3:
            raise TypeError(
                f"DrawMask needs the record's {self.image_key!r} field as a tensor [C, H, W]; put it after "
                f"the crop transform (got {type(image).__name__})"
            )
        height, width = image.shape[-2:]
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"DrawMask: image {height}x{width} is not a whole number of {p}-pixel patches")
        # one torch seed from the sample's NumPy stream: the mask is a pure function of the sample
        seed = int(as_generator(rng).integers(0, 2**62))
        mask = self.masking(1, (height // p, width // p), generator=torch.Generator().manual_seed(seed))
        return {**record, self.key: mask[0]}

    def __repr__(self) -> str:
        return f"DrawMask({self.masking!r}, patch_size={self.patch_size}, key={self.key!r})"
