"""The image tower of contrastive training: a vision encoder, a pooling head and a projection.

CogViT stage 2 (GLM-5V-Turbo section 2.1) starts from the stage-1 encoder export and trains it
with a text tower under the SigLIP loss. The tower normalises the ``[0, 1]`` input with the
statistics stage 1 trained the encoder on and the VLM's processor feeds it (ImageNet's, by default;
SigLIP2's own ``(x - 0.5) / 0.5`` would shift every input the pretrained encoder sees), encodes an image batch or a padded or packed NaFlex batch, pools each image's
valid patch tokens (:class:`~glmkit.models.pooling.MAPHead` or
:class:`~glmkit.models.pooling.MeanPool`; packed images never mix) and projects to the shared width.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from glmkit.models.encoders.cogvit import CogViT
from glmkit.models.pooling import MAPHead, MeanPool, per_image_tokens
from glmkit.models.teachers.base import IMAGENET_MEAN, IMAGENET_STD
from glmkit.models.zoo import class_path_of

POOLINGS = ("map", "mean")
_CONFIG = "config.json"
_ENCODER = "encoder"
_HEAD = "head.safetensors"


class ImageTower(nn.Module):
    """Vision encoder + pooling + projection: images or NaFlex patches -> ``[I, embed_dim]``.

    Args:
        encoder: the vision encoder (e.g. ``CogViT`` with ``preset: tiny``); leave out with
            ``pretrained``.
        pretrained: directory or hub id of a CogViT export (stage 1's ``encoder/``), loaded with
            ``CogViT.from_pretrained``; overrides ``encoder``.
        encoder_overrides: with ``pretrained``, the export's arguments that do not change its
            weights, replaced (``attn_backend: xformers``, ``grad_checkpointing: true``,
            ``drop_path_rate``); the encoder's own export then records them.
        embed_dim: width of the shared image-text space; ``None``: the encoder's width, no projection.
        pooling: ``map`` (attention pooling, SigLIP's head) or ``mean`` over valid patch tokens.
        map_heads: heads of the MAP head (default: the encoder's ``num_heads``, else 8).
        image_mean: per-channel mean of the normalisation of ``[0, 1]`` inputs (default ImageNet's,
            as stage 1 (:class:`~glmkit.stages.mim_distill.MIMDistill`) and
            :class:`~glmkit.models.vlm_processor.VLMProcessor` use: one convention along the chain).
        image_std: per-channel std of the normalisation.
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        pretrained: str | None = None,
        encoder_overrides: dict[str, Any] | None = None,
        embed_dim: int | None = None,
        pooling: str = "map",
        map_heads: int | None = None,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        if encoder_overrides and pretrained is None:
            raise ValueError(
                f"encoder_overrides {sorted(encoder_overrides)} change a pretrained export's arguments; "
                "with an encoder built here, set them on the encoder itself"
            )
        if pretrained is not None:
            encoder = CogViT.from_pretrained(pretrained, **(encoder_overrides or {}))
        if encoder is None:
            raise ValueError("ImageTower needs an encoder or a pretrained export path")
        self.encoder = encoder
        width = int(encoder.embed_dim)
        heads = map_heads or int(getattr(encoder, "num_heads", 8))
        self.pooling = pooling
        self.pool: nn.Module = MAPHead(width, heads) if pooling == "map" else MeanPool()
        self.map_heads = heads
        self.embed_dim = int(embed_dim) if embed_dim is not None else width
        self.proj: nn.Module = nn.Linear(width, self.embed_dim) if embed_dim is not None else nn.Identity()
        self.register_buffer("image_mean", torch.tensor([float(v) for v in image_mean]), persistent=False)
        self.register_buffer("image_std", torch.tensor([float(v) for v in image_std]), persistent=False)

    def normalize_patches(self, patches: Tensor) -> Tensor:
        """``(x - mean) / std`` per channel of ``[..., P*P*C]`` patches (channel fastest)."""
        c = self.image_mean.numel()
        shape = patches.shape
        x = patches.reshape(*shape[:-1], -1, c)  # ..., P*P, C
        return ((x - self.image_mean) / self.image_std).reshape(shape)

    def forward(
        self,
        x: Tensor | None = None,
        *,
        patches: Tensor | None = None,
        coords: Tensor | None = None,
        valid: Tensor | None = None,
        seq_lens: Tensor | None = None,
    ) -> Tensor:
        """``[I, embed_dim]``, one row per image (row-major over packed rows), not normalised."""
        if x is not None:
            x = (x - self.image_mean.view(1, -1, 1, 1)) / self.image_std.view(1, -1, 1, 1)
            out = self.encoder(x)
        else:
            if patches is None:
                raise ValueError("ImageTower needs images x [B, C, H, W] or NaFlex patches")
            out = self.encoder(
                patches=self.normalize_patches(patches), coords=coords, valid=valid, seq_lens=seq_lens
            )
        tokens, mask = per_image_tokens(out.patch_tokens, out.valid, seq_lens)  # I, n, D
        return self.proj(self.pool(tokens, mask))

    # ------------------------------------------------------------------ export
    def save_pretrained(self, directory: str | Path) -> Path:
        """``encoder/`` (a CogViT export the VLM can load alone), ``head.safetensors`` (pooling and
        projection) and ``config.json``; loads back with :meth:`from_pretrained`."""
        from safetensors.torch import save_file

        if not hasattr(self.encoder, "save_pretrained"):
            raise TypeError(f"{type(self.encoder).__name__} has no save_pretrained; cannot export the tower")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(directory / _ENCODER)
        state = {f"pool.{k}": v for k, v in self.pool.state_dict().items()}
        state |= {f"proj.{k}": v for k, v in self.proj.state_dict().items()}
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(directory / _HEAD))
        config = {
            "class_path": f"{type(self).__module__}.{type(self).__qualname__}",
            "init_args": {**self.init_args, "encoder": None, "pretrained": _ENCODER},
        }
        (directory / _CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return directory

    @property
    def init_args(self) -> dict[str, Any]:
        """The arguments that rebuild this tower's architecture, the encoder as a
        ``{class_path, init_args}`` spec (what :func:`glmkit.config.instantiate` builds)."""
        encoder_args = getattr(self.encoder, "init_args", None)
        return {
            "encoder": None
            if encoder_args is None
            else {"class_path": class_path_of(self.encoder), "init_args": dict(encoder_args)},
            "pretrained": None,
            "embed_dim": self.embed_dim if isinstance(self.proj, nn.Linear) else None,
            "pooling": self.pooling,
            "map_heads": self.map_heads,
            "image_mean": self.image_mean.tolist(),
            "image_std": self.image_std.tolist(),
        }

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ImageTower:
        """Rebuild a tower written by :meth:`save_pretrained` from its directory alone."""
        from safetensors.torch import load_file

        directory = Path(directory)
        path = directory / _CONFIG
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; is {directory} an image tower written by save_pretrained?"
            )
        args = dict(json.loads(path.read_text())["init_args"])
        args["pretrained"] = str(directory / args.get("pretrained", _ENCODER))  # relative to directory
        tower = cls(**args)
        state = load_file(str(directory / _HEAD))
        missing = tower.load_state_dict(state, strict=False)
        bad = [k for k in missing.missing_keys if not k.startswith("encoder.")] + list(
            missing.unexpected_keys
        )
        if bad:
            raise KeyError(f"{directory / _HEAD} does not match the tower: {bad}")
        return tower


__all__ = ["ImageTower"]
