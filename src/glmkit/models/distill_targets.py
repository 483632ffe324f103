"""Turning teacher features into distillation targets: grid alignment and normalisation.

Teachers may disagree in grid (a patch-14 teacher at 224 px gives 16x16 tokens, a patch-16 student
14x14; resampling by such a non-integer factor warns) and wildly in scale (DINOv3 activations are an order of magnitude larger than SigLIP2's),
so before the loss each teacher's features are resampled to the student grid and normalised per
teacher. Without normalisation the teacher with the largest features dominates the summed loss
(PHI-S, Ranzinger et al. 2024, arXiv 2410.01680).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from glmkit.nn.fixed_precision import FixedPrecisionModule
from glmkit.registry import declare


class TargetResamplingWarning(UserWarning):
    """Teacher features are resampled to the student grid by a non-integer factor (blurred targets)."""


def is_integer_factor(grid: tuple[int, int], target_grid: tuple[int, int]) -> bool:
    """Whether every axis of ``grid`` maps to ``target_grid`` by a whole factor (up or down)."""
    return all(a % b == 0 or b % a == 0 for a, b in zip(grid, target_grid, strict=True))


def resample_to_grid(
    features: Tensor, grid: tuple[int, int], target_grid: tuple[int, int], teacher: str | None = None
) -> Tensor:
    """Bilinearly resample ``[B, h*w, D]`` token features on ``grid`` to ``target_grid``.

    A non-integer factor (a patch-14 teacher's 16x16 grid to a patch-16 student's 14x14) mixes
    neighbouring teacher tokens into every target and keeps only part of the fine detail (about
    35% of its variance for 16 -> 14), so it raises a :class:`TargetResamplingWarning` naming
    ``teacher`` and both grids; use a teacher with the student's patch size, or run the teacher at
    the resolution that gives the student's grid.
    """
    h, w = grid
    if features.shape[1] != h * w:
        raise ValueError(f"features have {features.shape[1]} tokens but the grid {grid} has {h * w}")
    if tuple(grid) == tuple(target_grid):
        return features
    if not is_integer_factor(tuple(grid), tuple(target_grid)):
        # one warning per (teacher, grids): Python's filter drops repeats of the same message
        warnings.warn(
            f"teacher {teacher or '(unnamed)'!r}: its {h}x{w} feature grid is resampled to the student's "
            f"{target_grid[0]}x{target_grid[1]} grid by a non-integer factor, which blurs the targets; "
            "use a teacher with the student's patch size or set its image_size so that the grids match",
            TargetResamplingWarning,
            stacklevel=2,
        )
    b, _, d = features.shape
    x = features.transpose(1, 2).reshape(b, d, h, w)  # B, D, h, w
    # antialias when shrinking, so every teacher token contributes (area-like), not just a sample
    x = F.interpolate(x.float(), size=target_grid, mode="bilinear", align_corners=False, antialias=True)
    return x.flatten(2).transpose(1, 2).to(features.dtype)  # B, h'*w', D


class TargetNorm(nn.Module):
    """Base class: ``forward(features [B, N, D]) -> normalised features``; may update statistics.

    A stage builds one per teacher with that teacher's width as the first argument, so a recipe
    names the class and its other arguments (``{class_path: PHISNorm, init_args: {estimate_steps:
    100}}``) and the stage supplies ``dim``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim


TARGET_NORMS = declare("target_norms", "per-teacher normalisation of distillation targets", base=TargetNorm)


@TARGET_NORMS.register("none")
class IdentityNorm(TargetNorm):
    """No normalisation."""

    def forward(self, features: Tensor) -> Tensor:
        """Return the features unchanged."""
        return features


@TARGET_NORMS.register("layernorm")
class LayerNormTarget(TargetNorm):
    """Per-token standardisation over channels (LayerNorm without affine parameters)."""

    def forward(self, features: Tensor) -> Tensor:
        """Standardise each token."""
        return F.layer_norm(features.float(), (features.shape[-1],))


