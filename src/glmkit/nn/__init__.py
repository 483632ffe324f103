"""Building blocks shared by models: attention backends, rotary embeddings, patch embedding."""

from glmkit.nn.attention import ATTENTION_BACKENDS, attention, get_attention_backend, is_xformers_available
from glmkit.nn.patch_embed import PatchEmbed, Patches, patchify, patchify_pixels, unpatchify
from glmkit.nn.rope import RotaryEmbedding2D, apply_rotary, grid_coords

__all__ = [
    "ATTENTION_BACKENDS",
    "PatchEmbed",
    "Patches",
    "RotaryEmbedding2D",
    "apply_rotary",
    "attention",
    "get_attention_backend",
    "grid_coords",
    "is_xformers_available",
    "patchify",
    "patchify_pixels",
    "unpatchify",
]
