"""Packed attention on the CPU: one SDPA call per image against fewer, larger calls.

Attention alone (forward + backward, no projections), on the token-major layout glmkit uses: the
input is one ``qkv`` tensor ``[1, N, 3, heads, head_dim]`` requiring grad (what the fused qkv
projection writes), ``q, k, v`` are views of it, and each variant returns ``[1, N, heads * head_dim]``
token-major (what the output projection reads; any copy to get there is timed). The backward pass
gets a fixed random upstream gradient (``torch.autograd.grad(out, qkv, W)``, i.e. loss =
``sum(out * W)``), so gradients are not trivial. Each length set is the images of one packed batch
(lengths include CogViT's 3 prefix tokens: 58-67 is the 64-patch bucket), drawn with ``--seed``.

Variants:

  per_image               glmkit's path, exactly what CogViT runs on the CPU: ``sdpa_attention``
                          with a ``SeqLens`` holding every image on one row (one SDPA call per image
                          on views of the token axis, outputs joined by one ``cat``)
  padded_batch            the padded floor: a ``[n_images, L_max, 3, heads, head_dim]`` leaf (as if
                          the model had padded every layer), one SDPA call, no mask, padding computed;
                          exact only when all lengths are equal (error shown only then)
  padded_batch_masked     the same padded leaf with a ``[B, L_max]`` key-padding mask: what the
                          ``padded`` mode of ``naflex_packing.py`` computes in attention (CogViT
                          passes ``valid`` as a key-padding mask); exact on the valid part
  key_padded_batch        from the packed leaf: gather every image's tokens into ``[n_images, L_max]``
                          (one ``index_select`` of the qkv rows), one SDPA with the key-padding mask,
                          scatter the valid outputs back to the packed axis (one ``index_select``):
                          what a packed model would pay per layer to batch its images
  key_padded_groups       the same with images sorted by length and grouped while the longest is
                          within ``--group-tol`` of the shortest, one SDPA per group (the "similar
                          length" trial); shown only where it makes more than one group
  block_masked_chunks_k   k consecutive images per SDPA call over their joined tokens with a
                          block-diagonal boolean mask (built once per step outside the timer, as a
                          batch would cache it); outputs joined like ``per_image``
  one_masked_row          one SDPA over all N tokens with the block-diagonal mask (``N^2`` work)

Columns: ``N``: tokens of the set; ``calls``: SDPA calls per step; ``work``: attention scores
computed over ``sum(n_i^2)``; ``us/step`` and ``CPU us/step``: medians over rounds of the mean
time of one forward + backward (wall, process CPU); ``us/image``: ``us/step / n_images``; ``vs
per_image`` / ``CPU vs per_image``: medians over rounds of the per-round ratios of wall / CPU
times (below 1 is faster than ``per_image``); ``err out`` / ``err grad``: max abs difference from
``per_image`` of the outputs and of the qkv gradient on real tokens, computed in float64 (``-``
where the variant is not exact by design).
Variants run interleaved in a rotating order within each round so that load drift on a shared
machine hits them alike.

The footer gives ``per_image`` minus ``padded_batch`` per image on the one-bucket sets; only the
equal-length set isolates the cost of the calls (elsewhere the floor also computes its padding).

Measured (2026-12-06, this project's 2-core CPU with another benchmark running, fp32, 1 thread,
default sets, 21 rounds): for the tiny config (3 heads of 32) one SDPA call per image costs about
75 us forward + backward more per image than the padded floor: on 16 images of 64 tokens
``per_image`` takes 189 us per image, the single padded call 114 us (0.60); at 128 and 256 tokens
the floor is 0.87 and 0.94 of ``per_image``. Batching a one-bucket set with a key-padding mask,
gathering and scattering included, is faster than ``per_image`` only for the 64-token images (0.72
to 0.85; 0.98-1.06 at 128 and 256 tokens; 0.99-1.13 for the small config), and on mixed lengths
(a packed step of ``naflex_packing.py`` holds 64-, 128- and 256-patch images) ``per_image`` is the
fastest: grouping by length 1.02-1.13, block-diagonal masks 1.2-2.9 for two or four images per
call and 4-9 for one masked row (the CPU kernel computes every masked block).

Example::

    python benchmarks/packed_attention_calls.py
    python benchmarks/packed_attention_calls.py --model small --rounds 5
    python benchmarks/packed_attention_calls.py --heads 4 --head-dim 48 --sets 16x58-67 12x16-256
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from glmkit.nn.attention import sdpa_attention
from glmkit.nn.packed import SeqLens

MODELS = {"tiny": (3, 32), "small": (6, 64)}  # (heads, head_dim): CogViT tiny (96 wide), ViT-S (384)
# 16x64: equal lengths (the padded floor is exact); the next three: one bucket (64, 128, 256 patches +
# 3 prefix tokens); 4x..+2x..+2x..: a packed step of naflex_packing.py (budgets 4x64, 2x128, 2x256)
DEFAULT_SETS = ["16x64", "16x58-67", "8x120-131", "4x240-259", "4x58-67+2x120-131+2x240-259", "12x16-256"]


@dataclass
class Variant:
    """One way to run the attention of a length set.

    ``forward(leaf)`` returns the output; ``out_packed`` / ``grad_packed`` map the output and the
    leaf's gradient to the packed token axis (``[N, heads * hd]`` and ``[N, 3 * heads * hd]``) for the
    exactness check, or are None where the variant is not exact by design.
    """

    name: str
    leaf: Tensor
    grad_out: Tensor
    forward: Callable[[Tensor], Tensor]
    calls: int
    work: int
    out_packed: Callable[[Tensor], Tensor] | None
    grad_packed: Callable[[Tensor], Tensor] | None

    def step(self) -> Tensor:
        """One forward + backward; returns the gradient of the leaf."""
        out = self.forward(self.leaf)
        (grad,) = torch.autograd.grad(out, self.leaf, self.grad_out)
        return grad


def parse_set(spec: str, seed: int) -> list[int]:
    """Lengths of a set: ``COUNTxLO-HI`` (uniform in ``[LO, HI]``) or ``COUNTxL``, parts joined by ``+``
    (then shuffled together), drawn from ``seed`` and ``spec``."""
    rng = random.Random(f"{seed}:{spec}")
    lengths = []
    for part in spec.split("+"):
        count, _, span = part.partition("x")
        lo, _, hi = span.partition("-")
        low, high = int(lo), int(hi or lo)
        lengths += [rng.randint(low, high) for _ in range(int(count))]
    if "+" in spec:  # several parts: images in packing order, not sorted by part
        rng.shuffle(lengths)
    return lengths


def heads_major(qkv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``[B, N, 3, heads, hd]`` -> q, k, v ``[B, heads, N, hd]`` (views)."""
    q, k, v = qkv.unbind(2)
    return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)


