"""Sigmoid (SigLIP) contrastive loss over a global batch, with an exact, memory-bounded exchange.

CogViT stage 2 (GLM-5V-Turbo, arXiv 2604.26752, section 2.1) pretrains image and text towers with
the sigmoid loss of SigLIP (Zhai et al., arXiv 2303.15343, section 3). For L2-normalised embeddings
``x_i`` (images) and ``y_j`` (texts) of a batch of ``|B|`` pairs, with learnable temperature ``t'``
and bias ``b``::

    z_ij = exp(t') * <x_i, y_j> + b,      label_ij = +1 if i == j else -1
    loss = -1/|B| * sum_i sum_j log sigmoid(label_ij * z_ij)          (SigLIP, eq. 1)

initialised at ``t' = log 10`` and ``b = -10`` (section 3.2). On ``W`` ranks each rank holds
``B_local`` pairs; as in the paper and open_clip's ``SigLipLoss``, rank ``r`` sums over its own
images against the texts of *every* rank and divides by ``B_local``, so the mean of the ranks'
losses (what DDP's gradient averaging optimises) is the single-process loss over the global batch.

Texts reach the other ranks by one of two exchanges (``exchange=``):

- ``"bidirectional"`` (default): text blocks travel around the ring in both directions, about
  ``W/2`` rounds (SigLIP section 3.3's "chunked" implementation; open_clip's ``bidir``). A rank only
  ever holds a few ``[B_local, D]`` blocks, never the global batch.
- ``"all_gather"``: a differentiable all-gather of the texts (its backward sums every rank's
  gradient of each block), then the same blockwise loss.

Memory. Both compute each ``[B_local, B_local]`` block's logits in chunks of ``chunk_size`` image
rows and compute the gradients of a chunk in the same pass as its loss, so no logits are stored
for backward (open_clip keeps every block's logits; its memory grows as ``B_local * B_global``).
With the bidirectional exchange the gradient a rank computes for a visiting text block travels on
with that block and goes back to the block's owner in one message after the last round, so a rank
keeps neither the visiting blocks nor their gradients: peak memory is ``O(B_local * chunk +
B_local * D)`` whatever the world size. Gradients computed in the forward pass are skipped when no
input needs them (``torch.no_grad()``, frozen towers and constants), and the backward pass only
scales them by the incoming gradient (double backward is not supported).

Every rank must pass embeddings of the same shape and the same ``requires_grad`` state (exchange
buffers are allocated from the local shape), as a synchronised NaFlex batch schedule guarantees.

Process groups. ``group=`` (a ``torch.distributed`` process group; ``None``: the default one) makes
the global batch that of the group's ranks alone: ranks, world size and every collective are the
group's, and ring peers are turned into global ranks for the point-to-point messages. Several
disjoint groups can each compute their own loss at once (a contrastive loss per data-parallel
replica under tensor or pipeline parallelism, or a smaller negative pool than the whole job's).
"""

from __future__ import annotations

import difflib
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.distributed import ProcessGroup

from glmkit.registry import declare

EXCHANGES: tuple[str, ...] = ("bidirectional", "all_gather")


class ContrastiveLoss(nn.Module):
    """Base class of image-text contrastive losses.

    ``forward(image_emb [B_local, D], text_emb [B_local, D]) -> scalar``: row ``i`` of both is a
    matching pair; embeddings come in L2-normalised (as open_clip's losses take them). A loss owns
    its learnable parameters (temperature, bias) and, under ``torch.distributed``, exchanges
    embeddings with the other ranks itself.
    """

    def forward(self, image_emb: Tensor, text_emb: Tensor) -> Tensor:
        """Compute this rank's loss."""
        raise NotImplementedError


CONTRASTIVE_LOSSES = declare(
    "contrastive_losses",
    "image-text contrastive losses: (image_emb [B_local, D], text_emb [B_local, D]) -> scalar",
    base=ContrastiveLoss,
)


