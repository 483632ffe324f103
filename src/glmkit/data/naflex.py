"""NaFlex inputs: images at their own aspect ratio under a patch budget, padded or packed on a
schedule that is the same on every rank.

GLM-5V-Turbo section 2.1 trains CogViT's second stage on NaFlex inputs (SigLIP2, arXiv 2502.14786;
NaViT, arXiv 2307.06304): each image keeps its aspect ratio, is resized so that its patch grid fits a
budget, and enters the encoder as a sequence of patches with their ``(y, x)`` grid coordinates.

**Resize rule** (:func:`naflex_grid`, :func:`naflex_size`). The image is scaled by the largest
factor ``s`` whose grid ``(ceil(s*h/P), ceil(s*w/P))`` holds at most ``max_num_patches`` patches;
each side is then that many patches. This is the rule of HF ``Siglip2ImageProcessor``
(``get_image_size_for_max_num_patches``), big_vision's NaFlex ops and timm's
``get_image_size_for_seq``, with their bisection on ``s``, so every image gets their size.

**Record transforms** (registered in ``TRANSFORMS``). :class:`NaFlexResize` (evaluation) and
:class:`NaFlexRandomResizedCrop` (training; every choice drawn from the transform's ``rng``) replace
the record's image field by

- ``patches``: ``[n, P*P*C]`` float in ``[0, 1]``, each patch flattened in (ph, pw, C) order, patches
  row-major over the grid, exactly as HF SigLIP2 lays them out (:func:`glmkit.nn.patch_embed.patchify`);
- ``coords``: ``[n, 2]`` int64 ``(y, x)`` grid index of each patch;
- ``grid``: ``[2]`` int64 ``(rows, columns)``; ``n = rows * columns <= max_num_patches``.

Normalisation is left to the stage, as for every glmkit image transform (SigLIP2's is
``(x - 0.5) / 0.5``; a patch's channel is its fastest axis, so ``patches.view(..., -1, C)``
normalises per channel).

**Batching.** A collate gets the validity mask:

- padded: :class:`glmkit.data.collate.PadCollate` with ``pad_keys=("patches", "coords")`` and
  ``multiple`` = the bucket length gives ``patches [B, L, P*P*C]``, ``coords [B, L, 2]`` and
  ``patches_valid [B, L]`` (False at padding);
- packed: :class:`glmkit.data.collate.PackCollate` puts several images back to back in rows of ``row_len``
  positions and gives ``patches_seq_lens [R, S]``, CogViT's ``seq_lens`` (each image attends only to
  itself; 0 marks an empty slot), and ``patches_valid [R, L]``.

:func:`encoder_inputs` turns either batch into the keyword arguments of a
:class:`~glmkit.models.encoders.VisionEncoder`.

**Schedule** (:class:`NaFlexSchedule`). Cross-rank exchanges (the SigLIP loss sends text
embeddings around the ring, and the receive buffer has the sender's shape) need every rank to hold
the same shapes at every step. The schedule fixes, from the seed alone, each step's layout
(:class:`NaFlexStep`: rows, row length, and the patch budget of every image): *pad* steps have a
bucket length ``L`` and ``max_tokens_per_batch // L`` images padded to ``L`` (timm's NaFlex
loader); *pack* steps fill ``max_tokens_per_batch // row_len`` rows first-fit with images whose
budgets are bucket lengths. Each bucket gets its share (``seq_len_probs``) of the patches. A
canonical list of steps is made once from ``seed``; each epoch plays it in an order drawn from
``(seed, epoch)``, so every epoch has the same number of steps and every rank the same layout at
each step.

**Loading and exact resume.** :class:`NaFlexBatches` makes each *batch* one item of a map-style
dataset: item ``(epoch, p)`` is step ``p // W`` of rank ``p % W`` (``W`` ranks), its samples read
from the underlying dataset (a :class:`~glmkit.data.mixture.Mixture`, keyed ``(epoch, index)``),
resized to their budgets and collated. :func:`naflex_loader` serves it with the existing
:class:`~glmkit.data.loader.ResumableSampler` (``shuffle=False``: rank ``r`` reads positions
``r, r + W, ...``, so its ``k``-th item is step ``k``) and
:class:`~glmkit.data.loader.ResumableDataLoader` with ``batch_size=1``: the loader's batch count is
then the number of steps taken, and resuming skips exactly those sampler positions. Every item is a
pure function of its key, so a resumed run sees the batches an uninterrupted one would have. A
DataModule's ``train_dataloader`` is::

    schedule = NaFlexSchedule(samples_per_epoch, mode="pack", seq_lens=(256, 576, 1024),
                              max_tokens_per_batch=16384, num_replicas=world_size, seed=seed)
    mixture = Mixture(sources, weights, transform=None, seed=seed, num_samples=samples_per_epoch)
    batches = NaFlexBatches(mixture, schedule, NaFlexRandomResizedCrop(patch_size=16))
    return naflex_loader(batches, rank=rank, num_workers=num_workers)

(``schedule.num_replicas`` must be the trainer's data-parallel size; Lightning keeps a
``ResumableSampler`` because it is a ``DistributedSampler``.) Without a schedule, one fixed budget
(HF SigLIP2's setting, or validation) needs nothing new: ``NaFlexResize(max_num_patches=256)`` as
the mixture's transform and ``PadCollate(("patches", "coords"), multiple=256)`` in
``MixtureDataModule``.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from glmkit.data.collate import PackCollate, PadCollate
from glmkit.data.loader import ResumableDataLoader, ResumableSampler
from glmkit.data.transforms import (
    TRANSFORMS,
    RandomSource,
    Record,
    Transform,
    _resample,
    as_generator,
    random_resized_crop_box,
    to_tensor,
)
from glmkit.nn.patch_embed import patchify

Mode = Literal["pack", "pad"]

# Entropy words that keep NaFlex's random streams apart from the mixture's (which seeds with
# [seed, stream, epoch, index]) and from each other.
_SAMPLE_STREAM, _STEP_STREAM, _ORDER_STREAM = 0x4E46_0001, 0x4E46_0002, 0x4E46_0003


# ---------------------------------------------------------------------------------------- resize rule
# The bisection of HF SigLIP2, big_vision and timm: scales in [_SCALE_LOW, _SCALE_HIGH], halved until
# the bracket is narrower than _SCALE_EPS. Kept as they have it so that every image gets their grid.
_SCALE_EPS = 1e-5
_SCALE_LOW, _SCALE_HIGH = _SCALE_EPS / 10, 100.0


def _grid_at(scale: float, height: int, width: int, patch_size: int) -> tuple[int, int]:
    return max(1, math.ceil(height * scale / patch_size)), max(1, math.ceil(width * scale / patch_size))


def naflex_grid(
    height: int,
    width: int,
    patch_size: int = 16,
    max_num_patches: int = 256,
    max_upscale: float | None = None,
) -> tuple[int, int]:
    """The patch grid ``(rows, columns)`` of an image of ``height x width`` pixels under the NaFlex rule.

    Rows and columns are ``ceil(s * height / P)`` and ``ceil(s * width / P)`` (at least 1) for the
    largest scale ``s`` whose grid holds at most ``max_num_patches`` patches, found as HF SigLIP2,
    big_vision and timm find it: bisection of ``s`` over ``[1e-6, 100]`` down to a bracket of 1e-5.
    (A grid whose range of scales is narrower than that, about one image in 10^4 for large images
    and small patches, is missed for the next smaller one; keeping the same bisection keeps their
    grids.) With ``max_upscale`` the scale is capped there (timm's ``max_ratio``).

    Args:
        height: image height in pixels.
        width: image width in pixels.
        patch_size: patch side ``P`` in pixels.
        max_num_patches: the patch budget.
        max_upscale: largest allowed scale factor (``1.0``: never upsample); None for no cap.
    """
    for name, value in (("height", height), ("width", width), ("patch_size", patch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    _check_budget(max_num_patches)
    if max_upscale is not None and not (math.isfinite(max_upscale) and max_upscale > 0):
        raise ValueError(f"max_upscale must be a positive number or None, got {max_upscale!r}")
    low, high = _SCALE_LOW, _SCALE_HIGH  # the grid at `low` always fits
    while high - low >= _SCALE_EPS:
        mid = (low + high) / 2
        rows, cols = _grid_at(mid, height, width, patch_size)
        if rows * cols <= max_num_patches:
            low = mid
        else:
            high = mid
    if max_upscale is not None:
        low = min(low, float(max_upscale))
    return _grid_at(low, height, width, patch_size)


def naflex_size(
    height: int,
    width: int,
    patch_size: int = 16,
    max_num_patches: int = 256,
    max_upscale: float | None = None,
) -> tuple[int, int]:
    """The resized ``(height, width)`` in pixels: :func:`naflex_grid` times ``patch_size``.

    The same size as HF ``get_image_size_for_max_num_patches(height, width, patch_size,
    max_num_patches)`` and timm's ``get_image_size_for_seq``; arguments as in :func:`naflex_grid`.
    """
    rows, cols = naflex_grid(height, width, patch_size, max_num_patches, max_upscale)
    return rows * patch_size, cols * patch_size


# ------------------------------------------------------------------------------------- transforms
@TRANSFORMS.register("naflex_resize")
class NaFlexResize(Transform):
    """Resize an image to the NaFlex grid of ``max_num_patches`` and cut it into patches.

    The record's image field (a PIL image) is replaced by ``patches [n, P*P*C]`` (float in
    ``[0, 1]``, (ph, pw, C) order, row-major over the grid), ``coords [n, 2]`` (int64 ``(y, x)``)
    and ``grid [2]`` (int64 rows, columns); other fields pass through. With
    ``interpolation="bilinear"`` the patches are those of HF ``Siglip2ImageProcessor`` (PIL
    backend) before its ``(x - 0.5) / 0.5`` normalisation. The ``rng`` is accepted and unused.

    Args:
        patch_size: patch side ``P`` in pixels (the encoder's).
        max_num_patches: the patch budget ``n`` may not exceed (256 in SigLIP2's default).
        max_upscale: largest scale factor applied to the image (``1.0`` keeps small images at their
            native resolution, so they use fewer patches); None lets every image fill the budget,
            as HF SigLIP2 does.
        interpolation: ``bilinear`` (SigLIP2's), ``bicubic``, ``lanczos`` or ``nearest``.
        key: the record field holding the image.
    """

    def __init__(
        self,
        patch_size: int = 16,
        max_num_patches: int = 256,
        max_upscale: float | None = None,
        interpolation: str = "bilinear",
        key: str = "image",
    ) -> None:
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        _check_budget(max_num_patches)
        if max_upscale is not None and not max_upscale > 0:
            raise ValueError(f"max_upscale must be > 0 or None, got {max_upscale}")
        self.patch_size = int(patch_size)
        self.max_num_patches = int(max_num_patches)
        self.max_upscale = None if max_upscale is None else float(max_upscale)
        self.interpolation = interpolation
        self.key = key
        self._resample = _resample(interpolation)

    def with_budget(self, max_num_patches: int) -> NaFlexResize:
        """A copy of this transform with another patch budget (what a batch schedule assigns)."""
        _check_budget(max_num_patches)
        out = copy.copy(self)
        out.max_num_patches = int(max_num_patches)
        return out

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The patch grid an image (or crop) of ``height x width`` pixels gets."""
        return naflex_grid(height, width, self.patch_size, self.max_num_patches, self.max_upscale)

    def __call__(self, record: Record, rng: RandomSource = None) -> Record:
        image = self._image(record)
        rows, cols = self.grid(image.height, image.width)
        out = image.resize((cols * self.patch_size, rows * self.patch_size), self._resample)
        return self._patchify(record, out)

    def _image(self, record: Record) -> Image.Image:
        if not isinstance(record, dict):
            raise TypeError(
                f"{type(self).__name__} maps a record dict to a record; got {type(record).__name__}"
            )
        if self.key not in record:
            raise KeyError(
                f"{type(self).__name__}: the record has no {self.key!r} field; it has {sorted(record)}"
            )
        image = record[self.key]
        if not isinstance(image, Image.Image):
            raise TypeError(
                f"{type(self).__name__}: record field {self.key!r} must be a PIL image (as sources read "
                f"it), got {type(image).__name__}; put NaFlex transforms before ToTensor"
            )
        return image

    def _patchify(self, record: Record, image: Image.Image) -> Record:
        cut = patchify(to_tensor(image)[None], self.patch_size)  # 1, n, P*P*C
        fields = {
            "patches": cut.patches[0],
            "coords": cut.coords[0].clone(),  # an expanded view in patchify; own storage here
            "grid": torch.tensor(cut.grid_size, dtype=torch.long),
        }
        return {**{k: v for k, v in record.items() if k != self.key}, **fields}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(patch_size={self.patch_size}, max_num_patches={self.max_num_patches}, "
            f"max_upscale={self.max_upscale}, interpolation={self.interpolation!r})"
        )


@TRANSFORMS.register("naflex_train_crop")
class NaFlexRandomResizedCrop(NaFlexResize):
    """A random crop, resized to its NaFlex grid and cut into patches (training).

    The crop covers a fraction of the image's area drawn from ``scale`` and has an aspect ratio of
    the image's own times a factor drawn log-uniformly from ``ratio`` (relative, as in timm's
    ``RandomResizedCropToSequence``, so a panorama stays a panorama); after ten misses it is the
    whole image. The crop is then resized to the grid of its own size under ``max_num_patches``
    (one resampling pass) and flipped horizontally with probability ``hflip``. Every choice comes
    from ``rng``. The output fields are those of :class:`NaFlexResize`.

    Args:
        patch_size: patch side ``P`` in pixels.
        max_num_patches: the patch budget.
        scale: range of the crop's area as a fraction of the image's.
        ratio: range of the factor applied to the image's aspect ratio (width / height).
        hflip: probability of a horizontal flip (0 by default: captions name left and right).
        max_upscale: largest scale factor applied to the crop; None for none.
        interpolation: ``bilinear``, ``bicubic``, ``lanczos`` or ``nearest``.
        key: the record field holding the image.
    """

    def __init__(
        self,
        patch_size: int = 16,
        max_num_patches: int = 256,
        scale: tuple[float, float] = (0.4, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.0,
        max_upscale: float | None = None,
        interpolation: str = "bilinear",
        key: str = "image",
    ) -> None:
        super().__init__(patch_size, max_num_patches, max_upscale, interpolation, key)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"crop scale must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
        if not 0 < ratio[0] <= 1 <= ratio[1]:
            raise ValueError(f"crop ratio factors must satisfy 0 < min <= 1 <= max, got {tuple(ratio)}")
        if not 0 <= hflip <= 1:
            raise ValueError(f"hflip is a probability in [0, 1], got {hflip}")
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hflip = float(hflip)

    def __call__(self, record: Record, rng: RandomSource = None) -> Record:
        image = self._image(record)
        rng = as_generator(rng)
        aspect = image.width / image.height
        ratio = (self.ratio[0] * aspect, self.ratio[1] * aspect)  # relative to the image's own
        box = random_resized_crop_box(image.width, image.height, self.scale, ratio, rng)
        rows, cols = self.grid(box[3] - box[1], box[2] - box[0])
        out = image.resize((cols * self.patch_size, rows * self.patch_size), self._resample, box=box)
        if self.hflip and rng.random() < self.hflip:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return self._patchify(record, out)

    def __repr__(self) -> str:
        return (
            f"NaFlexRandomResizedCrop(patch_size={self.patch_size}, max_num_patches={self.max_num_patches}, "
            f"scale={self.scale}, ratio={self.ratio}, hflip={self.hflip}, max_upscale={self.max_upscale}, "
            f"interpolation={self.interpolation!r})"
        )


def _check_budget(max_num_patches: Any) -> None:
    if (
        isinstance(max_num_patches, bool)
        or not isinstance(max_num_patches, numbers.Integral)
        or max_num_patches < 1
    ):
        raise ValueError(f"max_num_patches must be a positive integer, got {max_num_patches!r}")


# ---------------------------------------------------------------------------------------- collate
def encoder_inputs(
    batch: dict[str, Any], key: str = "patches", coords_key: str = "coords"
) -> dict[str, Tensor]:
    """The encoder keyword arguments of a NaFlex batch: ``patches``, ``coords`` and ``seq_lens``
    (packed, :class:`PackCollate`) or ``valid`` (padded, ``PadCollate``)."""
    missing = [k for k in (key, coords_key) if k not in batch]
    if missing:
        raise KeyError(f"not a NaFlex batch: no field(s) {missing}; it has {sorted(batch)}")
    out = {"patches": batch[key], "coords": batch[coords_key]}
    if f"{key}_seq_lens" in batch:
        out["seq_lens"] = batch[f"{key}_seq_lens"]
    elif f"{key}_valid" in batch:
        out["valid"] = batch[f"{key}_valid"]
    return out


# --------------------------------------------------------------------------------------- schedule
@dataclass(frozen=True)
class NaFlexStep:
    """The layout of one step's batch on every rank.

    Attributes:
        row_len: positions per row (the padded length ``L``, or a packed row's capacity).
        rows: the patch budget of each image, row by row. A padded step has one image per row,
            with budget ``row_len``; a packed row's budgets sum to at most ``row_len``.
        packed: whether rows hold several images (collated by :class:`PackCollate`).
    """

    row_len: int
    rows: tuple[tuple[int, ...], ...]
    packed: bool

    @property
    def num_images(self) -> int:
        """Images per rank in this step."""
        return sum(len(row) for row in self.rows)

    @property
    def num_rows(self) -> int:
        """Rows ``B`` (padded: images) of the batch."""
        return len(self.rows)

    @property
    def num_slots(self) -> int:
        """Columns ``S`` of a packed batch's ``seq_lens`` (the most images in a row)."""
        return max(len(row) for row in self.rows)

    @property
    def num_tokens(self) -> int:
        """Patch positions computed per rank (``rows x row_len``), padding included."""
        return self.num_rows * self.row_len


class NaFlexSchedule:
    """The seeded (layout, samples) plan of every step of every epoch, the same on every rank.

    Per rank a step computes at most ``max_tokens_per_batch`` patch positions:

    - ``mode="pad"`` (timm's NaFlex loader): a step has a bucket length ``L`` from ``seq_lens``
      and holds ``max_tokens_per_batch // L`` images (rounded down to a multiple of
      ``batch_divisor``), each resized to at most ``L`` patches and padded to ``L``;
    - ``mode="pack"``: a step has ``max_tokens_per_batch // row_len`` rows, filled first-fit with
      images whose budgets come from ``seq_lens`` (a budget that fits no row waits for the next
      step); the step closes when no row has room for the smallest bucket. :class:`NaFlexBatches`
      passes each image's unused budget on to the next image of its row and the rest of the row
      to its last image, no image above the largest bucket, so rows end nearly full.

    In both modes ``seq_len_probs`` is the share of an epoch's patches at each bucket: each step
    (pad) or image (pack) takes the bucket furthest below its share so far, ties drawn from the
    seed; so both modes, and any two seeds, train on the same mix of resolutions.

    ``len(schedule)`` steps use ``num_replicas * (num_samples // num_replicas)`` samples per epoch,
    each once (the last step may be smaller; it is the same smaller step on every rank). The
    canonical steps are drawn once from ``seed``; epoch ``e`` plays them in an order drawn from
    ``(seed, e)``. Step ``s`` of rank ``r`` reads positions ``[o + r k, o + (r + 1) k)`` of the
    epoch's sample order, ``k`` being the step's images and ``o`` the samples of all ranks'
    earlier steps; the order is ``0 .. num_samples - 1``, or a permutation drawn from
    ``(seed, epoch)`` with ``shuffle`` (unneeded for a :class:`~glmkit.data.mixture.Mixture`,
    whose samples are already independent draws).

    Args:
        num_samples: samples per epoch over all ranks (the dataset's length).
        mode: ``pack`` or ``pad``.
        seq_lens: the bucket budgets (patches per image).
        seq_len_probs: share of patches at each bucket (normalised); None for equal shares.
        max_tokens_per_batch: patch positions per rank and step, padding included.
        row_len: packed row length (default ``max(seq_lens)``); pad mode ignores it.
        batch_divisor: pad mode: images per step are a multiple of this.
        num_replicas: data-parallel ranks.
        seed: seed of the steps, their order and ``shuffle``.
        shuffle: permute the sample order each epoch.
    """

    def __init__(
        self,
        num_samples: int,
        mode: Mode = "pack",
        seq_lens: Sequence[int] = (256,),
        seq_len_probs: Sequence[float] | None = None,
        max_tokens_per_batch: int = 4096,
        row_len: int | None = None,
        batch_divisor: int = 1,
        num_replicas: int = 1,
        seed: int = 0,
        shuffle: bool = False,
    ) -> None:
        if mode not in ("pack", "pad"):
            raise ValueError(f"mode must be 'pack' or 'pad', got {mode!r}")
        buckets = [int(s) for s in seq_lens]
        if not buckets or any(s < 1 for s in buckets) or len(set(buckets)) != len(buckets):
            raise ValueError(f"seq_lens must be distinct positive patch counts, got {list(seq_lens)}")
        if seq_len_probs is None:
            probs = np.full(len(buckets), 1.0 / len(buckets))
        else:
            probs = np.asarray(seq_len_probs, dtype=np.float64)
            if (
                probs.shape != (len(buckets),)
                or not np.all(np.isfinite(probs))
                or (probs < 0).any()
                or probs.sum() <= 0
            ):
                raise ValueError(
                    f"seq_len_probs must be {len(buckets)} finite weights >= 0 (one per seq_len), not all 0; "
                    f"got {list(seq_len_probs)}"
                )
            probs = probs / probs.sum()
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if batch_divisor < 1:
            raise ValueError(f"batch_divisor must be >= 1, got {batch_divisor}")
        row = max(buckets) if row_len is None else int(row_len)
        if mode == "pack" and row < max(buckets):
            raise ValueError(
                f"row_len={row} is shorter than the largest seq_len {max(buckets)}; no such image fits"
            )
        widest = row if mode == "pack" else max(buckets)
        if max_tokens_per_batch < widest * (batch_divisor if mode == "pad" else 1):
            need = "row_len" if mode == "pack" else "batch_divisor x the largest seq_len"
            raise ValueError(
                f"max_tokens_per_batch={max_tokens_per_batch} is smaller than {need} "
                f"({widest * (batch_divisor if mode == 'pad' else 1)}): a step would hold no full batch"
            )
        per_rank = int(num_samples) // num_replicas
        if per_rank < 1:
            raise ValueError(f"num_samples={num_samples} gives each of {num_replicas} ranks no sample")
        self.num_samples = int(num_samples)
        self.mode: Mode = mode
        self.seq_lens = tuple(buckets)
        self.seq_len_probs = tuple(float(p) for p in probs)
        self.max_tokens_per_batch = int(max_tokens_per_batch)
        self.row_len = row
        self.batch_divisor = int(batch_divisor)
        self.num_replicas = int(num_replicas)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.samples_per_rank = per_rank
        rng = np.random.default_rng([self.seed, _STEP_STREAM])
        self.canonical: tuple[NaFlexStep, ...] = tuple(
            self._pad_steps(rng, per_rank) if mode == "pad" else self._pack_steps(rng, per_rank)
        )
        self._epochs: dict[int, tuple[list[int], np.ndarray, np.ndarray | None]] = {}

    # -- the canonical steps
    def _pick(self, rng: np.random.Generator, patches: np.ndarray) -> int:
        """The bucket furthest below its share of the ``patches`` placed so far (ties: drawn).

        Choosing by deficit instead of drawing independently makes each bucket's share of an
        epoch's patches ``seq_len_probs`` up to one image or step, so pad and pack modes (and any two
        seeds) train on the same mix of resolutions.
        """
        probs = np.asarray(self.seq_len_probs)
        deficit = np.where(probs > 0, probs * patches.sum() - patches, -np.inf)
        candidates = np.flatnonzero(deficit >= deficit.max() - 1e-9)
        return int(candidates[rng.integers(len(candidates))]) if len(candidates) > 1 else int(candidates[0])

    def _pad_steps(self, rng: np.random.Generator, remaining: int) -> list[NaFlexStep]:
        patches = np.zeros(len(self.seq_lens))
        steps = []
        while remaining > 0:
            j = self._pick(rng, patches)
            length = self.seq_lens[j]
            size = self.max_tokens_per_batch // length // self.batch_divisor * self.batch_divisor
            size = min(size, remaining)
            steps.append(NaFlexStep(length, ((length,),) * size, packed=False))
            patches[j] += size * length
            remaining -= size
        return steps

    def _pack_steps(self, rng: np.random.Generator, remaining: int) -> list[NaFlexStep]:
        """Images one by one, each into the first row of the step where its budget fits.

        An image that fits in no row waits for the next step, where it goes first, so every chosen
        budget is used, in order. A step closes when no row has room for the smallest bucket; the
        rest of a row goes to its last image (:class:`NaFlexBatches`).
        """
        smallest = min(b for b, p in zip(self.seq_lens, self.seq_len_probs, strict=True) if p > 0)
        num_rows = self.max_tokens_per_batch // self.row_len
        patches = np.zeros(len(self.seq_lens))
        waiting: list[int] = []
        steps = []
        while remaining > 0:
            rows: list[list[int]] = [[] for _ in range(num_rows)]
            room = [self.row_len] * num_rows

            def place(budget: int, rows: list[list[int]] = rows, room: list[int] = room) -> bool:
                for r, left in enumerate(room):
                    if budget <= left:
                        rows[r].append(budget)
                        room[r] -= budget
                        return True
                return False

            carried, waiting = waiting, []
            for budget in carried:
                if remaining > 0 and place(budget):
                    remaining -= 1
                else:
                    waiting.append(budget)
            while remaining > 0 and max(room) >= smallest:
                j = self._pick(rng, patches)
                patches[j] += self.seq_lens[j]
                if place(self.seq_lens[j]):
                    remaining -= 1
                else:
                    waiting.append(self.seq_lens[j])
            steps.append(NaFlexStep(self.row_len, tuple(tuple(row) for row in rows if row), packed=True))
        return steps

    # -- epochs
    def __len__(self) -> int:
        return len(self.canonical)

    def _epoch(self, epoch: int) -> tuple[list[int], np.ndarray, np.ndarray | None]:
        """(canonical index of each step, samples of all ranks before each step, sample order)."""
        if epoch not in self._epochs:
            order = np.random.default_rng([self.seed, _ORDER_STREAM, epoch]).permutation(len(self.canonical))
            sizes = np.array([self.canonical[i].num_images for i in order], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]) * self.num_replicas
            samples = None
            if self.shuffle:
                samples = np.random.default_rng([self.seed, _ORDER_STREAM, epoch, 1]).permutation(
                    self.num_samples
                )
            if len(self._epochs) >= 2:  # loaders ask for one epoch at a time; keep the last two
                self._epochs.pop(next(iter(self._epochs)))
            self._epochs[epoch] = (order.tolist(), offsets, samples)
        return self._epochs[epoch]

    def steps(self, epoch: int = 0) -> list[NaFlexStep]:
        """The layouts of ``epoch``'s steps, in order (the same on every rank)."""
        order, _, _ = self._epoch(int(epoch))
        return [self.canonical[i] for i in order]

    def step(self, epoch: int, step: int, rank: int = 0) -> tuple[NaFlexStep, list[int]]:
        """The layout of ``step`` in ``epoch`` and the sample indices ``rank`` reads for it, in order."""
        if not 0 <= step < len(self.canonical):
            raise IndexError(f"step {step} out of range: an epoch has {len(self.canonical)} steps")
        if not 0 <= rank < self.num_replicas:
            raise IndexError(f"rank {rank} out of range for num_replicas={self.num_replicas}")
        order, offsets, samples = self._epoch(int(epoch))
        layout = self.canonical[order[step]]
        start = int(offsets[step]) + rank * layout.num_images
        positions = range(start, start + layout.num_images)
        return layout, [int(samples[p]) for p in positions] if samples is not None else list(positions)

    def __repr__(self) -> str:
        return (
            f"NaFlexSchedule(num_samples={self.num_samples}, mode={self.mode!r}, seq_lens={self.seq_lens}, "
            f"max_tokens_per_batch={self.max_tokens_per_batch}, row_len={self.row_len}, "
            f"num_replicas={self.num_replicas}, seed={self.seed}, steps={len(self)})"
        )


# ------------------------------------------------------------------------------ batches as items
class NaFlexBatches(Dataset):
    """Whole NaFlex batches as the items of a map-style dataset, laid out by a :class:`NaFlexSchedule`.

    Item ``(epoch, p)`` is step ``p // W`` of rank ``p % W`` (``W = schedule.num_replicas``): the
    step's samples, read as ``dataset[(epoch, index)]`` (a :class:`~glmkit.data.mixture.Mixture`;
    ``dataset[index]`` with ``keys_with_epoch=False``), each passed through
    ``transform.with_budget(budget)`` and collated: padded steps by ``PadCollate`` to the step's
    length (``patches_valid``), packed steps by :class:`PackCollate` (``patches_seq_lens``).
    In a packed row, the budget an image leaves unused goes to the next image of the row and the
    room no bucket claimed to the last one, up to the largest bucket (:meth:`_packed_budget`). The
    transform's ``rng`` for sample ``i`` of epoch ``e`` is seeded from ``(schedule.seed, e, i)``,
    apart from the mixture's own. Serve it with :func:`naflex_loader`.

    Args:
        dataset: a map-style dataset of records holding the image field the transform reads.
        schedule: the steps.
        transform: the NaFlex transform; its ``max_num_patches`` is replaced by each image's budget.
        keys_with_epoch: read ``dataset[(epoch, index)]`` (True) or ``dataset[index]``.
    """

    def __init__(
        self, dataset: Any, schedule: NaFlexSchedule, transform: NaFlexResize, keys_with_epoch: bool = True
    ) -> None:
        if not isinstance(transform, NaFlexResize):
            raise TypeError(
                f"transform must be a NaFlexResize or NaFlexRandomResizedCrop, got {type(transform).__name__}"
            )
        if len(dataset) < schedule.num_samples:
            raise ValueError(
                f"the schedule reads {schedule.num_samples} samples per epoch but the dataset has {len(dataset)}"
            )
        self.dataset = dataset
        self.schedule = schedule
        self.transform = transform
        self.keys_with_epoch = keys_with_epoch
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.schedule) * self.schedule.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """The epoch of integer keys (``(epoch, position)`` keys name it themselves)."""
        self.epoch = int(epoch)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, position = (self.epoch, key) if not isinstance(key, tuple | list) else key
        epoch, position = int(epoch), int(position)
        if not 0 <= position < len(self):
            raise IndexError(f"NaFlexBatches: position {position} out of range [0, {len(self)})")
        step, rank = divmod(position, self.schedule.num_replicas)
        layout, indices = self.schedule.step(epoch, step, rank)
        samples = []
        pending = iter(indices)
        for budgets in layout.rows:
            left = layout.row_len
            for j, budget in enumerate(budgets):
                if layout.packed:
                    budget = self._packed_budget(budgets, j, left, layout.row_len)
                sample = self._sample(epoch, next(pending), budget)
                left -= int(sample["patches"].shape[0])
                samples.append(sample)
        if layout.packed:
            return PackCollate(layout.row_len).pack(samples, [len(r) for r in layout.rows], layout.num_slots)
        return PadCollate(("patches", "coords"), multiple=layout.row_len)(samples)

    def _packed_budget(self, budgets: tuple[int, ...], j: int, left: int, row_len: int) -> int:
        """Image ``j``'s budget in a packed row: its bucket plus what the images before it left
        unused, the row's free room too for the last image, never above the largest bucket (so no
        image trains at a resolution the schedule does not ask for; the last step's short rows keep
        their free room as padding)."""
        free = row_len - sum(budgets)  # room no bucket claimed
        later = sum(budgets[j + 1 :])
        budget = left - later - (free if j < len(budgets) - 1 else 0)
        return min(budget, max(self.schedule.seq_lens))

    def _sample(self, epoch: int, index: int, budget: int) -> dict[str, Any]:
        record = self.dataset[(epoch, index)] if self.keys_with_epoch else self.dataset[index]
        rng = np.random.default_rng([self.schedule.seed, _SAMPLE_STREAM, epoch, index])
        return self.transform.with_budget(budget)(record, rng)


def unwrap_batch(items: list[Any]) -> Any:
    """The collate of a loader whose items are whole batches (``batch_size=1``): the one item."""
    if len(items) != 1:
        raise ValueError(f"expected one pre-collated batch per loader batch (batch_size=1), got {len(items)}")
    return items[0]


def naflex_loader(batches: NaFlexBatches, rank: int = 0, **loader_kwargs: Any) -> ResumableDataLoader:
    """A resumable loader of ``batches`` for ``rank``: one item (one step's batch) per loader batch.

    It is a :class:`~glmkit.data.loader.ResumableDataLoader` (``batch_size=1``,
    :func:`unwrap_batch` as its collate) over a :class:`~glmkit.data.loader.ResumableSampler` with
    ``num_replicas=batches.schedule.num_replicas``, no shuffling and ``(epoch, position)`` keys, so
    its ``state_dict`` counts steps and ``load_state_dict`` resumes at the next one. Other
    ``DataLoader`` keywords (``num_workers``, ``pin_memory``, ...) pass through.
    """
    for name in ("batch_size", "sampler", "collate_fn", "shuffle", "batch_sampler"):
        if name in loader_kwargs:
            raise ValueError(f"naflex_loader sets {name} itself; the schedule decides the batches")
    sampler = ResumableSampler(
        batches,
        num_replicas=batches.schedule.num_replicas,
        rank=rank,
        shuffle=False,  # position p is step p // W of rank p % W; the schedule orders the steps
        seed=batches.schedule.seed,
        drop_last=True,
        keys_with_epoch=True,
    )
    kwargs = {"persistent_workers": loader_kwargs.get("num_workers", 0) > 0, **loader_kwargs}
    return ResumableDataLoader(batches, batch_size=1, sampler=sampler, collate_fn=unwrap_batch, **kwargs)


__all__ = [
    "NaFlexBatches",
    "NaFlexRandomResizedCrop",
    "NaFlexResize",
    "NaFlexSchedule",
    "NaFlexStep",
    "encoder_inputs",
    "naflex_grid",
    "naflex_loader",
    "naflex_size",
    "unwrap_batch",
]
