"""Joint bin-packing of RL samples into micro-batches over text tokens and ViT patches.

GLM-5V-Turbo (section 2.4) packs the variable-length rollouts jointly over sequence length and
ViT token count, so that micro-batches are balanced in both compute and memory. Frameworks
balance the LLM length only (verl's and slime's Karmarkar-Karp on tokens or FLOPs); but image and
text loads are weakly correlated, ViT patches are 4x the merged visual tokens the LLM sees
(2x2 merge), and ViT attention is quadratic per image, so a length-balanced plan can put most of
the images of a step into one micro-batch (anchors_rl.md, pitfall 10).

:func:`plan_microbatches` takes one rollout batch (a :class:`PackItem` per sample: LLM tokens, the
patch count of each image, the GRPO group id) and returns a :class:`PackingPlan`:

1. **Steps.** With ``num_steps > 1`` (several optimizer steps per rollout batch), whole groups are
   dealt to steps, largest first, each to the step where it raises the highest normalised load
   least; a group never straddles two steps.
2. **Micro-batch count.** Per step, the fewest micro-batches that can hold the step under both
   caps (``max_text_tokens``, ``max_vit_patches`` per micro-batch), rounded up to a multiple of
   the data-parallel size, so that every rank runs the same number (training hangs otherwise).
3. **Greedy.** Samples, largest first, each go to the micro-batch where they raise the highest
   normalised load (text tokens, ViT patches, estimated time, each divided by its per-micro-batch
   mean) least, among those where both caps still hold. A failure adds ``dp_size`` micro-batches.
4. **Local search.** While the highest normalised load exceeds 1, the micro-batch that holds it
   tries moving one of its samples to another micro-batch, or swapping one with a sample of the
   64 micro-batches with the most room; the change that lowers the pair's highest load most (caps
   kept) is applied.
5. **Ranks.** Micro-batches, by estimated time, are dealt to ranks in snake order.

Estimated time is :class:`CostModel`: linear and quadratic (attention) terms for the LLM sequence
and for each image's ViT sequence. The plan is a pure function of its inputs (no randomness), so
every rank that computes it from the same metadata gets the same plan. :meth:`PackingPlan.balance`
reports max/mean per dimension for logging (the goal is at most 1.05 on each).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

DIMENSIONS = ("text_tokens", "vit_patches", "time")
_SWAP_PARTNERS = 64  # bins a local-search round tries swaps with


@dataclass(frozen=True)
class PackItem:
    """One sample to pack.

    Args:
        text_tokens: the LLM sequence length (prompt + response, the merged visual tokens included).
        image_patches: the ViT patch count of each image (each image is its own ViT sequence).
        group: the GRPO group (prompt) id; samples of one group stay in one optimizer step.
    """

    text_tokens: int
    image_patches: tuple[int, ...] = ()
    group: Hashable | None = None

    def __post_init__(self) -> None:
        if int(self.text_tokens) != self.text_tokens or self.text_tokens < 0:
            raise ValueError(f"text_tokens must be an integer >= 0, got {self.text_tokens!r}")
        patches = tuple(self.image_patches)
        if any(int(p) != p or p <= 0 for p in patches):
            raise ValueError(f"image_patches must be positive integers, got {patches!r}")
        object.__setattr__(self, "image_patches", patches)

    @property
    def vit_patches(self) -> int:
        """Patches over all images of the sample."""
        return sum(self.image_patches)

    @classmethod
    def from_merged_tokens(
        cls,
        text_tokens: int,
        merged_tokens_per_image: Sequence[int] = (),
        *,
        spatial_merge_size: int = 2,
        group: Hashable | None = None,
    ) -> PackItem:
        """From the visual tokens the LLM sees: patches = merged tokens x ``spatial_merge_size**2``."""
        if spatial_merge_size < 1:
            raise ValueError(f"spatial_merge_size must be >= 1, got {spatial_merge_size}")
        factor = spatial_merge_size * spatial_merge_size
        return cls(text_tokens, tuple(int(m) * factor for m in merged_tokens_per_image), group)


@dataclass(frozen=True)
class CostModel:
    """Estimated compute of one sample, in units of one LLM token's dense (non-attention) cost.

    ``time = text_linear * L + text_quadratic * L**2 + sum over images (vit_linear * P + vit_quadratic * P**2)``
    for LLM length L and per-image patch count P: each sample and each image is its own
    variable-length attention sequence, so the quadratic terms add per sequence. Defaults: a
    7B-class LLM (hidden 4096, 32 layers) with a 0.4B-class ViT (hidden 1536, 24 layers): dense
    work 6N per token and attention 12 x hidden x layers per pair of tokens give
    12*4096*32 / (6*7e9) ~ 1/24576 (verl's ``calculate_workload`` uses the same ratio),
    0.4e9 / 7e9 ~ 0.06 and 12*1536*24 / (6*7e9) ~ 1/96000.
    """

    text_linear: float = 1.0
    text_quadratic: float = 1.0 / 24576
    vit_linear: float = 0.06
    vit_quadratic: float = 1.0 / 96000

    def time(self, item: PackItem) -> float:
        """Estimated compute of ``item``."""
        length = float(item.text_tokens)
        vit = sum(self.vit_linear * p + self.vit_quadratic * float(p) * p for p in item.image_patches)
        return self.text_linear * length + self.text_quadratic * length * length + vit


@dataclass
class PackingPlan:
    """Micro-batches of sample indices: ``steps[s][r]`` is the list of micro-batches of rank r in
    step s, each a list of indices into the items; every rank of a step has the same number."""

    steps: list[list[list[list[int]]]]
    items: Sequence[PackItem] = field(repr=False)
    cost_model: CostModel = field(default_factory=CostModel, repr=False)

    def microbatches(self, step: int = 0) -> list[list[int]]:
        """All micro-batches of ``step``, rank by rank."""
        return [mb for rank in self.steps[step] for mb in rank]

    def balance(self) -> dict[str, float]:
        """max/mean per dimension, the worst over steps, as floats for ``log_dict``.

        Keys ``packing/<dim>_max_over_mean`` over micro-batches for ``text_tokens``,
        ``vit_patches`` and ``time``; ``packing/rank_time_max_over_mean`` over each rank's total
        time; ``packing/microbatches_per_rank`` (the most in any step); ``packing/steps``.
        """
        out: dict[str, float] = {}
        loads = _loads_array(self.items, self.cost_model)
        for s in range(len(self.steps)):
            stats = _balance(self.microbatches(s), loads)
            ranks = [sum(float(loads[i, 2]) for mb in rank for i in mb) for rank in self.steps[s]]
            stats["rank_time"] = _max_over_mean(ranks)
            for key, value in stats.items():
                name = f"packing/{key}_max_over_mean"
                out[name] = max(out.get(name, 0.0), value)
        out["packing/microbatches_per_rank"] = float(max(len(rank) for step in self.steps for rank in step))
        out["packing/steps"] = float(len(self.steps))
        return out


def microbatch_balance(
    microbatches: Sequence[Sequence[int]], items: Sequence[PackItem], cost_model: CostModel | None = None
) -> dict[str, float]:
    """max/mean over the micro-batches of text tokens, ViT patches and estimated time.

    A dimension whose total is 0 (no image in the batch) reports 1.0.
    """
    return _balance(microbatches, _loads_array(items, cost_model or CostModel()))


def _balance(microbatches: Sequence[Sequence[int]], loads: np.ndarray) -> dict[str, float]:
    totals = np.array([loads[list(mb)].sum(0) if len(mb) else np.zeros(3) for mb in microbatches])
    return {dim: _max_over_mean(totals[:, d]) for d, dim in enumerate(DIMENSIONS)}


def plan_microbatches(
    items: Sequence[PackItem],
    *,
    max_text_tokens: int,
    max_vit_patches: int,
    dp_size: int = 1,
    num_steps: int = 1,
    cost_model: CostModel | None = None,
    min_microbatches_per_rank: int = 1,
    max_rounds: int = 20_000,
) -> PackingPlan:
    """Pack ``items`` into micro-batches capped on both dimensions and balanced on all three.

    Args:
        items: one :class:`PackItem` per sample of the rollout batch.
        max_text_tokens: most LLM tokens in one micro-batch.
        max_vit_patches: most ViT patches in one micro-batch.
        dp_size: data-parallel ranks; every rank gets the same number of micro-batches per step.
        num_steps: optimizer steps the batch is split into (whole groups per step).
        cost_model: the estimated-time model (default :class:`CostModel`).
        min_microbatches_per_rank: at least this many micro-batches per rank and step.
        max_rounds: bound on local-search changes per step.
    """
    cost_model = cost_model or CostModel()
    if dp_size < 1 or num_steps < 1 or min_microbatches_per_rank < 1:
        raise ValueError(
            f"dp_size, num_steps and min_microbatches_per_rank must be >= 1, got {dp_size}, {num_steps}, "
            f"{min_microbatches_per_rank}"
        )
    if max_text_tokens < 1 or max_vit_patches < 0:
        raise ValueError(
            f"need max_text_tokens >= 1 and max_vit_patches >= 0, got {max_text_tokens}, {max_vit_patches}"
        )
    loads = _loads_array(items, cost_model)
    caps = np.array([max_text_tokens, max_vit_patches], dtype=np.float64)
    for i in range(len(items)):
        if loads[i, 0] > caps[0] or loads[i, 1] > caps[1]:
            raise ValueError(
                f"item {i} alone exceeds a cap: {int(loads[i, 0])} text tokens (max_text_tokens={max_text_tokens}), "
                f"{int(loads[i, 1])} ViT patches (max_vit_patches={max_vit_patches})"
            )
    steps = []
    for members in _split_steps(items, loads, num_steps):
        if len(members) < dp_size * min_microbatches_per_rank:
            raise ValueError(
                f"a step holds {len(members)} samples, fewer than dp_size x min_microbatches_per_rank = "
                f"{dp_size * min_microbatches_per_rank}; every rank needs a non-empty micro-batch"
            )
        bins = _pack_step(np.asarray(members), loads, caps, dp_size, min_microbatches_per_rank, max_rounds)
        steps.append(_deal_to_ranks(bins, loads, dp_size))
    return PackingPlan(steps, items, cost_model)


def _loads_array(items: Sequence[PackItem], cost_model: CostModel) -> np.ndarray:
    """``[N, 3]``: text tokens, ViT patches, estimated time."""
    if not len(items):
        return np.zeros((0, 3))
    return np.array([(it.text_tokens, it.vit_patches, cost_model.time(it)) for it in items], dtype=np.float64)


def _max_over_mean(values: Sequence[float] | np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    mean = values.mean() if values.size else 0.0
    return float(values.max() / mean) if mean > 0 else 1.0


def _split_steps(items: Sequence[PackItem], loads: np.ndarray, num_steps: int) -> list[list[int]]:
    """Whole groups to steps, largest first, each where it raises the highest normalised load least."""
    if num_steps == 1:
        return [list(range(len(items)))]
    groups: dict[Hashable, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(("group", it.group) if it.group is not None else ("item", i), []).append(i)
    if len(groups) < num_steps:
        raise ValueError(
            f"{len(groups)} groups cannot fill num_steps={num_steps} steps (groups are not split)"
        )
    members = list(groups.values())
    gload = np.array([loads[m].sum(0) for m in members])
    mean = gload.sum(0) / num_steps
    scale = np.where(mean > 0, mean, 1.0)
    order = sorted(range(len(members)), key=lambda g: (-(gload[g] / scale).max(), members[g][0]))
    step_load = np.zeros((num_steps, 3))
    steps: list[list[int]] = [[] for _ in range(num_steps)]
    for g in order:
        after = ((step_load + gload[g]) / scale).max(1)
        s = int(np.argmin(after))
        step_load[s] += gload[g]
        steps[s].extend(members[g])
    return [sorted(s) for s in steps]


def _pack_step(
    members: np.ndarray, loads: np.ndarray, caps: np.ndarray, dp: int, min_per_rank: int, max_rounds: int
) -> list[list[int]]:
    x = loads[members]  # [n, 3] text, vit, time
    total = x.sum(0)
    need = max(
        dp * min_per_rank,
        math.ceil(total[0] / caps[0] - 1e-9),
        math.ceil(total[1] / caps[1] - 1e-9) if caps[1] > 0 else 1,
    )
    m = math.ceil(need / dp) * dp
    while m <= len(members):
        assignment = _greedy(x, caps, m)
        if assignment is not None:
            _local_search(x, caps, assignment, m, max_rounds)
            return [members[assignment == b].tolist() for b in range(m)]
        m += dp
    raise ValueError(
        f"cannot pack {len(members)} samples into at most {len(members)} micro-batches (a multiple of "
        f"dp_size={dp}) under the caps; raise max_text_tokens or max_vit_patches"
    )


def _scales(x: np.ndarray, m: int) -> np.ndarray:
    mean = x.sum(0) / m
    return np.where(mean > 0, mean, np.inf)  # a dimension with no load never binds


def _greedy(x: np.ndarray, caps: np.ndarray, m: int) -> np.ndarray | None:
    """Largest first, each to the feasible bin whose highest normalised load rises least."""
    scale = _scales(x, m)
    size = (x / scale).max(1)
    order = np.lexsort((np.arange(len(x)), -size))
    load = np.zeros((m, 3))
    assignment = np.full(len(x), -1)
    for i in order:
        after = load + x[i]
        fits = (after[:, 0] <= caps[0]) & (after[:, 1] <= caps[1])
        if not fits.any():
            return None
        norm = after / scale
        score = norm.max(1) + 1e-6 * norm.sum(1)  # ties: the emptier bin
        score[~fits] = np.inf
        b = int(np.argmin(score))
        load[b] = after[b]
        assignment[i] = b
    if (np.bincount(assignment, minlength=m) == 0).any():  # fewer samples than bins took a bin each
        return None
    return assignment


def _local_search(x: np.ndarray, caps: np.ndarray, assignment: np.ndarray, m: int, max_rounds: int) -> None:
    """Moves and swaps out of the bin holding the highest normalised load, while they lower it."""
    scale = _scales(x, m)
    finite = np.isfinite(scale)
    xn = np.where(finite, x / np.where(finite, scale, 1.0), 0.0)  # normalised sizes [n, 3]
    capn = np.where(finite[:2], caps / np.where(finite[:2], scale[:2], 1.0), np.inf)
    load = np.zeros((m, 3))
    np.add.at(load, assignment, xn)
    count = np.bincount(assignment, minlength=m)
    for _ in range(max_rounds):
        peak = load.max(1)
        b = int(np.argmax(peak))
        top = peak[b]
        if top <= 1.0 + 1e-9:
            return
        mine = np.flatnonzero(assignment == b)
        best, change = top - 1e-12, None
        # moves: one of mine to any other bin (keeping every bin non-empty)
        if count[b] > 1:
            out_b = _peak(*(load[b, d] - xn[mine, d, None] for d in range(3)))  # [k, 1]
            into = [load[None, :, d] + xn[mine, d, None] for d in range(3)]  # 3 x [k, m]
            pair = np.maximum(out_b, _peak(*into))
            pair[(into[0] > capn[0]) | (into[1] > capn[1])] = np.inf
            pair[:, b] = np.inf
            k, o = np.unravel_index(int(np.argmin(pair)), pair.shape)
            if pair[k, o] < best:
                best, change = pair[k, o], (mine[k], int(o), None)
        # swaps: one of mine with one sample of the bins with the most room (lowest highest load)
        others = np.argsort(peak, kind="stable")[: _SWAP_PARTNERS + 1]
        theirs = np.flatnonzero(np.isin(assignment, others[others != b]))
        if theirs.size:
            delta = [xn[None, theirs, d] - xn[mine, d, None] for d in range(3)]  # 3 x [k, t]: in - out
            ab = [load[b, d] + delta[d] for d in range(3)]
            ao = [load[assignment[theirs], d][None, :] - delta[d] for d in range(3)]
            pair = np.maximum(_peak(*ab), _peak(*ao))
            pair[(ab[0] > capn[0]) | (ab[1] > capn[1]) | (ao[0] > capn[0]) | (ao[1] > capn[1])] = np.inf
            k, t = np.unravel_index(int(np.argmin(pair)), pair.shape)
            if pair[k, t] < best:
                best, change = pair[k, t], (mine[k], int(assignment[theirs[t]]), theirs[t])
        if change is None:
            return
        i, o, j = change
        load[b] -= xn[i]
        load[o] += xn[i]
        assignment[i] = o
        if j is None:
            count[b] -= 1
            count[o] += 1
        else:
            load[o] -= xn[j]
            load[b] += xn[j]
            assignment[j] = b


def _peak(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Elementwise max of three arrays (faster than a reduction over a trailing axis of 3)."""
    return np.maximum(np.maximum(a, b), c)


def _deal_to_ranks(bins: list[list[int]], loads: np.ndarray, dp: int) -> list[list[list[int]]]:
    """Micro-batches by estimated time, longest first, dealt to ranks in snake order."""
    times = [float(loads[mb, 2].sum()) for mb in bins]
    order = sorted(range(len(bins)), key=lambda b: (-times[b], min(bins[b])))
    ranks: list[list[list[int]]] = [[] for _ in range(dp)]
    for position, b in enumerate(order):
        lap, offset = divmod(position, dp)
        ranks[offset if lap % 2 == 0 else dp - 1 - offset].append(sorted(bins[b]))
    return ranks