@CONTRASTIVE_LOSSES.register("siglip")
class SigLIPLoss(ContrastiveLoss):
    """The SigLIP sigmoid loss with learnable temperature and bias (arXiv 2303.15343, eq. 1).

    Args:
        exchange: how texts reach the other ranks: ``"bidirectional"`` (ring, both directions,
            memory flat in the world size) or ``"all_gather"``. Ignored on one process.
        chunk_size: image rows per logits chunk; ``None`` computes a ``[B_local, B_local]`` block
            in one piece. Peak memory per rank is ``O(B_local * chunk_size)``.
        init_logit_scale: initial ``t'``; the scale is ``exp(t')`` (SigLIP: ``log 10``).
        init_logit_bias: initial bias ``b`` (SigLIP: ``-10``).
        group: the process group whose ranks make up the global batch (``None``: the default group).
            A live object, so a recipe cannot name it; code that builds groups passes it here or sets
            the ``group`` attribute before the first step.
    """

    def __init__(
        self,
        exchange: str = "bidirectional",
        chunk_size: int | None = None,
        init_logit_scale: float = math.log(10.0),
        init_logit_bias: float = -10.0,
        group: ProcessGroup | None = None,
    ) -> None:
        super().__init__()
        self.exchange = _check_exchange(exchange)
        self.chunk_size = _check_chunk_size(chunk_size)
        self.group = group
        # one-element vectors, not 0-d scalars: FSDP flattens parameters and refuses 0-d ones
        self.logit_scale = nn.Parameter(torch.tensor([float(init_logit_scale)]))
        self.logit_bias = nn.Parameter(torch.tensor([float(init_logit_bias)]))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # checkpoints written before the parameters became one-element vectors hold 0-d scalars
        for name in ("logit_scale", "logit_bias"):
            value = state_dict.get(prefix + name)
            if value is not None and value.dim() == 0:
                state_dict[prefix + name] = value.reshape(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def temperature(self) -> Tensor:
        """The logit scale ``exp(t')`` (detached, for logging)."""
        return self.logit_scale.detach().exp()

    @property
    def init_args(self) -> dict[str, Any]:
        """The arguments that rebuild this loss (the process group is live state, not recorded)."""
        return {
            "exchange": self.exchange,
            "chunk_size": self.chunk_size,
            "init_logit_scale": float(self.logit_scale.detach()[0]),
            "init_logit_bias": float(self.logit_bias.detach()[0]),
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        """The trained temperature and bias (and the exchange settings) as an export beside the towers,
        so the pair's sigmoid probabilities and loss can be computed from exports alone; loads back
        with :meth:`from_pretrained`."""
        from glmkit.models.zoo import save_pretrained

        return save_pretrained(self, directory, self.init_args)

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, **overrides: Any) -> SigLIPLoss:
        """A loss written by :meth:`save_pretrained` (``overrides``: e.g. ``exchange``, ``chunk_size``)."""
        from glmkit.models.zoo import load_pretrained

        return load_pretrained(path_or_hub_id, expected_class=cls, **overrides)

    def forward(self, image_emb: Tensor, text_emb: Tensor) -> Tensor:
        """This rank's loss: its images against the global batch's texts, divided by ``B_local``."""
        return sigmoid_loss(
            image_emb,
            text_emb,
            self.logit_scale.exp(),
            self.logit_bias,
            exchange=self.exchange,
            chunk_size=self.chunk_size,
            group=self.group,
        )

    def extra_repr(self) -> str:
        group = "" if self.group is None else f", group=<{dist.get_world_size(self.group)} ranks>"
        return f"exchange={self.exchange!r}, chunk_size={self.chunk_size}{group}"


def sigmoid_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    scale: Tensor,
    bias: Tensor,
    *,
    exchange: str = "bidirectional",
    chunk_size: int | None = None,
    group: ProcessGroup | None = None,
) -> Tensor:
    """SigLIP's sigmoid loss (arXiv 2303.15343, eq. 1) of this rank's pairs against the global batch.

    Args:
        image_emb: ``[B_local, D]`` L2-normalised image embeddings of this rank.
        text_emb: ``[B_local, D]`` L2-normalised text embeddings; row ``i`` matches image ``i``.
        scale: the logit scale ``exp(t')`` (0-dim).
        bias: the logit bias ``b`` (0-dim).
        exchange: ``"bidirectional"`` or ``"all_gather"`` (see the module docstring); a single
            process (``torch.distributed`` not initialised or a group of one rank) needs none.
        chunk_size: image rows per logits chunk (``None``: the whole block).
        group: the process group whose ranks hold the global batch (``None``: the default group);
            this process must be one of its ranks.

    Returns:
        ``-1/B_local * sum_{i local, j global} log sigmoid(label_ij * z_ij)`` in the embeddings'
        dtype promoted to at least float32, ``j`` running over the group's ranks.
    """
    exchange = _check_exchange(exchange)
    chunk_size = _check_chunk_size(chunk_size)
    if image_emb.ndim != 2 or image_emb.shape != text_emb.shape or image_emb.shape[0] == 0:
        raise ValueError(
            "sigmoid_loss needs image_emb and text_emb of one shape [B_local, D] with B_local >= 1, got "
            f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    for name, value in (("scale", scale), ("bias", bias)):
        if value.numel() != 1:
            raise ValueError(f"sigmoid_loss needs a scalar {name}, got shape {tuple(value.shape)}")
    scale, bias = scale.reshape(()), bias.reshape(())
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (image_emb, text_emb, scale, bias))
    chunk = chunk_size or image_emb.shape[0]
    device = image_emb.device.type
    # logits in at least float32 even under bf16/fp16 autocast, as the functions cast their inputs
    no_autocast = (
        torch.autocast(device, enabled=False) if torch.amp.is_autocast_available(device) else nullcontext()
    )
    with no_autocast:
        if not (dist.is_available() and dist.is_initialized()) or _group_world(group) == 1:
            return _GatheredSigmoidLoss.apply(image_emb, text_emb, scale, bias, 0, chunk, need_grad)
        if exchange == "all_gather":
            texts = _AllGather.apply(text_emb, group)  # W * B_local, D
            return _GatheredSigmoidLoss.apply(
                image_emb, texts, scale, bias, dist.get_rank(group), chunk, need_grad
            )
        return _BidirectionalSigmoidLoss.apply(image_emb, text_emb, scale, bias, chunk, need_grad, group)


