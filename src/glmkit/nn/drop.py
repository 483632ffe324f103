"""Drop path (stochastic depth, Huang et al. 2016, arXiv 1603.09382, section 3).

During training a residual branch is dropped as a whole for a random subset of samples and
scaled by ``1 / keep_prob`` for the others, so its expectation is unchanged; at eval time it is
the identity. A "sample" is a row of the batch, or, for packed rows (:class:`~glmkit.nn.packed.SeqLens`),
each sequence (image) in the row, so packed images are dropped independently as they would be
in a padded batch.
"""

from __future__ import annotations

from torch import Tensor, nn

from glmkit.nn.packed import SeqLens


def drop_path(
    x: Tensor, drop_prob: float = 0.0, training: bool = False, seq_lens: SeqLens | None = None
) -> Tensor:
    """Zero the residual branch ``x`` (``[B, N, ...]``) per sample with probability ``drop_prob``.

    Args:
        x: a residual branch's output; the first axis is the batch, the second the tokens.
        drop_prob: probability of dropping a sample's branch.
        training: identity unless True.
        seq_lens: packed rows; each sequence is then a sample (padding positions are kept).
    """
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    if seq_lens is None:
        # one draw per row: [B, 1, ..., 1]
        scale = x.new_empty(x.shape[0], *(1,) * (x.ndim - 1)).bernoulli_(keep_prob).div_(keep_prob)
        return x * scale
    keep = x.new_empty(seq_lens.num_seqs + 1).bernoulli_(keep_prob).div_(keep_prob)
    keep[-1] = 1.0  # the padding "sequence" (index -1)
    scale = keep[seq_lens.segment_ids(x.shape[1])]  # B, N
    return x * scale.view(*scale.shape, *(1,) * (x.ndim - 2))


class DropPath(nn.Module):
    """Module form of :func:`drop_path`, active in ``train()`` mode.

    Args:
        drop_prob: probability of dropping a sample's residual branch.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor, seq_lens: SeqLens | None = None) -> Tensor:
        """Drop ``x`` per sample (per packed sequence when ``seq_lens`` is given)."""
        return drop_path(x, self.drop_prob, self.training, seq_lens)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:g}"


__all__ = ["DropPath", "drop_path"]