@TARGET_NORMS.register("phis")
class PHISNorm(FixedPrecisionModule, TargetNorm):
    """PHI-S isotropic standardisation: ``y = H U^T (x - mu) / alpha``.

    ``mu`` and ``Sigma = U diag(lambda) U^T`` are the teacher's feature mean and covariance,
    ``alpha = sqrt(mean(lambda))`` and ``H`` a normalised Hadamard matrix. The rotation spreads
    the variance of every principal direction evenly over all channels, so each output channel
    has unit variance and the teachers are balanced without distorting the geometry of any one of
    them. Where no Sylvester Hadamard matrix exists (``dim`` not a power of two) ``H`` is instead a
    product of Givens rotations chosen to make the diagonal of ``H diag(lambda) H^T`` constant,
    which gives the same per-channel unit variance.

    Statistics are accumulated over ``estimate_steps`` batches (all-reduced across ranks so every
    rank normalises identically) and then frozen. :class:`~glmkit.stages.MIMDistill` feeds it the
    first ``estimate_steps`` training batches in a pass before the first step (RADIO computes the
    statistics offline), so training starts on normalised targets; without such a pass, a module
    in training mode folds each batch it normalises into the statistics until they are frozen. They are saved with the
    checkpoint as the module's extra state, so a resumed run normalises exactly as before. They are
    not buffers: casts (``.to(bfloat16)``, FSDP's ``buffer_dtype`` under ``bf16-mixed``) would
    round the float64 running sums, so they only ever follow the module's device.
    """

    _STATISTICS = ("count", "sum", "sum_outer", "steps_seen", "mean", "transform")

    def __init__(self, dim: int, estimate_steps: int = 100, eps: float = 1e-6) -> None:
        super().__init__(dim)
        if estimate_steps < 1:
            raise ValueError(f"PHISNorm needs estimate_steps >= 1, got {estimate_steps}")
        self.estimate_steps = estimate_steps
        self.eps = eps
        self._reset_statistics(None)

    def _reset_statistics(self, device: torch.device | None) -> None:
        dim = self.dim
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.sum_outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)
        self.steps_seen = torch.zeros((), dtype=torch.long, device=device)
        self.mean = torch.zeros(dim, device=device)
        self.transform = torch.eye(dim, device=device)

    @property
    def ready(self) -> bool:
        """True once the statistics are estimated and the transform is frozen."""
        return int(self.steps_seen) >= self.estimate_steps

    @torch.no_grad()
    def update(self, features: Tensor) -> None:
        """Accumulate statistics of ``features [..., D]`` (summed over ranks); on the last
        estimation step, compute and freeze the transform."""
        self.follow(features.device)
        x = features.reshape(-1, self.dim).double()
        stats = torch.cat([x.new_tensor([x.shape[0]]), x.sum(0), (x.T @ x).flatten()])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        self.count += stats[0]
        self.sum += stats[1 : 1 + self.dim]
        self.sum_outer += stats[1 + self.dim :].view(self.dim, self.dim)
        self.steps_seen += 1
        if self.ready:
            self._freeze()

    def _freeze(self) -> None:
        mean = self.sum / self.count
        cov = self.sum_outer / self.count - torch.outer(mean, mean)
        eigvals, eigvecs = torch.linalg.eigh(cov)
        eigvals = eigvals.clamp_min(0)
        alpha = eigvals.mean().sqrt().clamp_min(self.eps)
        rotation = _hadamard(self.dim)
        if rotation is None:
            rotation = _equalising_rotation(eigvals / alpha**2).T
        rotation = rotation.to(eigvecs)
        self.mean.copy_(mean.float())
        # y = H U^T (x - mu) / alpha, stored as a matrix acting on row vectors: (x - mu) @ T
        self.transform.copy_((eigvecs @ rotation.T / alpha).float())

    def forward(self, features: Tensor) -> Tensor:
        """Normalise; while estimating (training only), fold this batch into the statistics.

        Until the transform is frozen the output is not yet normalised: the stage gives such a
        teacher loss weight 0 (see ``ready``).
        """
        self.follow(features.device)  # FSDP moves parameters and buffers, not these
        if self.training and not self.ready:
            self.update(features)
        return (features.float() - self.mean) @ self.transform

    def save_statistics(self, path: str | Path) -> None:
        """Write the statistics to ``path`` (a torch file), to be loaded by :meth:`load_statistics`."""
        state = {name: value.cpu() for name, value in self.get_extra_state().items()}
        torch.save({"dim": self.dim, **state}, Path(path))

    def load_statistics(self, path: str | Path) -> None:
        """Read statistics written by :meth:`save_statistics` (RADIO computes PHI-S offline); with at
        least ``estimate_steps`` batches in them the transform is frozen, no estimate runs."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        if state.get("dim") != self.dim:
            raise ValueError(
                f"PHI-S statistics in {str(path)!r} are for width {state.get('dim')}, this teacher's is {self.dim}"
            )
        self.set_extra_state({name: state[name] for name in self._STATISTICS})

    def get_extra_state(self) -> dict[str, Tensor]:
        """The statistics, for the checkpoint."""
        return {name: getattr(self, name) for name in self._STATISTICS}

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        """Restore the statistics of a checkpoint, checking they fit this module's width."""
        missing = [name for name in self._STATISTICS if name not in state]
        if missing:
            raise KeyError(f"PHISNorm checkpoint state lacks {missing}; it holds {sorted(state)}")
        for name in self._STATISTICS:
            current, value = getattr(self, name), state[name]
            if tuple(value.shape) != tuple(current.shape):
                raise ValueError(
                    f"PHISNorm statistic {name!r} of the checkpoint has shape {list(value.shape)}, but this "
                    f"PHISNorm(dim={self.dim}) needs {list(current.shape)}: was the teacher changed?"
                )
            setattr(self, name, value.to(device=current.device, dtype=current.dtype).clone())

    def fixed_device(self) -> torch.device:
        """Where the float64 statistics are."""
        return self.mean.device

    def place_fixed(self, device: torch.device) -> None:
        """Move the statistics to ``device`` (reset them if they were built on the meta device)."""
        if self.mean.is_meta:  # built on the meta device: nothing to keep
            self._reset_statistics(device)
        else:
            for name in self._STATISTICS:
                setattr(self, name, getattr(self, name).to(device))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Checkpoints written before the statistics became extra state hold them as six buffers.
        legacy = [prefix + name for name in self._STATISTICS]
        if prefix + "_extra_state" not in state_dict and all(key in state_dict for key in legacy):
            state_dict[prefix + "_extra_state"] = {
                name: state_dict.pop(key) for name, key in zip(self._STATISTICS, legacy, strict=True)
            }
        super()._load_from_state_dict(state_dict, prefix, *args)


