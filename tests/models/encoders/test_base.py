"""The vision-encoder contract: the protocol, the registry's kind check, and EncoderOutput's helpers."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from glmkit.models.encoders import ENCODERS, CogViT, EncoderOutput, VisionEncoder
from glmkit.nn.patch_embed import patchify
from glmkit.registry import RegistryError, registry


class DenseOnlyEncoder(nn.Module):
    """The smallest encoder a stage accepts: image batches in, EncoderOutput out."""

    def __init__(self, embed_dim: int = 8, patch_size: int = 16) -> None:
        super().__init__()
        self.embed_dim, self.patch_size, self.num_prefix_tokens = embed_dim, patch_size, 0
        self.proj = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)

    def forward(
        self, images: Tensor, mask: Tensor | None = None, mask_token: Tensor | None = None
    ) -> EncoderOutput:
        x = self.proj(images)  # B, D, h, w
        tokens = x.flatten(2).transpose(1, 2)  # B, N, D
        return EncoderOutput(tokens, tokens[:, :0], tuple(x.shape[-2:]), None)


def test_encoders_registry_is_declared_with_the_protocol() -> None:
    assert registry("encoders") is ENCODERS and ENCODERS.base is VisionEncoder
    assert ENCODERS.get("cogvit") is CogViT
    assert issubclass(CogViT, VisionEncoder) and issubclass(DenseOnlyEncoder, VisionEncoder)
    assert isinstance(DenseOnlyEncoder(), VisionEncoder)
    ENCODERS.check(DenseOnlyEncoder)  # a plugin encoder with forward() only registers fine


def test_registering_something_that_is_not_an_encoder_fails() -> None:
    class NotAnEncoder:
        def encode(self, images: Tensor) -> Tensor:
            return images

    with pytest.raises(RegistryError, match="is not a glmkit.models.encoders.base.VisionEncoder"):
        ENCODERS.register("not_an_encoder")(NotAnEncoder)
    assert "not_an_encoder" not in ENCODERS


def test_patch_tokens_per_image_for_every_input_form() -> None:
    torch.manual_seed(0)
    enc = CogViT.preset("tiny", depth=1).eval()
    dense = enc(torch.randn(2, 3, 32, 48))
    assert [t.shape for t in dense.patch_tokens_per_image()] == [(6, 96), (6, 96)]
    p = patchify(torch.randn(2, 3, 32, 48), 16)
    valid = p.valid.clone()
    valid[1, 4:] = False
    naflex = enc(patches=p.patches, coords=p.coords, valid=valid)
    per_image = naflex.patch_tokens_per_image()
    assert [t.shape[0] for t in per_image] == [6, 4]
    assert torch.equal(per_image[1], naflex.patch_tokens[1, :4])
    packed = enc(patches=p.patches, coords=p.coords, seq_lens=torch.tensor([[2, 3], [5, 0]]))
    assert [t.shape[0] for t in packed.patch_tokens_per_image()] == [2, 3, 5]
    assert packed.prefix_tokens.shape[0] == 3 and packed.class_token.shape == (3, 96)
    assert dense.seq_lens is None and naflex.seq_lens is None
