"""SigLIP2, the semantic teacher of CogViT stage 1 (GLM-5V-Turbo section 2.1).

Two kinds of checkpoint carry SigLIP2 weights in transformers: the NaFlex models
(``google/siglip2-*-naflex``, model type ``siglip2``), whose ``Siglip2VisionModel`` takes
pre-patchified pixels with an attention mask and per-image grid shapes, and the fixed-resolution
ones (e.g. ``google/siglip2-so400m-patch16-256``), stored as SigLIP (v1) ``SiglipVisionModel``
checkpoints that take a plain image. Both are handled here; the architecture is read from the
checkpoint's config. Features are the last hidden state after ``post_layernorm``; SigLIP has no
class or register tokens, so every token is a patch. The summary is the attention-pooled output of
the MAP head (``pooler_output``), when the checkpoint has the head.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from glmkit.models.teachers.base import TEACHERS, DType, Teacher, check_layer, torch_dtype
from glmkit.models.teachers.hf_loading import (
    build_random,
    load_config,
    load_pretrained,
    pick_source,
    resolve_source,
    select_hidden_and_pooled,
)
from glmkit.nn.patch_embed import patchify_pixels

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

_NAFLEX_TYPES = ("siglip2", "siglip2_vision_model")
_FIXED_TYPES = ("siglip", "siglip_vision_model")


def _classes(model_type: str, where: str) -> tuple[Any, Any]:
    """(config class, vision model class) for a SigLIP or SigLIP2 ``model_type``."""
    from transformers import Siglip2VisionConfig, Siglip2VisionModel, SiglipVisionConfig, SiglipVisionModel

    if model_type in _NAFLEX_TYPES:
        return Siglip2VisionConfig, Siglip2VisionModel
    if model_type in _FIXED_TYPES:
        return SiglipVisionConfig, SiglipVisionModel
    raise ValueError(
        f"SigLIP2Teacher: {where} has model_type {model_type!r}; "
        f"valid: {', '.join(_NAFLEX_TYPES + _FIXED_TYPES)}"
    )


@TEACHERS.register("siglip2")
class SigLIP2Teacher(Teacher):
    """Frozen SigLIP2 (or SigLIP) vision tower returning patch features on its own grid.

    Args:
        model: hub id (e.g. ``google/siglip2-so400m-patch16-naflex``) or local directory written by
            ``save_pretrained``; a full SigLIP2 image-text checkpoint works, its vision tower is used.
        config: a ``Siglip2VisionConfig`` dict for a randomly initialised teacher (add
            ``model_type: siglip_vision_model`` for a SigLIP v1 tower).
        image_size: square resolution to run at; default the checkpoint's native one
            (sqrt(num_patches) * patch for NaFlex models, ``config.image_size`` for SigLIP).
        layer, final_norm, dtype: see :class:`Teacher`.
        mean, std: override the normalisation statistics (default 0.5 / 0.5).
        seed: seed of the random initialisation when built from ``config`` (or a preset).
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # quickstart / tests: 14x14 patches at 224 px, a few hundred thousand weights
        "tiny": {
            "config": {
                "hidden_size": 96,
                "intermediate_size": 192,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "patch_size": 16,
                "num_patches": 196,
                "vision_use_head": False,
            }
        },
    }

    def __init__(
        self,
        model: str | None = None,
        *,
        config: dict[str, Any] | None = None,
        image_size: int | None = None,
        layer: int = -1,
        final_norm: bool = True,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        dtype: DType = "float32",
        seed: int = 0,
    ) -> None:
        name = type(self).__name__
        source, cfg = pick_source(name, model, config)
        if source is not None:
            source = resolve_source(name, source)
            model_type = load_config(name, source).model_type
            _, model_cls = _classes(model_type, f"the checkpoint {source!r}")
            net = load_pretrained(name, model_cls, source, torch_dtype(dtype))
        else:
            model_type = cfg.pop("model_type", "siglip2_vision_model")
            config_cls, model_cls = _classes(model_type, "config")
            net = build_random(name, config_cls, model_cls, cfg, seed)
        c = net.config
        naflex = model_type in _NAFLEX_TYPES
        native = math.isqrt(c.num_patches) * c.patch_size if naflex else c.image_size
        check_layer(layer, c.num_hidden_layers, name)
        super().__init__(
            net,
            embed_dim=c.hidden_size,
            patch_size=c.patch_size,
            image_size=image_size or native,
            mean=tuple(mean or SIGLIP_MEAN),
            std=tuple(std or SIGLIP_STD),
            layer=layer,
            final_norm=final_norm,
            dtype=dtype,
        )
        self.naflex = naflex
        self.native_size = native
        # SigLIP v1 has a fixed position table; other sizes need its interpolation
        self.interpolate_pos_encoding = not naflex and self.image_size != native

    def encode(self, pixels: Tensor) -> Tensor:
        """Normalised pixels -> every output token (SigLIP has no prefix tokens)."""
        return self.encode_with_summary(pixels)[0]

    def encode_with_summary(self, pixels: Tensor) -> tuple[Tensor, Tensor | None]:
        """Every output token and the summary: the attention-pooled (MAP head) output, the image
        embedding SigLIP2 is trained with (None when the model has no head, ``vision_use_head``)."""
        if self.naflex:
            b = pixels.shape[0]
            h, w = pixels.shape[-2] // self.patch_size, pixels.shape[-1] // self.patch_size
            run = functools.partial(
                self.model,
                pixel_values=patchify_pixels(
                    pixels, self.patch_size
                ),  # B, h*w, p*p*C: the processor's (ph, pw, C) order
                # one fixed-size image each: no padding, every patch valid
                pixel_attention_mask=torch.ones(b, h * w, dtype=torch.int32, device=pixels.device),
                spatial_shapes=torch.tensor([[h, w]], dtype=torch.long, device=pixels.device).expand(b, 2),
            )
        else:
            interpolate = self.interpolate_pos_encoding or pixels.shape[-1] != self.native_size
            run = functools.partial(self.model, pixel_values=pixels, interpolate_pos_encoding=interpolate)
        return select_hidden_and_pooled(run, self.layer, self.final_norm, self.model.post_layernorm)
