"""The SigLIP sigmoid loss against the paper's formula, open_clip's SigLipLoss, and one process.

The distributed tests run 2, 3 and 4 gloo ranks and compare every rank's loss and gradients (image
and text embeddings, temperature, bias) with the single-process loss over the concatenated global
batch, for both exchanges, chunked and unchunked, in float64; 4 ranks split into process groups,
where each group's ranks must match one process over that group's batch alone; and the number of
[B_local, D] buffers the bidirectional exchange holds at once, for rings of 2 to 6 ranks.
"""

from __future__ import annotations

import importlib.util
from datetime import timedelta

import pytest
import torch
import torch.nn.functional as F
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode

from glmkit.losses.siglip import CONTRASTIVE_LOSSES, EXCHANGES, ContrastiveLoss, SigLIPLoss, sigmoid_loss
from tests.helpers.distributed import run_on_ranks

HAS_OPEN_CLIP = importlib.util.find_spec("open_clip") is not None
TIGHT = {"rtol": 1e-12, "atol": 1e-12}


def _open_clip_siglip() -> type:
    """open_clip's ``SigLipLoss``, from its loss module alone.

    Importing the ``open_clip`` package loads its model zoo (seconds per spawned rank); ``loss.py``
    needs only torch, so it is loaded by itself when it can be.
    """
    spec = importlib.util.find_spec("open_clip")
    try:
        path = f"{spec.submodule_search_locations[0]}/loss.py"
        module_spec = importlib.util.spec_from_file_location("_open_clip_loss", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module.SigLipLoss
    except (ImportError, OSError, AttributeError, TypeError):
        from open_clip.loss import SigLipLoss

        return SigLipLoss


def _embeddings(rows: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(rows, dim, generator=gen, dtype=torch.float64), dim=-1)
    # texts correlated with their images, so positives and negatives both matter
    y = F.normalize(x + 0.7 * torch.randn(rows, dim, generator=gen, dtype=torch.float64), dim=-1)
    return x, y


def _paper_loss(x, y, logit_scale, bias):
    """SigLIP eq. 1 written out: -1/|B| sum_ij log sigmoid(label_ij * (exp(t') x_i.y_j + b))."""
    logits = logit_scale.exp() * x @ y.T + bias
    labels = 2 * torch.eye(x.shape[0], dtype=x.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / x.shape[0]


def _grads(loss_fn, x, y, logit_scale, bias):
    """Loss and gradients w.r.t. (x, y, t', b) of ``loss_fn(x, y, t', b)``, on fresh leaves."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, y, logit_scale, bias)]
    loss = loss_fn(*leaves)
    return loss.detach(), torch.autograd.grad(loss, leaves)


def _module_loss(chunk_size=None, exchange="bidirectional"):
    def fn(x, y, logit_scale, bias):
        return sigmoid_loss(x, y, logit_scale.exp(), bias, exchange=exchange, chunk_size=chunk_size)

    return fn


def _params(dtype=torch.float64):
    loss = SigLIPLoss().to(dtype)
    return loss.logit_scale.detach(), loss.logit_bias.detach()


def test_initialisation_and_the_registered_family() -> None:
    loss = SigLIPLoss()
    assert loss.logit_scale.item() == pytest.approx(2.302585, abs=1e-6)  # log 10
    assert loss.temperature.item() == pytest.approx(10.0, rel=1e-6)
    assert loss.logit_bias.item() == -10.0
    assert {n for n, _ in loss.named_parameters()} == {"logit_scale", "logit_bias"}
    assert CONTRASTIVE_LOSSES.get("siglip") is SigLIPLoss and CONTRASTIVE_LOSSES.base is ContrastiveLoss
    assert set(EXCHANGES) == {"bidirectional", "all_gather"}


def test_scale_and_bias_are_vectors_fsdp_can_flatten_and_old_scalars_still_load() -> None:
    loss = SigLIPLoss()
    # FSDP flattens every parameter and refuses 0-d ones
    assert loss.logit_scale.shape == loss.logit_bias.shape == (1,)
    old = {"logit_scale": torch.tensor(1.5), "logit_bias": torch.tensor(-2.0)}  # written as 0-d scalars
    loss.load_state_dict(old)
    assert loss.logit_scale.tolist() == [1.5] and loss.logit_bias.tolist() == [-2.0]


def test_built_from_a_recipe_spec() -> None:
    from glmkit.config import instantiate

    spec = {"class_path": "siglip", "init_args": {"exchange": "all_gather", "chunk_size": 128}}
    loss = instantiate(spec, "contrastive_losses")
    assert isinstance(loss, SigLIPLoss) and (loss.exchange, loss.chunk_size) == ("all_gather", 128)


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 7, 50])
def test_one_process_equals_the_paper_formula(chunk_size) -> None:
    x, y = _embeddings(7, 5)
    t, b = _params()
    want, want_grads = _grads(_paper_loss, x, y, t, b)
    got, got_grads = _grads(_module_loss(chunk_size), x, y, t, b)
    torch.testing.assert_close(got, want, **TIGHT)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, **TIGHT)


@pytest.mark.skipif(not HAS_OPEN_CLIP, reason="open_clip_torch is not installed (the [test] extra has it)")
def test_one_process_equals_open_clip() -> None:
    SigLipLoss = _open_clip_siglip()
    x, y = _embeddings(9, 6, seed=3)
    t, b = torch.tensor(1.7, dtype=torch.float64), torch.tensor(-4.0, dtype=torch.float64)
    want, want_grads = _grads(lambda x, y, t, b: SigLipLoss()(x, y, t.exp(), b), x, y, t, b)
    got, got_grads = _grads(_module_loss(chunk_size=4), x, y, t, b)
    torch.testing.assert_close(got, want, **TIGHT)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, **TIGHT)


def test_chunked_equals_unchunked_through_the_module() -> None:
    x, y = _embeddings(10, 4, seed=1)
    results = []
    for chunk_size in (None, 1, 3, 4, 10):
        loss = SigLIPLoss(chunk_size=chunk_size).double()
        xs, ys = x.clone().requires_grad_(), y.clone().requires_grad_()
        value = loss(xs, ys)
        (2.5 * value).backward()  # the incoming gradient scales the gradients saved in forward
        results.append((value.detach(), xs.grad, ys.grad, loss.logit_scale.grad, loss.logit_bias.grad))
    for other in results[1:]:
        for g, w in zip(other, results[0], strict=True):
            torch.testing.assert_close(g, w, **TIGHT)
    want, want_grads = _grads(_paper_loss, x, y, *_params())
    for g, w in zip(results[0][1:], want_grads, strict=True):
        torch.testing.assert_close(g, 2.5 * w, **TIGHT)


def test_no_logits_are_kept_for_backward() -> None:
    """What autograd keeps is the [B, D] gradients and two scalars, never a [B, B] logits block."""
    rows, dim = 64, 8
    x, y = (t.requires_grad_() for t in _embeddings(rows, dim))
    saved: list[torch.Size] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        SigLIPLoss(chunk_size=16).double()(x, y).backward()
    assert max(s.numel() for s in saved) == rows * dim
    assert sum(s.numel() for s in saved) == 2 * rows * dim + 2 + 1  # gx, gy, scale, bias; exp(t')


def test_no_grad_frozen_inputs_and_low_precision() -> None:
    x, y = _embeddings(6, 4)
    t, b = _params()
    want, want_grads = _grads(_paper_loss, x, y, t, b)
    with torch.no_grad():
        torch.testing.assert_close(sigmoid_loss(x, y, t.exp(), b), want, **TIGHT)
    frozen_image = y.clone().requires_grad_()  # a locked image tower (LiT): only texts learn
    sigmoid_loss(x, frozen_image, t.exp(), b, chunk_size=4).backward()
    torch.testing.assert_close(frozen_image.grad, want_grads[1], **TIGHT)
    half = [v.to(torch.bfloat16).requires_grad_() for v in (x, y)]
    value = sigmoid_loss(*half, t.float().exp(), b.float())
    value.backward()
    assert value.dtype == torch.float32 and half[0].grad.dtype == torch.bfloat16
    torch.testing.assert_close(value.double(), want, rtol=2e-2, atol=0)
    single = [v.float() for v in (x, y, t.exp(), b)]
    plain = sigmoid_loss(*single)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16-mixed: the logits stay in float32
        torch.testing.assert_close(sigmoid_loss(*single), plain, rtol=0, atol=0)
    torch.testing.assert_close(plain.double(), want, rtol=1e-6, atol=0)


def test_bad_arguments_name_the_value() -> None:
    with pytest.raises(ValueError, match=r"unknown SigLIP exchange 'bidir'.*Did you mean 'bidirectional'"):
        SigLIPLoss(exchange="bidir")
    with pytest.raises(ValueError, match=r"unknown SigLIP exchange 'allgather'.*Did you mean 'all_gather'"):
        sigmoid_loss(
            torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(()), torch.zeros(()), exchange="allgather"
        )
    for bad in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match=f"chunk_size must be a positive integer or None.*got {bad!r}"):
            SigLIPLoss(chunk_size=bad)
    with pytest.raises(ValueError, match=r"one shape \[B_local, D\].*got \(2, 3\) and \(2, 4\)"):
        SigLIPLoss()(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"B_local >= 1, got \(0, 3\)"):
        SigLIPLoss()(torch.zeros(0, 3), torch.zeros(0, 3))
    with pytest.raises(ValueError, match=r"scalar bias, got shape \(2,\)"):
        sigmoid_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(()), torch.zeros(2))


# ---------------------------------------------------------------------------------------------
# Several processes


def _counter(numels: list[int]):
    def pack(t: torch.Tensor) -> torch.Tensor:
        numels.append(t.numel())
        return t

    return pack


def _rank_losses(rank: int, world: int, x_all, y_all, logit_scale, bias, rows: int) -> dict:
    """Every exchange and chunking on this rank's slice of the global batch: loss and gradients."""
    x, y = x_all[rank * rows : (rank + 1) * rows], y_all[rank * rows : (rank + 1) * rows]
    out = {}
    for exchange in EXCHANGES:
        for chunk_size in (None, 2):
            loss = SigLIPLoss(exchange=exchange, chunk_size=chunk_size).double()
            with torch.no_grad():
                loss.logit_scale.copy_(logit_scale)
                loss.logit_bias.copy_(bias)
            xs, ys = x.clone().requires_grad_(), y.clone().requires_grad_()
            saved: list[int] = []
            with torch.autograd.graph.saved_tensors_hooks(_counter(saved), lambda t: t):
                value = loss(xs, ys)
            value.backward()
            with torch.no_grad():  # no gradients, no accumulator messages: the value is the same
                value_no_grad = loss(x, y)
            out[exchange, chunk_size] = {
                "loss": value.detach(),
                "loss_no_grad": value_no_grad,
                "grads": (xs.grad, ys.grad, loss.logit_scale.grad, loss.logit_bias.grad),
                "saved": sum(saved),
            }
    if HAS_OPEN_CLIP:
        SigLipLoss = _open_clip_siglip()
        xs, ys = x.clone().requires_grad_(), y.clone().requires_grad_()
        t, b = logit_scale.clone().requires_grad_(), bias.clone().requires_grad_()
        value = SigLipLoss(rank=rank, world_size=world, dist_impl="bidir")(xs, ys, t.exp(), b)
        value.backward()
        out["open_clip"] = {"loss": value.detach(), "grads": (xs.grad, ys.grad, t.grad, b.grad)}
    return out


@pytest.mark.distributed
@pytest.mark.parametrize("world", [2, 3, 4])
def test_distributed_equals_one_process_over_the_global_batch(world: int, tmp_path) -> None:
    """Per rank r: loss_r = -1/B_local sum_{i in r, all j}; mean_r loss_r = the global loss; each
    rank's embedding gradients are W times the global loss's (DDP averages them back); the mean of
    the ranks' temperature and bias gradients is the global one."""
    rows, dim = 3, 4
    x_all, y_all = _embeddings(world * rows, dim, seed=world)
    t, b = torch.tensor(1.9, dtype=torch.float64), torch.tensor(-3.5, dtype=torch.float64)
    want, (gx, gy, gt, gb) = _grads(_paper_loss, x_all, y_all, t, b)
    ranks = run_on_ranks(_rank_losses, world, tmp_path, x_all, y_all, t, b, rows)

    for key in [(e, c) for e in EXCHANGES for c in (None, 2)] + (["open_clip"] if HAS_OPEN_CLIP else []):
        per_rank = [r[key] for r in ranks]
        torch.testing.assert_close(torch.stack([r["loss"] for r in per_rank]).mean(), want, **TIGHT)
        for rank, r in enumerate(per_rank):
            rows_r = slice(rank * rows, (rank + 1) * rows)
            own = _paper_rows(x_all, y_all, t, b, rows_r)
            torch.testing.assert_close(r["loss"], own, **TIGHT, msg=f"{key} rank {rank} loss")
            if "loss_no_grad" in r:
                torch.testing.assert_close(r["loss_no_grad"], own, **TIGHT, msg=f"{key} rank {rank} no_grad")
            torch.testing.assert_close(
                r["grads"][0], world * gx[rows_r], **TIGHT, msg=f"{key} rank {rank} image"
            )
            torch.testing.assert_close(
                r["grads"][1], world * gy[rows_r], **TIGHT, msg=f"{key} rank {rank} text"
            )
        for i, name, want_grad in ((2, "temperature", gt), (3, "bias", gb)):
            mean = torch.stack([r["grads"][i] for r in per_rank]).mean()
            torch.testing.assert_close(mean, want_grad, **TIGHT, msg=f"{key} {name}")

    # what autograd keeps: the bidirectional exchange keeps [B, D] gradients whatever W is, the
    # all-gather the gathered texts' gradient [W * B, D]
    for r in ranks:
        assert r["bidirectional", 2]["saved"] == 2 * rows * dim + 3
        assert r["all_gather", 2]["saved"] == (world + 1) * rows * dim + 3


def _paper_rows(x_all, y_all, t, b, rows: slice):
    """One rank's share: its images against every text, divided by its batch (open_clip, SigLIP)."""
    logits = t.exp() * x_all[rows] @ y_all.T + b
    labels = -torch.ones_like(logits)
    labels[:, rows] += 2 * torch.eye(logits.shape[0], dtype=logits.dtype)
    return -F.logsigmoid(labels * logits).sum() / logits.shape[0]


# The splits of 4 ranks tried in one spawn: the issue's {0,1} {2,3}; interleaved groups, whose
# group ranks differ from the global ones in every group; a ring of 3 that runs both directions
# (group rank 0 is global rank 1) beside a group of one (no exchange at all).
SPLITS: tuple[tuple[tuple[int, ...], ...], ...] = (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((1, 2, 3), (0,)))


def _group_losses(rank: int, world: int, x_all, y_all, logit_scale, bias, rows: int) -> dict:
    """Loss and gradients of this rank's slice under each split's group, for both exchanges."""
    import torch.distributed as dist

    x, y = x_all[rank * rows : (rank + 1) * rows], y_all[rank * rows : (rank + 1) * rows]
    out = {}
    for split in SPLITS:
        # every rank creates every group, in the same order; a wrong peer fails in a minute, not 30
        groups = [dist.new_group(list(members), timeout=timedelta(seconds=60)) for members in split]
        group = next(g for g, members in zip(groups, split, strict=True) if rank in members)
        for exchange in EXCHANGES:
            loss = SigLIPLoss(exchange=exchange, chunk_size=2, group=group).double()
            with torch.no_grad():
                loss.logit_scale.copy_(logit_scale)
                loss.logit_bias.copy_(bias)
            xs, ys = x.clone().requires_grad_(), y.clone().requires_grad_()
            value = loss(xs, ys)
            value.backward()
            out[split, exchange] = (
                value.detach(),
                xs.grad,
                ys.grad,
                loss.logit_scale.grad,
                loss.logit_bias.grad,
            )
        outsider = [g for g, members in zip(groups, split, strict=True) if rank not in members]
        if len(split[0]) == 3 and outsider:  # global rank 0, given the group of ranks 1, 2 and 3
            try:
                sigmoid_loss(x, y, logit_scale.exp(), bias, group=outsider[0])
            except ValueError as exc:
                out["outsider"] = str(exc)
    return out


@pytest.mark.distributed
def test_process_groups_each_equal_one_process_over_their_own_batch(tmp_path) -> None:
    """4 ranks in groups: per group G of W_G ranks, rank r's loss is its rows' share of the loss over
    G's concatenated batch, its embedding gradients W_G times that loss's, and the mean over G of
    the temperature and bias gradients that loss's; other groups' embeddings play no part."""
    world, rows, dim = 4, 3, 4
    x_all, y_all = _embeddings(world * rows, dim, seed=11)
    t, b = torch.tensor(1.9, dtype=torch.float64), torch.tensor(-3.5, dtype=torch.float64)
    ranks = run_on_ranks(_group_losses, world, tmp_path, x_all, y_all, t, b, rows)

    for split in SPLITS:
        for members in split:
            # the group's batch: its ranks' slices in group-rank (sorted global rank) order
            index = torch.cat([torch.arange(r * rows, (r + 1) * rows) for r in sorted(members)])
            xg, yg = x_all[index], y_all[index]
            _, (gx, gy, gt, gb) = _grads(_paper_loss, xg, yg, t, b)
            for exchange in EXCHANGES:
                got = [ranks[r][split, exchange] for r in sorted(members)]
                for group_rank, (value, grad_x, grad_y, _, _) in enumerate(got):
                    own = slice(group_rank * rows, (group_rank + 1) * rows)
                    where = f"{split} {exchange} group {members} rank {sorted(members)[group_rank]}"
                    torch.testing.assert_close(value, _paper_rows(xg, yg, t, b, own), **TIGHT, msg=where)
                    torch.testing.assert_close(grad_x, len(members) * gx[own], **TIGHT, msg=f"{where} image")
                    torch.testing.assert_close(grad_y, len(members) * gy[own], **TIGHT, msg=f"{where} text")
                for i, name, want in ((3, "temperature", gt), (4, "bias", gb)):
                    mean = torch.stack([g[i] for g in got]).mean()
                    torch.testing.assert_close(
                        mean, want, **TIGHT, msg=f"{split} {exchange} {members} {name}"
                    )
    # a rank given a group it is not in is told so, instead of waiting for messages that never come
    assert "global rank 0 is not a member" in ranks[0]["outsider"]


class _LiveBlocks(TorchDispatchMode):
    """The most ``[B, D]`` storages alive at once among those ops create (the inputs' own excluded)."""

    def __init__(self, nbytes: int, inputs: tuple[torch.Tensor, ...]) -> None:
        super().__init__()
        self.nbytes, self.peak = nbytes, 0
        self.inputs = {StorageWeakRef(t.untyped_storage()).cdata for t in inputs}
        self.live: dict[int, StorageWeakRef] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.live = {k: ref for k, ref in self.live.items() if not ref.expired()}
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() == self.nbytes:
                ref = StorageWeakRef(t.untyped_storage())
                if ref.cdata not in self.inputs:
                    self.live.setdefault(ref.cdata, ref)
        self.peak = max(self.peak, len(self.live))
        return out


# Rings of every size from 2 to 6 out of one spawn of 6 ranks: each split's groups run at once.
RING_SPLITS: tuple[tuple[tuple[int, ...], ...], ...] = (
    ((0, 1), (2, 3), (4, 5)),
    ((0, 1, 2), (3, 4, 5)),
    ((0, 1, 2, 3), (4, 5)),
    ((0, 1, 2, 3, 4), (5,)),
    ((0, 1, 2, 3, 4, 5),),
)


def _ring_buffers(rank: int, world: int, rows: int, dim: int) -> list[tuple[int, int]]:
    """Per split: this rank's ring size and the most [B, D] buffers its forward + backward held."""
    import torch.distributed as dist

    out = []
    for split in RING_SPLITS:
        groups = [dist.new_group(list(members), timeout=timedelta(seconds=60)) for members in split]
        members, group = next((m, g) for m, g in zip(split, groups, strict=True) if rank in m)
        x, y = (t.requires_grad_() for t in _embeddings(rows, dim, seed=rank))
        loss = SigLIPLoss(chunk_size=3, group=group).double()  # logits chunks [3, B] are not [B, D]
        mode = _LiveBlocks(rows * dim * x.element_size(), (x, y))
        with mode:
            loss(x, y).backward()
        out.append((len(members), mode.peak))
    return out


@pytest.mark.distributed
def test_bidirectional_exchange_holds_a_bounded_number_of_blocks(tmp_path) -> None:
    """gx, gy and at most four [B, D] buffers per direction (the block, the next one, the outgoing
    and the incoming accumulator), whatever the ring size: a block sent last round must not
    outlive its message."""
    ranks = run_on_ranks(_ring_buffers, 6, tmp_path, 8, 5)
    # W = 2: one direction, one round (block, accumulator); 3: two directions, one round each;
    # 4: a second round to the right; from 5 on both directions have a next block and accumulator
    want = {2: 2 + 2, 3: 2 + 4, 4: 2 + 6, 5: 2 + 8, 6: 2 + 8}
    for rank, got in enumerate(ranks):
        for split, (ring, peak) in zip(RING_SPLITS, got, strict=True):
            if ring > 1:  # a group of one needs no exchange
                assert peak == want[ring], f"rank {rank} in a ring of {ring} ({split}): {peak} buffers"
