"""The frozen-teacher interface for CogViT stage 1 (GLM-5V-Turbo section 2.1).

Stage 1 pretrains CogViT by masked image modelling with feature distillation from two frozen
teachers, SigLIP2 (semantic) and DINOv3 (texture). A :class:`Teacher` hides everything that differs
between teachers: its own input resolution and normalisation statistics, how its backbone wants the
pixels (NaFlex patches for SigLIP2, an image for DINOv3), and which prefix tokens (class, registers)
to strip. It returns patch features on its own grid; aligning grids and normalising targets is the
job of :mod:`glmkit.models.distill_targets`.

A teacher is frozen for good:

- its parameters never require grad, and ``forward`` runs under ``torch.no_grad`` (not
  ``inference_mode``: inference tensors cannot be saved for the student loss's backward);
- it stays in eval mode whatever ``train()`` says, because Lightning calls ``model.train()`` on the
  whole stage and HF DINOv3 jitters its RoPE coordinates in train mode;
- a stage holds its teachers in a :class:`~glmkit.models.frozen.FrozenModels`, outside its module
  tree, so a stage-1 checkpoint holds only what trains; the teacher is rebuilt from its hub id,
  directory or seeded config when the stage is built.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
from collections.abc import Iterator
from typing import Any, ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glmkit.nn.fixed_precision import FixedPrecisionModule
from glmkit.registry import declare

DType = Literal["float32", "bfloat16", "float16"]
_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TeacherOutput(NamedTuple):
    """Patch features of a teacher, prefix tokens removed, and its summary of the image.

    ``features`` is ``[B, h*w, D]`` float32 in row-major grid order; ``grid_size`` is ``(h, w)``;
    ``summary`` is the teacher's image-level feature ``[B, D_s]`` float32 (DINOv3's class token,
    SigLIP2's attention-pooled output), or None for a teacher without one. AM-RADIO distils it into
    the student's class or register tokens (summary distillation).
    """

    features: Tensor
    grid_size: tuple[int, int]
    summary: Tensor | None = None


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype named ``name`` (``"float32"``, ``"bfloat16"`` or ``"float16"``)."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown teacher dtype {name!r}; valid: {', '.join(_DTYPES)}") from None


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed the CPU generator inside the block and restore the caller's state afterwards.

    Random teachers are built under this so that every rank and every run gets the same weights
    without disturbing the global random stream.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def check_layer(layer: int, depth: int, name: str) -> None:
    """Raise if ``layer`` does not index one of ``depth`` transformer blocks."""
    if not -depth <= layer < depth:
        raise ValueError(
            f"{name}: layer={layer} is out of range for a model with {depth} blocks; "
            f"valid: {-depth}..{depth - 1} (-1 is the last block)"
        )


class Teacher(FixedPrecisionModule):
    """A frozen feature extractor: ``forward(images in [0, 1]) -> TeacherOutput``.

    Subclasses build the backbone and implement :meth:`encode` (normalised pixels at
    ``image_size`` -> patch tokens ``[B, N, D]`` without prefix tokens).

    Args:
        model: the backbone, stored as ``self.model``; frozen and put in eval mode here.
        embed_dim: channel width ``D`` of the returned features.
        patch_size: the backbone's patch size; the grid is ``image_size // patch_size`` per side.
        image_size: the square resolution the teacher runs at; inputs of another size are resized.
        mean, std: per-channel normalisation statistics of the teacher's training data.
        layer: which transformer block's output to return (``-1``: the last).
        final_norm: apply the backbone's final norm to that output (with ``layer=-1`` this is the
            model's ``last_hidden_state``).
        dtype: dtype of the weights and of the forward pass; features are always returned float32.
            An enclosing autocast (e.g. Lightning ``bf16-mixed``) still applies.
    """

    embed_dim: int
    patch_size: int
    image_size: int

    def __init__(
        self,
        model: nn.Module,
        *,
        embed_dim: int,
        patch_size: int,
        image_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        layer: int = -1,
        final_norm: bool = True,
        dtype: DType = "float32",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if image_size <= 0 or image_size % patch_size:
            raise ValueError(
                f"{name}: image_size={image_size} must be a positive multiple of the patch size {patch_size}"
            )
        for label, stats in (("mean", mean), ("std", std)):
            if len(stats) != 3:
                raise ValueError(f"{name}: {label} needs 3 values (one per RGB channel), got {tuple(stats)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"{name}: std values must be positive, got {tuple(std)}")
        self.embed_dim = int(embed_dim)
        self.patch_size = int(patch_size)
        self.image_size = int(image_size)
        self.layer = layer
        self.final_norm = final_norm
        self.dtype_name = dtype
        # [1, C, 1, 1], float32 whatever the teacher's dtype: plain attributes, not buffers, so that
        # casting the teacher never rounds them (see nn/fixed_precision.py); they follow its device.
        self._stats = (tuple(float(v) for v in mean), tuple(float(v) for v in std))
        self.place_fixed(None)
        self.model = model.to(torch_dtype(dtype))
        self.model.requires_grad_(False)
        self.train(False)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Teacher:
        """The teacher built from ``PRESETS[name]`` (its init arguments) with ``overrides`` on top,
        e.g. ``SigLIP2Teacher.preset("tiny", image_size=64)``; a recipe writes ``preset: tiny``."""
        if name not in cls.PRESETS:
            close = difflib.get_close_matches(name, list(cls.PRESETS), n=2)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"unknown {cls.__name__} preset {name!r}.{hint} Presets: {', '.join(cls.PRESETS) or '(none)'}"
            )
        return cls(**{**copy.deepcopy(cls.PRESETS[name]), **overrides})

    @property
    def grid_size(self) -> tuple[int, int]:
        """``(h, w)`` of the patch grid the features lie on."""
        side = self.image_size // self.patch_size
        return side, side

    def train(self, mode: bool = True) -> Teacher:
        """Stay in eval mode whatever ``mode`` is: a teacher never trains, and DINOv3 must not
        randomise its RoPE coordinates (which it does in train mode)."""
        return super().train(False)

    def fixed_device(self) -> torch.device:
        """Where the float32 normalisation statistics are."""
        return self.mean.device

    def place_fixed(self, device: torch.device | None) -> None:
        """Put the normalisation statistics on ``device`` in float32."""
        mean, std = self._stats
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def preprocess(self, images: Tensor, image_size: int | None = None) -> Tensor:
        """Float images ``[B, 3, H, W]`` in [0, 1] -> normalised pixels at ``image_size`` (default:
        the teacher's own), float32.

        Resizing is bilinear with antialiasing, as the HF SigLIP2 and DINOv3 image processors do it.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"{type(self).__name__} expects images of shape [B, 3, H, W], got {tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise TypeError(
                f"{type(self).__name__} expects float images in [0, 1], got dtype {images.dtype}; "
                "divide uint8 images by 255 first"
            )
        x = images.float()
        self.follow(x.device)  # moved by something other than _apply (e.g. FSDP)
        side = self.image_size if image_size is None else self.check_size(image_size)
        size = (side, side)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def encode(self, pixels: Tensor) -> Tensor:
        """Normalised pixels ``[B, 3, S, S]`` -> patch tokens ``[B, N, D]`` (prefix tokens removed)."""
        raise NotImplementedError

    def encode_with_summary(self, pixels: Tensor) -> tuple[Tensor, Tensor | None]:
        """Patch tokens (as :meth:`encode`) and the summary ``[B, D_s]`` from the same forward pass;
        the default has no summary."""
        return self.encode(pixels), None

    def check_size(self, image_size: int) -> int:
        """``image_size`` if the teacher can run at it (a positive multiple of its patch size)."""
        if image_size <= 0 or image_size % self.patch_size:
            raise ValueError(
                f"{type(self).__name__}: image_size={image_size} must be a positive multiple of the patch "
                f"size {self.patch_size}"
            )
        return int(image_size)

    def forward(self, images: Tensor, image_size: int | None = None) -> TeacherOutput:
        """Images ``[B, 3, H, W]`` in [0, 1] -> :class:`TeacherOutput` (float32 features).

        ``image_size`` runs the teacher at another square resolution than its own for this call
        (multi-resolution distillation: the teacher's grid follows the student's).
        """
        if any(m.training for m in self.modules()):  # someone set .training directly
            self.train(False)
        # the weights' dtype, not the constructor's: an outer .to(dtype) may have changed it
        weight = next(self.model.parameters(), None)
        dtype = weight.dtype if weight is not None else torch.float32
        with torch.no_grad():
            pixels = self.preprocess(images, image_size).to(dtype)
            features, summary = self.encode_with_summary(pixels)
        h, w = (pixels.shape[-2] // self.patch_size, pixels.shape[-1] // self.patch_size)
        if features.shape[1] != h * w:
            raise RuntimeError(
                f"{type(self).__name__} returned {features.shape[1]} tokens for a {h}x{w} grid; "
                "are the prefix (class/register) tokens counted correctly?"
            )
        return TeacherOutput(features.float(), (h, w), summary.float() if summary is not None else None)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, patch_size={self.patch_size}, image_size={self.image_size}, "
            f"layer={self.layer}, final_norm={self.final_norm}, dtype={self.dtype_name}"
        )


TEACHERS = declare("teachers", "frozen teacher models for distillation", base=Teacher)