def _group_world(group: ProcessGroup | None) -> int:
    """The group's world size, after checking that this process is one of its ranks."""
    if group is not None and dist.get_rank(group) < 0:
        raise ValueError(
            f"sigmoid_loss was given a process group that global rank {dist.get_rank()} is not a member "
            "of; pass the group this rank belongs to (every rank calls the loss with its own group)"
        )
    return dist.get_world_size(group)


def _global_rank(group: ProcessGroup | None, rank: int) -> int:
    """The global rank of ``rank`` of ``group``, which point-to-point messages address."""
    return rank if group is None else dist.get_global_rank(group, rank)


def _check_exchange(exchange: str) -> str:
    if exchange not in EXCHANGES:
        close = difflib.get_close_matches(str(exchange), EXCHANGES, n=1, cutoff=0.3)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown SigLIP exchange {exchange!r}; expected one of {', '.join(map(repr, EXCHANGES))}.{hint}"
        )
    return exchange


def _check_chunk_size(chunk_size: int | None) -> int | None:
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive integer or None (whole block), got {chunk_size!r}")
    return chunk_size


# ---------------------------------------------------------------------------------------------
# One block of pairs, chunk by chunk


def _block(
    x: Tensor,
    y: Tensor,
    scale: Tensor,
    bias: Tensor,
    positive_offset: int | None,
    chunk: int,
    gx: Tensor | None,
    gy: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Sum of ``-log sigmoid(label * z)`` over the pairs of images ``x [B, D]`` and texts ``y [M, D]``.

    Positives are the pairs (row ``i``, column ``positive_offset + i``); ``None``: negatives only.
    With ``gx``/``gy`` given, adds ``sum_j g_ij y_j`` to ``gx`` and ``sum_i g_ij x_i`` to ``gy``
    (``g = dloss/dz``; the caller multiplies by ``scale``) and returns the sums of ``g * <x, y>`` and
    ``g`` (the gradients of scale and bias). Logits live one ``[chunk, M]`` chunk at a time.
    """
    zero = x.new_zeros(())
    loss, g_scale, g_bias = zero, zero.clone(), zero.clone()
    # softplus returns z itself above the threshold; 50 keeps that exact to float64 precision
    threshold = 50.0 if x.dtype == torch.float64 else 20.0
    for start in range(0, x.shape[0], chunk):
        xs = x[start : start + chunk]  # c, D
        sim = xs @ y.T  # c, M: cosine similarities
        z = sim * scale + bias  # c, M: logits
        # -log sigmoid(-z) = softplus(z) for every pair, and -log sigmoid(z) = softplus(z) - z
        loss = loss + F.softplus(z, threshold=threshold).sum()
        if positive_offset is not None:
            loss = loss - z.diagonal(positive_offset + start).sum()
        if gx is None or gy is None:
            continue
        g = z.sigmoid_()  # c, M: d softplus(z) / dz
        if positive_offset is not None:
            g.diagonal(positive_offset + start).sub_(1.0)
        g_bias += g.sum()
        g_scale += torch.dot(g.reshape(-1), sim.reshape(-1))
        gx[start : start + chunk].addmm_(g, y)
        gy.addmm_(g.T, xs)
    return loss, g_scale, g_bias


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _grads_out(ctx, grad_loss: Tensor, grads: tuple[Tensor, ...]) -> tuple[Tensor | None, ...]:
    """Scale the gradients saved in forward by the incoming gradient, in each input's dtype."""
    return tuple(
        (g * grad_loss).to(dtype) if needed else None
        for g, dtype, needed in zip(grads, ctx.dtypes, ctx.needs_input_grad, strict=False)
    )


class _GatheredSigmoidLoss(torch.autograd.Function):
    """Images ``x [B, D]`` against texts ``y [W*B, D]`` (all ranks' blocks), positives in block ``rank``."""

    @staticmethod
    def forward(ctx, x, y, scale, bias, rank: int, chunk: int, need_grad: bool):
        dtype = _compute_dtype(x, y, scale, bias)
        ctx.dtypes = (x.dtype, y.dtype, scale.dtype, bias.dtype)
        xc, yc, s, b = (t.to(dtype) for t in (x, y, scale, bias))
        rows = xc.shape[0]
        gx = torch.zeros_like(xc) if need_grad else None
        gy = torch.zeros_like(yc) if need_grad else None
        loss, g_scale, g_bias = (xc.new_zeros(()) for _ in range(3))
        for start in range(0, yc.shape[0], rows):  # one [B, B] block of texts at a time
            block = _block(
                xc,
                yc[start : start + rows],
                s,
                b,
                0 if start == rank * rows else None,
                chunk,
                gx,
                None if gy is None else gy[start : start + rows],
            )
            loss, g_scale, g_bias = loss + block[0], g_scale + block[1], g_bias + block[2]
        if need_grad:
            factor = s / rows
            ctx.save_for_backward(gx.mul_(factor), gy.mul_(factor), g_scale / rows, g_bias / rows)
        return loss / rows

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        return *_grads_out(ctx, grad_loss, ctx.saved_tensors), None, None, None


class _AllGather(torch.autograd.Function):
    """Differentiable all-gather of ``[B, D]`` blocks into ``[W*B, D]`` over ``group``; backward sums
    every rank's gradient."""

    @staticmethod
    def forward(ctx, y, group):
        ctx.group, ctx.rank, ctx.rows = group, dist.get_rank(group), y.shape[0]
        parts = [torch.empty_like(y) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, y.contiguous(), group=group)
        return torch.cat(parts)  # W * B, D

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        grad = grad.contiguous()
        if dist.get_backend(ctx.group) == "nccl":
            out = grad.new_empty((ctx.rows, *grad.shape[1:]))
            dist.reduce_scatter_tensor(out, grad, group=ctx.group)
            return out, None
        # gloo has no reduce-scatter: sum everything, keep this rank's rows
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows], None