def padded_indices(groups: list[list[int]], lengths: list[int]) -> tuple[Tensor, Tensor, list[int]]:
    """Index tensors between the packed axis and padded groups of images.

    Returns ``gather`` (for every padded position of every group in turn, the packed token it reads;
    padding reads its image's last token, which the key mask hides), ``scatter`` (for every packed
    token, its position in the concatenated padded groups) and each group's ``L_max``.
    """
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    gather: list[int] = []
    scatter = [0] * sum(lengths)
    widths = []
    for group in groups:
        width = max(lengths[i] for i in group)
        widths.append(width)
        for i in group:
            for j in range(width):
                if j < lengths[i]:
                    scatter[starts[i] + j] = len(gather)
                gather.append(starts[i] + min(j, lengths[i] - 1))
    return torch.tensor(gather), torch.tensor(scatter), widths


def key_mask(group: list[int], lengths: list[int], width: int) -> Tensor:
    """``[n, 1, 1, width]`` bool key-padding mask of a group of images."""
    lens = torch.tensor([lengths[i] for i in group])
    return (torch.arange(width)[None, :] < lens[:, None])[:, None, None, :]


def length_groups(lengths: list[int], tol: float) -> list[list[int]]:
    """Images sorted by length, grouped while the longest is within ``tol`` of the shortest."""
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if groups and lengths[i] <= (1 + tol) * lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def build_variants(
    lengths: list[int], heads: int, head_dim: int, dtype: torch.dtype, seed: int, ks: list[int], tol: float
) -> list[Variant]:
    """Every variant of one length set, on the same random qkv and upstream gradient in ``dtype``."""
    gen = torch.Generator().manual_seed(seed)
    n_tok, n_img, width = sum(lengths), len(lengths), heads * head_dim
    base = torch.randn(1, n_tok, 3, heads, head_dim, generator=gen, dtype=torch.float64)
    upstream = torch.randn(1, n_tok, width, generator=gen, dtype=torch.float64)
    exact_work = sum(n * n for n in lengths)

    def packed_leaf() -> Tensor:
        return base.to(dtype).requires_grad_(True)

    def same(t: Tensor) -> Tensor:
        return t.reshape(n_tok, -1)

    variants = []

    # per_image: glmkit's CPU packed path
    seq = SeqLens.from_lists([lengths])

    def per_image(qkv: Tensor) -> Tensor:
        out = sdpa_attention(*heads_major(qkv), seq_lens=seq)  # 1, heads, N, hd
        return out.transpose(1, 2).reshape(1, n_tok, width)

    variants.append(
        Variant("per_image", packed_leaf(), upstream.to(dtype), per_image, n_img, exact_work, same, same)
    )

    # padded leaf (as if the whole model ran padded): no mask, then key-padding mask
    everyone = [list(range(n_img))]
    gather, scatter, (l_max,) = padded_indices(everyone, lengths)
    pad_data = base.reshape(n_tok, -1)[gather].reshape(n_img, l_max, 3, heads, head_dim)
    pad_upstream = torch.zeros(n_img * l_max, width, dtype=torch.float64)
    pad_upstream[scatter] = upstream.reshape(n_tok, width)
    mask_all = key_mask(everyone[0], lengths, l_max)

    def padded(mask: Tensor | None) -> Callable[[Tensor], Tensor]:
        def run(qkv: Tensor) -> Tensor:
            out = F.scaled_dot_product_attention(*heads_major(qkv), attn_mask=mask)  # n, heads, L, hd
            return out.transpose(1, 2).reshape(n_img, l_max, width)

        return run

    def from_padded(t: Tensor) -> Tensor:
        return t.reshape(n_img * l_max, -1)[scatter]

    equal = len(set(lengths)) == 1
    for name, mask, exact in (("padded_batch", None, equal), ("padded_batch_masked", mask_all, True)):
        variants.append(
            Variant(
                name,
                pad_data.to(dtype).requires_grad_(True),
                pad_upstream.to(dtype).reshape(n_img, l_max, width),
                padded(mask),
                1,
                n_img * l_max * l_max,
                from_padded if exact else None,
                from_padded if exact else None,
            )
        )

    # key-padded groups gathered from and scattered back to the packed axis
    def key_padded(groups: list[list[int]]) -> tuple[Callable[[Tensor], Tensor], int]:
        gather, scatter, widths = padded_indices(groups, lengths)
        masks = [key_mask(g, lengths, w) for g, w in zip(groups, widths, strict=True)]
        sizes = [len(g) * w for g, w in zip(groups, widths, strict=True)]

        def run(qkv: Tensor) -> Tensor:
            rows = qkv.reshape(n_tok, 3 * width).index_select(0, gather).split(sizes)
            outs = [
                F.scaled_dot_product_attention(
                    *heads_major(r.view(len(g), w, 3, heads, head_dim)), attn_mask=m
                )
                .transpose(1, 2)
                .reshape(len(g) * w, width)
                for r, g, w, m in zip(rows, groups, widths, masks, strict=True)
            ]
            joined = torch.cat(outs) if len(outs) > 1 else outs[0]
            return joined.index_select(0, scatter).view(1, n_tok, width)

        return run, sum(len(g) * w * w for g, w in zip(groups, widths, strict=True))

    groups = length_groups(lengths, tol)
    for name, grouping in (("key_padded_batch", everyone), ("key_padded_groups", groups)):
        if name == "key_padded_groups" and len(grouping) == 1:
            continue
        run, work = key_padded(grouping)
        variants.append(
            Variant(name, packed_leaf(), upstream.to(dtype), run, len(grouping), work, same, same)
        )

    # consecutive images per call with a block-diagonal mask
    def block_masked(k: int) -> tuple[Callable[[Tensor], Tensor], int, int]:
        chunks = [lengths[i : i + k] for i in range(0, n_img, k)]
        sizes = [sum(c) for c in chunks]
        masks = [SeqLens.from_lists([c]).block_mask(s) for c, s in zip(chunks, sizes, strict=True)]

        def run(qkv: Tensor) -> Tensor:
            flat = qkv.unbind(2)  # 1, N, heads, hd each
            pieces = [t.split(sizes, dim=1) for t in flat]
            outs = [
                F.scaled_dot_product_attention(
                    a.transpose(1, 2), b.transpose(1, 2), c.transpose(1, 2), attn_mask=m
                ).transpose(1, 2)  # 1, n_c, heads, hd
                for a, b, c, m in zip(*pieces, masks, strict=True)
            ]
            joined = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
            return joined.reshape(1, n_tok, width)

        return run, len(chunks), sum(s * s for s in sizes)

    for k in ks:
        if 1 < k < n_img:
            run, calls, work = block_masked(k)
            variants.append(
                Variant(
                    f"block_masked_chunks_{k}",
                    packed_leaf(),
                    upstream.to(dtype),
                    run,
                    calls,
                    work,
                    same,
                    same,
                )
            )
    run, calls, work = block_masked(n_img)
    variants.append(
        Variant("one_masked_row", packed_leaf(), upstream.to(dtype), run, calls, work, same, same)
    )
    return variants


