"""Building blocks shared by models: attention backends (dense, masked, packed), self-attention,
rotary embeddings, patch embedding, norms, MLPs, LayerScale and drop path."""

from glmkit.nn.attention import ATTENTION_BACKENDS, attention, get_attention_backend, is_xformers_available
from glmkit.nn.drop import DropPath, drop_path
from glmkit.nn.layer_scale import LayerScale
from glmkit.nn.mlp import Mlp, SwiGLU, swiglu_hidden_features
from glmkit.nn.norm import NORM_TYPES, NormType, create_norm
from glmkit.nn.packed import SeqLens
from glmkit.nn.patch_embed import PatchEmbed, Patches, patchify, patchify_pixels, unpatchify
from glmkit.nn.rope import RopeJitter, RotaryEmbedding2D, apply_rotary, grid_coords
from glmkit.nn.self_attention import SelfAttention

__all__ = [
    "ATTENTION_BACKENDS",
    "NORM_TYPES",
    "DropPath",
    "LayerScale",
    "Mlp",
    "NormType",
    "PatchEmbed",
    "Patches",
    "RopeJitter",
    "RotaryEmbedding2D",
    "SelfAttention",
    "SeqLens",
    "SwiGLU",
    "apply_rotary",
    "attention",
    "create_norm",
    "drop_path",
    "get_attention_backend",
    "grid_coords",
    "is_xformers_available",
    "patchify",
    "patchify_pixels",
    "swiglu_hidden_features",
    "unpatchify",
]