# ---------------------------------------------------------------------------------------------
# Bidirectional ring


def _post(
    sends: list[tuple[Tensor, int]], recvs: list[tuple[Tensor, int]], group: ProcessGroup | None
) -> list:
    """Start point-to-point sends and receives together (batched, so NCCL cannot deadlock).

    Peers are ranks of ``group``; the messages address them by their global ranks.
    """
    ops = [dist.P2POp(dist.isend, t, _global_rank(group, peer), group) for t, peer in sends]
    ops += [dist.P2POp(dist.irecv, t, _global_rank(group, peer), group) for t, peer in recvs]
    return dist.batch_isend_irecv(ops) if ops else []


def _wait(works: list) -> None:
    for work in works:
        work.wait()


class _BidirectionalSigmoidLoss(torch.autograd.Function):
    """The sigmoid loss with texts travelling around the ring in both directions.

    Stream 0 carries text blocks to the right (``r -> r+1``) for ``ceil((W-1)/2)`` rounds, stream 1
    to the left for ``floor((W-1)/2)`` rounds, so every rank sees every other rank's block once.
    Each round the next round's texts are already in flight while this rank computes on the blocks
    it holds (loss and gradients in one chunked pass). The gradient of a visiting block is added to
    an accumulator that follows the block one round behind; after a block's last round its
    accumulator goes straight back to the owner. Every rank posts the same sequence of batched
    messages, so they pair up in order (gloo and NCCL alike). Besides its two gradients a rank holds
    at most four ``[B, D]`` buffers per direction (the block, the next block, the outgoing and the
    incoming accumulator), so at most 10 ``[B, D]`` tensors in all once both directions have two
    rounds (``W >= 5``), whatever ``W`` (4, 6 and 8 for ``W`` = 2, 3 and 4).
    Ranks and ``W`` are those of ``group``.
    """

    @staticmethod
    def forward(ctx, x, y, scale, bias, chunk: int, need_grad: bool, group):
        rank, world = dist.get_rank(group), dist.get_world_size(group)
        dtype = _compute_dtype(x, y, scale, bias)
        ctx.dtypes = (x.dtype, y.dtype, scale.dtype, bias.dtype)
        xc, yc, s, b = (t.to(dtype).contiguous() for t in (x, y, scale, bias))
        rows = xc.shape[0]
        gx = torch.zeros_like(xc) if need_grad else None
        gy = torch.zeros_like(yc) if need_grad else None
        loss, g_scale, g_bias = _block(xc, yc, s, b, 0, chunk, gx, gy)

        right, left = (rank + 1) % world, (rank - 1) % world
        half, odd = divmod(world - 1, 2)
        # (receive from, send to, rounds, direction): stream 0 moves right, stream 1 moves left
        streams = [(left, right, half + odd, 1), (right, left, half, -1)]
        streams = [st for st in streams if st[2] > 0]
        rounds = streams[0][2]

        def post_texts(held: list[Tensor], k: int) -> tuple[list, dict[int, Tensor]]:
            live = [i for i, st in enumerate(streams) if st[2] >= k]
            bufs = {i: torch.empty_like(yc) for i in live}
            works = _post(
                [(held[i], streams[i][1]) for i in live], [(bufs[i], streams[i][0]) for i in live], group
            )
            return works, bufs

        text_works, incoming = post_texts([yc, yc], 1)
        acc_works: list = []
        acc_in: dict[int, Tensor] = {}  # what the ranks before this one added to the blocks held next
        finals: dict[int, Tensor] = {}
        for k in range(1, rounds + 1):
            # a finished work still holds its tensors: dropping it frees the blocks sent last round
            # before the next ones are allocated (else one more [B, D] per direction)
            _wait(text_works)
            held, text_works = incoming, []  # by stream: the blocks of the ranks k hops away
            if k < rounds:
                text_works, incoming = post_texts([held.get(0), held.get(1)], k + 1)
            _wait(acc_works)
            acc_works = []
            accs = {
                i: (acc_in[i] if i in acc_in else torch.zeros_like(yc)) if need_grad else None for i in held
            }
            for i in held:  # no loop variable keeps a block past its round
                block = _block(xc, held[i], s, b, None, chunk, gx, accs[i])
                loss, g_scale, g_bias = loss + block[0], g_scale + block[1], g_bias + block[2]
            if not need_grad:
                continue
            onward = [i for i in accs if streams[i][2] > k]
            finals.update({i: accs[i] for i in accs if streams[i][2] == k})
            acc_in = {i: torch.empty_like(yc) for i in onward}
            acc_works = _post(
                [(accs[i], streams[i][1]) for i in onward],
                [(acc_in[i], streams[i][0]) for i in onward],
                group,
            )
        del held, incoming, text_works  # the last round's blocks go before the return buffers
        if need_grad:
            # each finished accumulator returns to the block's owner, `rounds` hops back
            back = {i: torch.empty_like(yc) for i in finals}
            sends = [(finals[i], (rank - d * n) % world) for i, (_, _, n, d) in enumerate(streams)]
            recvs = [(back[i], (rank + d * n) % world) for i, (_, _, n, d) in enumerate(streams)]
            _wait(_post(sends, recvs, group))
            for buf in back.values():
                gy += buf
            factor = s / rows
            ctx.save_for_backward(gx.mul_(factor), gy.mul_(factor), g_scale / rows, g_bias / rows)
        return loss / rows

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        return *_grads_out(ctx, grad_loss, ctx.saved_tensors), None, None, None
