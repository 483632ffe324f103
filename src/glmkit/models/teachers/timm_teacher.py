"""Any timm ViT as a frozen teacher (e.g. timm's DINOv3 ``vit_large_patch16_dinov3.lvd1689m`` or
SigLIP2 ``vit_so400m_patch16_siglip_256.v2_webli`` ports), for CogViT stage 1 (GLM-5V-Turbo 2.1).

Weights come from timm's usual places: the model's pretrained tag on the hub, ``hf-hub:org/name``,
``local-dir:/path`` (a directory written by ``timm.models.save_for_hf``), or a checkpoint file
loaded through the model's pretrained path (``pretrained_cfg_overlay=dict(file=...)``), which runs
timm's checkpoint filter, so original-format checkpoints and other resolutions load. Features are
``forward_features`` with the model's ``num_prefix_tokens`` stripped; normalisation statistics come
from the model's pretrained config unless given.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor

from glmkit.models.teachers.base import TEACHERS, DType, Teacher, check_layer, seeded


def _create(model_name: str, pretrained: bool, checkpoint: str | None, kwargs: dict[str, Any]) -> Any:
    """``timm.create_model`` with errors that name the model or file."""
    import timm

    name = "TimmTeacher"
    if model_name.startswith("local-dir:"):
        directory = Path(model_name.removeprefix("local-dir:")).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(f"{name}: the model directory {str(directory)!r} does not exist")
    elif not model_name.startswith("hf-hub:") and not timm.is_model(model_name.split(".")[0]):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"{name}: timm has no model {model_name!r}.{hint}")
    if checkpoint is not None:
        if not Path(checkpoint).expanduser().is_file():
            raise FileNotFoundError(f"{name}: the checkpoint file {checkpoint!r} does not exist")
        kwargs = {**kwargs, "pretrained_cfg_overlay": {"file": str(Path(checkpoint).expanduser())}}
        pretrained = True
    try:
        return timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except OSError as exc:
        raise OSError(
            f"{name}: cannot load weights for {model_name!r} ({exc}). Hub weights need network access "
            "or, with HF_HUB_OFFLINE=1, a cached copy; or pass checkpoint= / local-dir:"
        ) from exc


@TEACHERS.register("timm")
class TimmTeacher(Teacher):
    """Frozen timm ViT returning patch features (``num_prefix_tokens`` removed).

    Args:
        model_name: a timm model name (with optional ``.tag``), ``hf-hub:org/name`` or ``local-dir:/path``.
        pretrained: load pretrained weights (a random teacher is only good for tests).
        checkpoint: a local checkpoint file loaded through timm's pretrained path and filter.
        model_kwargs: extra ``create_model`` arguments (``depth``, ``reg_tokens``, ``dynamic_img_size``...).
        image_size: square resolution to run at; passed to ``create_model`` as ``img_size`` (timm
            resamples a learned position table when loading). Default: the model's own size.
        layer, final_norm, dtype: see :class:`Teacher` (``layer``/``final_norm`` other
            than the defaults use ``forward_intermediates``).
        mean, std: override the model's pretrained-config statistics.
        seed: seed of the random initialisation (weights not covered by the checkpoint).
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # a tiny ViT with four register tokens, random weights
        "tiny": {
            "model_name": "vit_tiny_patch16_224",
            "pretrained": False,
            "model_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2, "reg_tokens": 4},
        },
    }

    def __init__(
        self,
        model_name: str,
        *,
        pretrained: bool = True,
        checkpoint: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        image_size: int | None = None,
        layer: int = -1,
        final_norm: bool = True,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        dtype: DType = "float32",
        seed: int = 0,
    ) -> None:
        import timm

        name = type(self).__name__
        kwargs: dict[str, Any] = {"num_classes": 0, **(model_kwargs or {})}  # no classifier head
        if image_size is not None:
            given = kwargs.setdefault("img_size", image_size)
            if given != image_size:  # the teacher would resize to one size, the model expect another
                raise ValueError(
                    f"{name}: image_size={image_size} disagrees with model_kwargs img_size={given}; "
                    "give one of them"
                )
        with seeded(seed):
            net = _create(model_name, pretrained, checkpoint, kwargs)

        embed = getattr(net, "patch_embed", None) or getattr(net, "embeds", None)  # ViT/EVA or NaFlexVit
        if embed is None or not hasattr(embed, "patch_size"):
            raise ValueError(f"{name}: {model_name} is not a patch-based ViT (no patch_embed.patch_size)")
        patch = (
            tuple(embed.patch_size) if isinstance(embed.patch_size, (tuple, list)) else (embed.patch_size,)
        )
        if len(set(patch)) != 1:
            raise ValueError(f"{name}: only square patches are supported, got patch_size={patch}")
        data_cfg = timm.data.resolve_model_data_config(net)
        native = getattr(embed, "img_size", None) or data_cfg["input_size"][-2:]
        if image_size is None:
            if len(set(native)) != 1:
                raise ValueError(f"{name}: {model_name} runs at {tuple(native)}; pass a square image_size")
            image_size = native[0]
        if layer != -1 or not final_norm:
            if not hasattr(net, "forward_intermediates"):
                raise ValueError(
                    f"{name}: {model_name} has no forward_intermediates; use layer=-1, final_norm=True"
                )
            check_layer(layer, len(net.blocks), name)
        super().__init__(
            net,
            embed_dim=net.num_features,
            patch_size=patch[0],
            image_size=image_size,
            mean=tuple(mean or data_cfg["mean"]),
            std=tuple(std or data_cfg["std"]),
            layer=layer,
            final_norm=final_norm,
            dtype=dtype,
        )
        self.num_prefix_tokens = int(getattr(net, "num_prefix_tokens", 0))

    def encode(self, pixels: Tensor) -> Tensor:
        """Normalised pixels -> patch tokens, prefix (class/register) tokens removed."""
        if self.layer == -1 and self.final_norm:
            return self.model.forward_features(pixels)[:, self.num_prefix_tokens :]  # B, P + N, D -> B, N, D
        (tokens,) = self.model.forward_intermediates(  # NLC intermediates come without prefix tokens
            pixels, indices=[self.layer], norm=self.final_norm, output_fmt="NLC", intermediates_only=True
        )
        return tokens

    def encode_with_summary(self, pixels: Tensor) -> tuple[Tensor, Tensor | None]:
        """Patch tokens and the summary: the model's pooled pre-logits (class token, average or MAP
        pooling, as its ``global_pool`` says), computed from the final features."""
        if self.layer != -1 or not self.final_norm:
            return self.encode(pixels), None  # the pooled output needs the final features
        features = self.model.forward_features(pixels)  # B, P + N, D
        summary = self.model.forward_head(features, pre_logits=True)  # B, D
        return features[:, self.num_prefix_tokens :], summary
