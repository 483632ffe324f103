"""DINOv3, the texture (dense-feature) teacher of CogViT stage 1 (GLM-5V-Turbo section 2.1).

transformers' ``DINOv3ViTModel`` (checkpoints ``facebook/dinov3-vit*16-pretrain-lvd1689m``, gated)
returns ``[CLS, registers..., patches]`` after its final LayerNorm; the class token and the
``config.num_register_tokens`` register tokens are stripped here, and the class token is the
teacher's summary (``TeacherOutput.summary``). DINOv3 uses RoPE and no position
table, so it runs at any multiple of its patch size; in train mode it jitters the RoPE coordinates,
which :class:`Teacher` prevents by never leaving eval mode. It expects ImageNet statistics.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from torch import Tensor

from glmkit.models.teachers.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TEACHERS,
    DType,
    Teacher,
    check_layer,
    torch_dtype,
)
from glmkit.models.teachers.hf_loading import (
    build_random,
    load_config,
    load_pretrained,
    pick_source,
    resolve_source,
    select_hidden_and_pooled,
)

_DINOV3_TYPES = ("dinov3_vit",)


@TEACHERS.register("dinov3")
class DINOv3Teacher(Teacher):
    """Frozen DINOv3 ViT returning patch features (class and register tokens removed).

    Args:
        model: hub id (e.g. ``facebook/dinov3-vitl16-pretrain-lvd1689m``) or local directory written
            by ``save_pretrained``.
        config: a ``DINOv3ViTConfig`` dict for a randomly initialised teacher.
        image_size: square resolution to run at (default ``config.image_size``, 224 for the hub models).
        layer, final_norm, dtype: see :class:`Teacher`.
        mean, std: override the normalisation statistics (default ImageNet).
        seed: seed of the random initialisation when built from ``config`` (or a preset).
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # quickstart / tests: 14x14 patches at 224 px, four registers like the real models
        "tiny": {
            "config": {
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "patch_size": 16,
                "image_size": 224,
                "num_register_tokens": 4,
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
        from transformers import DINOv3ViTConfig, DINOv3ViTModel

        name = type(self).__name__
        source, cfg = pick_source(name, model, config)
        if source is not None:
            source = resolve_source(name, source)
            model_type = load_config(name, source).model_type
            if model_type not in _DINOV3_TYPES:
                raise ValueError(
                    f"{name}: the checkpoint {source!r} has model_type {model_type!r}; "
                    f"valid: {', '.join(_DINOV3_TYPES)} (DINOv3 ConvNeXt checkpoints are not ViT teachers)"
                )
            net = load_pretrained(name, DINOv3ViTModel, source, torch_dtype(dtype))
        else:
            net = build_random(name, DINOv3ViTConfig, DINOv3ViTModel, cfg, seed)
        c = net.config
        patch = c.patch_size
        if isinstance(patch, (list, tuple)):
            if len(set(patch)) != 1:
                raise ValueError(f"{name}: only square patches are supported, got patch_size={patch}")
            patch = patch[0]
        check_layer(layer, c.num_hidden_layers, name)
        super().__init__(
            net,
            embed_dim=c.hidden_size,
            patch_size=patch,
            image_size=image_size or c.image_size,
            mean=tuple(mean or IMAGENET_MEAN),
            std=tuple(std or IMAGENET_STD),
            layer=layer,
            final_norm=final_norm,
            dtype=dtype,
        )
        self.num_prefix_tokens = 1 + c.num_register_tokens  # CLS, then the registers

    def encode(self, pixels: Tensor) -> Tensor:
        """Normalised pixels -> patch tokens, class and register tokens removed."""
        return self.encode_with_summary(pixels)[0]

    def encode_with_summary(self, pixels: Tensor) -> tuple[Tensor, Tensor | None]:
        """Patch tokens and the summary: the class token after the final norm (``pooler_output``)."""
        run = functools.partial(self.model, pixel_values=pixels)
        tokens, summary = select_hidden_and_pooled(run, self.layer, self.final_norm, self.model.norm)
        return tokens[:, self.num_prefix_tokens :], summary  # B, 1 + R + N, D -> B, N, D
