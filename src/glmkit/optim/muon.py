"""timm's Muon, orthogonalising each weight's original matrix block by block, on FSDP shards too.

Two things timm's ``Muon`` cannot know from the parameter tensors alone, which its param groups
here carry per parameter (:func:`~glmkit.optim.muon_param_groups` fills them in):

* ``orig_shapes``: the parameter's shape before FSDP flattened it (:mod:`glmkit.optim.shapes`).
  Under FSDP (``use_orig_params=True``) each rank holds a flat slice of each matrix; Newton-Schulz
  on a slice is not the orthogonalisation of the matrix (Moonlight issue #27 reports -inf from it).
  Each rank therefore all-gathers the slices of its Muon updates, orthogonalises whole matrices
  and keeps its own slice, as Moonlight's distributed Muon does (arXiv 2502.16982).
* ``muon_blocks``: how many equal row blocks a matrix is orthogonalised in. A fused qkv weight
  ``[3D, D]`` orthogonalised as one matrix lets v's larger gradient take the whole spectral
  budget, shrinking q's and k's updates; as three ``[D, D]`` blocks (nanochat, modded-nanogpt) or
  one block per head, every projection gets an update of the same RMS.

Everything else -- the AdamW/NAdamW fallback, the Newton-Schulz iteration and its coefficient
presets, the learning-rate adjustment -- is timm's own code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from timm.optim import Muon as TimmMuon
from timm.optim.muon import _COEFFICIENTS, get_lr_scale, resolve_ns_coefficients, zeropower_via_newtonschulz
from torch import Tensor

from glmkit.optim.shapes import is_fsdp_flattened

_MUON_STATE = ("momentum_buffer",)
_FALLBACK_STATE = ("exp_avg", "exp_avg_sq", "step")  # timm's AdamW / NAdamW
_STATE_TENSORS = ("momentum_buffer", "exp_avg", "exp_avg_sq")
_LAYOUT_KEYS = ("use_muon", "use_fallback", "orig_shapes", "muon_blocks", "param_names")


@dataclass(eq=False)
class _Matrix:
    """One Muon parameter in one step: where its update comes from and how it is orthogonalised."""

    param: Tensor
    group: dict[str, Any]
    rows: int
    cols: int
    blocks: int
    sharded: bool
    update: Tensor | None = None  # the momentum update: this rank's slice, then (sharded) the whole matrix
    start: int = 0  # where that slice starts in the flattened matrix


class Muon(TimmMuon):
    r"""``timm.optim.Muon`` with per-parameter original shapes, block-wise and FSDP-sharded updates.

    Every param group is flagged ``use_muon`` or ``use_fallback`` (as
    :func:`~glmkit.optim.muon_param_groups` makes them); fallback groups run timm's AdamW (NAdamW
    with ``nesterov=True``) unchanged. For each parameter :math:`W` of a Muon group, with original
    shape :math:`m \times n` (trailing dimensions flattened into :math:`n`), :math:`b` row blocks,
    gradient :math:`G`, momentum buffer :math:`B` (zero at the first step), learning rate
    :math:`\gamma`, weight decay :math:`\lambda` and momentum :math:`\mu`, one step is::

        W <- W * (1 - gamma * lambda)
        B <- mu * B + (1 - mu) * G
        U <- (1 - mu) * G + mu * B        if nesterov, else  U <- B
        [U_1; ...; U_b] = U               (row blocks of m/b x n; all-gathered first when W is an FSDP slice)
        O_j <- NS(U_j)                    Newton-Schulz in bf16: U_j / ||U_j||_F, then ns_steps iterations
        W <- W - gamma * s(m/b, n) * [O_1; ...; O_b]

    with :math:`s(r, c) = 0.2\sqrt{\max(r, c)}` for ``adjust_lr_fn="match_rms_adamw"`` (each block's
    update then has RMS :math:`0.2\gamma`, AdamW's), :math:`\sqrt{\max(1, r/c)}` for ``"original"``
    and 1 for None. With :math:`b = 1` on an unsharded parameter this is exactly timm's update.

    Param group keys, per parameter, in the order of ``params``:

    * ``orig_shapes``: the shape before any flattening (default: the current shape). A parameter
      whose current shape differs is an FSDP slice: every rank of ``process_group`` must step the
      same Muon parameters in the same order, and the slices, in rank order, must make up the
      whole flattened matrix (FSDP's ``FULL_SHARD`` / ``SHARD_GRAD_OP`` over that group);
    * ``muon_blocks``: number of equal row blocks orthogonalised separately (default 1);
    * ``param_names`` (optional): names used in error messages.

    Args:
        params: param groups, each with ``use_muon=True`` or ``use_fallback=True``.
        process_group: the group FSDP shards parameters over (None: the default group).
        **kwargs: ``timm.optim.Muon``'s arguments (``lr``, ``weight_decay``, ``momentum``,
            ``nesterov``, ``ns_steps``, ``ns_coefficients``, ``eps``, ``adjust_lr_fn``, ``betas``, ...);
            ``algo="adamuon"``, ``conv_mode="batched"`` and ``capturable=True`` are not supported.
    """

    def __init__(
        self, params: Iterable[dict[str, Any]], process_group: dist.ProcessGroup | None = None, **kwargs: Any
    ) -> None:
        unsupported = {"algo": "muon", "conv_mode": "flatten", "capturable": False}
        for key, supported in unsupported.items():
            if key in kwargs and kwargs[key] != supported:
                raise ValueError(f"glmkit.optim.Muon supports only {key}={supported!r}, got {kwargs[key]!r}")
        self.process_group = process_group
        super().__init__(params, **kwargs)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, checking its routing flag and per-parameter ``orig_shapes`` / ``muon_blocks``."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        label = group.get("name", f"param group {len(self.param_groups) - 1}")
        if group.get("use_fallback", False) == group.get("use_muon", False):
            raise ValueError(
                f"{label}: glmkit.optim.Muon needs every param group flagged either use_muon=True or "
                "use_fallback=True; build the groups with glmkit.optim.muon_param_groups"
            )
        group["use_muon"], group["use_fallback"] = (
            bool(group.get("use_muon")),
            bool(group.get("use_fallback")),
        )
        params = group["params"]
        names = group.get("param_names") or [f"{label}[{i}]" for i in range(len(params))]
        shapes = [tuple(s) for s in group.setdefault("orig_shapes", [tuple(p.shape) for p in params])]
        blocks = list(group.setdefault("muon_blocks", [1] * len(params)))
        if not len(shapes) == len(blocks) == len(params):
            raise ValueError(
                f"{label}: orig_shapes ({len(shapes)}) and muon_blocks ({len(blocks)}) need one entry per "
                f"parameter ({len(params)})"
            )
        for name, param, shape, count in zip(names, params, shapes, blocks, strict=True):
            if param.numel() > math.prod(shape):
                raise ValueError(f"{name}: {param.numel()} elements do not fit its original shape {shape}")
            if group["use_muon"] and (len(shape) < 2 or count < 1 or shape[0] % count):
                raise ValueError(
                    f"{name}: Muon needs a matrix whose rows split into muon_blocks equal blocks, got original "
                    f"shape {shape} and muon_blocks={count}"
                )
        group["orig_shapes"], group["muon_blocks"] = shapes, blocks

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state; under FSDP every parameter carries every state tensor.

        FSDP's ``optim_state_dict`` (``use_orig_params=True``) gathers the state key by key over
        each flat parameter and needs the same keys for every parameter on every rank, while Muon
        keeps a ``momentum_buffer`` and AdamW ``exp_avg`` / ``exp_avg_sq``. When any parameter is
        FSDP-managed, the tensors a parameter lacks are zeros in the returned copy (never in the
        live state); :meth:`load_state_dict` drops them again.
        """
        state_dict = super().state_dict()
        params = [p for g in self.param_groups for p in g["params"]]
        packed = state_dict["state"]
        if not packed or not any(is_fsdp_flattened(p) for p in params):
            return state_dict
        for index, param in enumerate(params):
            missing = [k for k in _STATE_TENSORS if k not in packed.get(index, {})]
            if param.numel() and missing:
                packed[index] = {**packed.get(index, {}), **{k: torch.zeros_like(param) for k in missing}}
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state, keeping this optimizer's routing and matrix layout.

        Routing and layout (``use_muon``, ``orig_shapes``, ``muon_blocks``, ...) describe the model
        and the recipe, not the run, so they are not taken from the checkpoint (one saved by
        ``timm.optim.Muon`` has none). State tensors the other kind of group keeps (see
        :meth:`state_dict`) are dropped.
        """
        layouts = [{k: g[k] for k in _LAYOUT_KEYS if k in g} for g in self.param_groups]
        super().load_state_dict(state_dict)
        for group, layout in zip(self.param_groups, layouts, strict=True):
            group.update(layout)
        for group in self.param_groups:
            unused = _FALLBACK_STATE if group["use_muon"] else _MUON_STATE
            for param in group["params"]:
                if param in self.state:
                    for key in unused:
                        self.state[param].pop(key, None)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One optimisation step: Muon groups here, fallback groups by timm's ``step``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._muon_step([g for g in self.param_groups if g["use_muon"]])
        fallback = [g for g in self.param_groups if g["use_fallback"]]
        if fallback:
            everything, self.param_groups = self.param_groups, fallback
            try:
                _timm_step(self)
            finally:
                self.param_groups = everything
        return loss

    def _muon_step(self, groups: Sequence[dict[str, Any]]) -> None:
        matrices = []
        for group in groups:
            for param, shape, blocks in zip(
                group["params"], group["orig_shapes"], group["muon_blocks"], strict=True
            ):
                sharded = tuple(param.shape) != tuple(shape)
                if param.grad is None and not sharded:
                    continue  # as in timm: no gradient, no step
                matrices.append(_Matrix(param, group, shape[0], math.prod(shape[1:]), blocks, sharded))
        # every rank steps the same sharded matrices in the same order: those with a gradient anywhere
        sharded = [m for m in matrices if m.sharded]
        sizes = self._slice_sizes(sharded) if sharded else torch.zeros(1, 0, dtype=torch.int64)
        stepping = (sizes >= 0).all(0).tolist()
        sharded = [m for m, s in zip(sharded, stepping, strict=True) if s]
        sizes = sizes[:, [i for i, s in enumerate(stepping) if s]]
        matrices = [m for m in matrices if not m.sharded] + sharded
        for m in matrices:  # decay and momentum are elementwise: each rank updates its own slice
            group, state = m.group, self.state[m.param]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(m.param, memory_format=torch.preserve_format)
            if m.param.grad is None:  # an empty FSDP slice
                m.update = m.param.detach().new_empty(0)
                continue
            m.param.mul_(1 - group["lr"] * group["weight_decay"])
            buf = state["momentum_buffer"]
            buf.lerp_(m.param.grad, 1.0 - group["momentum"])
            m.update = m.param.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
        wholes = self._gather(sharded, sizes) if sharded else []
        rank = _rank(self.process_group)
        for i, (m, whole) in enumerate(zip(sharded, wholes, strict=True)):
            m.update, m.start = whole, int(sizes[:rank, i].sum())
        for m in matrices:
            ortho, scale = _orthogonalise(m.update.reshape(m.rows, m.cols), m.blocks, m.group)
            if m.sharded:  # keep this rank's slice of the orthogonalised matrix
                ortho = ortho.reshape(-1)[m.start : m.start + m.param.numel()]
            m.param.add_(ortho.reshape(m.param.shape), alpha=-m.group["lr"] * scale)

    def _slice_sizes(self, sharded: list[_Matrix]) -> Tensor:
        """``[world, n]`` sizes of every rank's slice of each sharded matrix (-1: no gradient there)."""
        local = torch.tensor(
            [m.param.numel() if m.param.grad is not None or m.param.numel() == 0 else -1 for m in sharded],
            dtype=torch.int64,
            device=sharded[0].param.device,
        )
        if not _distributed(self.process_group):
            sizes = local[None].cpu()
        else:
            gathered = [torch.empty_like(local) for _ in range(dist.get_world_size(self.process_group))]
            dist.all_gather(gathered, local, group=self.process_group)
            sizes = torch.stack(gathered).cpu()
        for i, m in enumerate(sharded):
            column, total = sizes[:, i], m.rows * m.cols
            name = _name_of(m)
            if (column < 0).any() and (column > 0).any():
                raise RuntimeError(
                    f"Muon: {name} has a gradient on some ranks' slices but not on others "
                    f"(slice sizes per rank, -1 = no gradient: {column.tolist()}); every rank's forward must use it"
                )
            if not (column < 0).any() and int(column.sum()) != total:
                raise RuntimeError(
                    f"Muon: the slices of {name} on the ranks of the process group hold {int(column.sum())} "
                    f"elements, but its original shape has {total}; pass Muon(process_group=...) the group "
                    "FSDP shards over (HYBRID_SHARD shards within a node)"
                )
        return sizes

    def _gather(self, sharded: list[_Matrix], sizes: Tensor) -> list[Tensor]:
        """Each sharded matrix's whole flattened update, from every rank's slice, in one all-gather."""
        local = [m.update.reshape(-1).float() for m in sharded]
        if not _distributed(self.process_group):
            return local
        longest = int(sizes.sum(1).max())
        packed = torch.zeros(longest, dtype=torch.float32, device=local[0].device)
        flat = torch.cat(local)
        packed[: flat.numel()] = flat
        gathered = [torch.empty_like(packed) for _ in range(sizes.shape[0])]
        dist.all_gather(gathered, packed, group=self.process_group)
        counts = sizes.tolist()  # [rank][matrix]
        starts = (torch.cumsum(sizes, 1) - sizes).tolist()  # where each slice starts in its rank's buffer
        ranks = range(len(counts))
        return [
            torch.cat([gathered[r][starts[r][i] : starts[r][i] + counts[r][i]] for r in ranks])
            for i in range(len(sharded))
        ]


def _orthogonalise(update: Tensor, blocks: int, group: dict[str, Any]) -> tuple[Tensor, float]:
    """Newton-Schulz on each of ``blocks`` row blocks of ``update [rows, cols]`` and the lr scale."""
    rows, cols = update.shape
    coefficients = resolve_ns_coefficients(group["ns_coefficients"], _COEFFICIENTS)
    extra = {}  # passed only when set, so that older timm releases without them still work
    if group.get("safety_factor", 1.0) != 1.0:
        extra["safety_factor"] = group["safety_factor"]
    if group.get("scale_eps", False):
        extra["scale_eps"] = True
    matrix = update if blocks == 1 else update.reshape(blocks, rows // blocks, cols)  # blocks, rows/b, cols
    ortho = zeropower_via_newtonschulz(matrix, group["ns_steps"], coefficients, eps=group["eps"], **extra)
    adjust = group["adjust_lr_fn"]
    scale = get_lr_scale(torch.Size((rows // blocks, cols)), adjust) if adjust else 1.0
    return ortho.reshape(rows, cols), scale


def _timm_step(optimizer: Muon) -> None:
    # torch wraps the first-instantiated class's `step` with its hook runner; calling the wrapped
    # timm step from ours would run this optimizer's step hooks twice
    step = TimmMuon.step
    if getattr(step, "hooked", False):
        step = step.__wrapped__
    step(optimizer)


def _distributed(group: dist.ProcessGroup | None) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def _rank(group: dist.ProcessGroup | None) -> int:
    return dist.get_rank(group) if _distributed(group) else 0


def _name_of(m: _Matrix) -> str:
    index = next(i for i, p in enumerate(m.group["params"]) if p is m.param)
    names = m.group.get("param_names")
    return repr(names[index]) if names else f"parameter {index} of group {m.group.get('name', '?')!r}"