def check(variants: list[Variant]) -> dict[str, tuple[float | None, float | None]]:
    """Max abs difference from ``per_image`` of outputs and qkv gradients on real tokens (float64 variants)."""
    results: dict[str, tuple[float | None, float | None]] = {}
    ref = variants[0]
    ref_out = ref.forward(ref.leaf)
    ref_grad = ref.step()
    for v in variants:
        if v.out_packed is None or v.grad_packed is None:
            results[v.name] = (None, None)
            continue
        out_err = (v.out_packed(v.forward(v.leaf)) - ref.out_packed(ref_out)).abs().max().item()
        grad_err = (v.grad_packed(v.step()) - ref.grad_packed(ref_grad)).abs().max().item()
        results[v.name] = (out_err, grad_err)
    return results


def time_variant(v: Variant, reps: int) -> tuple[float, float]:
    """Mean wall and process-CPU seconds of one step over ``reps`` steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(reps):
        v.step()
    return (time.perf_counter() - wall) / reps, (time.process_time() - cpu) / reps


def bench_set(
    spec: str, lengths: list[int], heads: int, head_dim: int, args: argparse.Namespace
) -> tuple[list[list[str]], tuple[float, float] | None]:
    """Table rows of one length set, and ``per_image`` minus ``padded_batch`` in us per image (wall, CPU)
    where the lengths are within 20% of each other (None elsewhere)."""
    f64 = build_variants(lengths, heads, head_dim, torch.float64, args.seed, args.chunks, args.group_tol)
    errors = check(f64)
    variants = build_variants(lengths, heads, head_dim, torch.float32, args.seed, args.chunks, args.group_tol)
    reps = {}
    for v in variants:  # warm up, then pick repetitions so that one measurement lasts about --min-time
        v.step()
        once = time_variant(v, 2)[0]
        reps[v.name] = max(1, round(args.min_time / max(once, 1e-9)))
    wall: dict[str, list[float]] = {v.name: [] for v in variants}
    cpu: dict[str, list[float]] = {v.name: [] for v in variants}
    ratio: dict[str, list[float]] = {v.name: [] for v in variants}
    cpu_ratio: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(args.rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for v in order:
            w, c = time_variant(v, reps[v.name])
            wall[v.name].append(w)
            cpu[v.name].append(c)
        for v in variants:
            ratio[v.name].append(wall[v.name][-1] / wall["per_image"][-1])
            cpu_ratio[v.name].append(cpu[v.name][-1] / cpu["per_image"][-1])

    def err(x: float | None) -> str:
        return "-" if x is None else f"{x:.1e}"

    rows = []
    exact_work = sum(n * n for n in lengths)
    for v in variants:
        us = statistics.median(wall[v.name]) * 1e6
        rows.append(
            [
                spec,
                str(sum(lengths)),
                v.name,
                str(v.calls),
                f"{v.work / exact_work:.2f}",
                f"{us:.0f}",
                f"{statistics.median(cpu[v.name]) * 1e6:.0f}",
                f"{us / len(lengths):.1f}",
                f"{statistics.median(ratio[v.name]):.3f}",
                f"{statistics.median(cpu_ratio[v.name]):.3f}",
                err(errors[v.name][0]),
                err(errors[v.name][1]),
            ]
        )
    gaps = [
        statistics.median(a - b for a, b in zip(t["per_image"], t["padded_batch"], strict=True))
        * 1e6
        / len(lengths)
        for t in (wall, cpu)
    ]
    one_bucket = max(lengths) <= 1.2 * min(lengths)  # else the padded floor computes far more than per_image
    return rows, (gaps[0], gaps[1]) if one_bucket else None


def main() -> None:
    """Parse arguments, run every (model, length set) and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", nargs="+", default=["tiny"], choices=sorted(MODELS), help="heads x head_dim presets"
    )
    parser.add_argument(
        "--heads", type=int, help="override: attention heads (with --head-dim, replaces --model)"
    )
    parser.add_argument("--head-dim", type=int, help="override: channels per head")
    parser.add_argument(
        "--sets",
        nargs="+",
        default=DEFAULT_SETS,
        help="length sets COUNTxLO-HI or COUNTxL (tokens per image), parts joined by +",
    )
    parser.add_argument("--chunks", nargs="+", type=int, default=[2, 4], help="images per block-masked call")
    parser.add_argument(
        "--group-tol", type=float, default=0.3, help="key_padded_groups: longest/shortest - 1"
    )
    parser.add_argument("--rounds", type=int, default=21, help="timing rounds (variants interleaved in each)")
    parser.add_argument("--min-time", type=float, default=0.03, help="seconds per variant per round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the lengths and the random tensors")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.heads or args.head_dim:
        if not (args.heads and args.head_dim):
            parser.error("--heads and --head-dim go together")
        configs = [(f"{args.heads}x{args.head_dim}", args.heads, args.head_dim)]
    else:
        configs = [(f"{m} ({MODELS[m][0]}x{MODELS[m][1]})", *MODELS[m]) for m in args.model]

    header = [
        "set",
        "N",
        "variant",
        "calls",
        "work",
        "us/step",
        "CPU us/step",
        "us/image",
        "vs per_image",
        "CPU vs per_image",
        "err out",
        "err grad",
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), fp32, forward + backward")
    for label, heads, head_dim in configs:
        print(f"\n### {label}\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        gaps = []
        for spec in args.sets:
            lengths = parse_set(spec, args.seed)
            rows, gap = bench_set(spec, lengths, heads, head_dim, args)
            if gap is not None:
                gaps.append(f"{spec}: {gap[0]:.0f} wall, {gap[1]:.0f} CPU")
            for row in rows:
                print("| " + " | ".join(row) + " |", flush=True)
        print(f"\nper_image - padded_batch, us per image (medians over rounds): {'; '.join(gaps)}")


if __name__ == "__main__":
    main()