def _hadamard(dim: int) -> Tensor | None:
    """Orthonormal Sylvester Hadamard matrix of size ``dim``, or None if ``dim`` is no power of two."""
    if dim <= 0 or dim & (dim - 1):
        return None
    h = torch.ones(1, 1)
    while h.shape[0] < dim:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(dim)


def _equalising_rotation(variances: Tensor) -> Tensor:
    """Orthogonal ``Q`` with ``diag(Q^T diag(variances) Q)`` constant (= the mean variance).

    Each Givens rotation in the plane of one channel above the mean and one below sets the first
    exactly to the mean (possible because the mean lies between the 2x2 block's eigenvalues), so
    ``dim - 1`` rotations suffice; each touches two rows and two columns only (O(dim) work).
    """
    n = len(variances)
    m = torch.diag(variances.double())
    q = torch.eye(n, dtype=torch.float64, device=variances.device)
    target = variances.double().mean()
    for _ in range(n - 1):
        d = torch.diagonal(m) - target
        i, j = int(d.argmax()), int(d.argmin())
        if d[i] <= 1e-12 * target:
            break
        a, b, c = m[i, i], m[i, j], m[j, j]
        half_diff = (a - c) / 2
        radius = torch.sqrt(half_diff**2 + b**2)
        phi = torch.atan2(b, half_diff)
        theta = (phi + torch.acos(((target - (a + c) / 2) / radius).clamp(-1, 1))) / 2
        cos, sin = torch.cos(theta), torch.sin(theta)
        # m <- G^T m G and q <- q G for the rotation G in the (i, j) plane
        mi, mj = m[:, i].clone(), m[:, j].clone()
        m[:, i], m[:, j] = cos * mi + sin * mj, -sin * mi + cos * mj
        ri, rj = m[i, :].clone(), m[j, :].clone()
        m[i, :], m[j, :] = cos * ri + sin * rj, -sin * ri + cos * rj
        qi, qj = q[:, i].clone(), q[:, j].clone()
        q[:, i], q[:, j] = cos * qi + sin * qj, -sin * qi + cos * qj
    return q
