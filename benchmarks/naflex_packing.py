"""NaFlex batching: share of computed tokens that are real, and training throughput, packed vs padded.

The same images (procedural scenes cropped to aspect ratios drawn log-uniformly from [1/3, 3]) are
batched two ways by :class:`glmkit.data.naflex.NaFlexSchedule`, with the same bucket budgets, the
same share of patches per bucket and the same patch positions per step:

  padded          each step has a bucket length L and max_tokens // L images, each resized to at
                  most L patches and padded to L (timm's NaFlex loader); ``PadCollate``, ``valid``
  packed          each step has max_tokens // row_len rows filled first-fit with images whose
                  budgets come from the buckets, unused budget passed on along the row;
                  ``PackCollate``, ``seq_lens`` (each image attends to itself only); glmkit's
                  ``sdpa`` backend, which on the CPU runs one SDPA call per image (no work
                  between images, as a varlen kernel: flash-attn ``cu_seqlens``, xformers
                  ``BlockDiagonalMask``) on the flattened token-major axis; since rows then cost
                  nothing, CogViT puts all images of the step on one internal row without padding
  packed+mask     the packed batches with one SDPA call per row and the block-diagonal mask
                  (glmkit's CPU path before, still its CUDA path in fp32; CogViT keeps a row per
                  input row for it), defined in this script as the baseline of the change; its
                  outputs are checked against ``packed`` in float64

Batches are built first (data loading is not timed). Each round then times a training step
(forward, loss = mean square of the valid patch tokens, backward; no optimizer step, so the weights
and the cost of a step stay the same) of CogViT on every batch, the modes interleaved step by step
in a rotating order so that load drift on a shared machine hits them alike; wall and process CPU
time are both kept (CPU time is less sensitive to other jobs taking the cores).

Columns: ``real/computed``: real patches over the patch positions the encoder computes (padding
included); ``+prefix``: the same with each image's class and register tokens counted as real and
the encoder's internal positions as computed (a packed row grows by the prefix tokens of its
images; on one internal row, ``packed`` computes no padding at all); ``real tok/s`` and
``real tok/CPU-s``: real patches per second of training steps (medians over rounds). The ratios below the table are medians of per-round ratios against ``padded``.

On a GPU (``--device cuda --dtype bf16``) ``packed`` is the ``sdpa`` backend's CUDA path in half
precision: torch's variable-length flash kernel (``torch.nn.attention.varlen``) with every image
on one row; ``packed+mask`` is one masked SDPA per row, and ``packed+xformers`` (when xformers is
installed) every image on one row under xformers' ``BlockDiagonalMask``, and ``packed+flex`` the
rows under compiled FlexAttention with a block mask per batch (``--flex``; compiled per batch shape
during the warmup): the comparison that checks the CUDA choice. In fp32 ``packed`` falls back to the masked rows. Steps are synchronised before
each timer is read.

Example::

    python benchmarks/naflex_packing.py --samples 192 --rounds 3 --threads 1
    python benchmarks/naflex_packing.py --device cuda --dtype bf16 --model small base \
        --samples 1024 --max-tokens 16384 --seq-lens 256 576 1024 --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from glmkit.data.mixture import Mixture
from glmkit.data.naflex import NaFlexBatches, NaFlexResize, NaFlexSchedule, encoder_inputs, naflex_loader
from glmkit.data.procedural import render_scene
from glmkit.data.sources import ImageSource
from glmkit.models.encoders import CogViT
from glmkit.nn.attention import (
    ATTENTION_BACKENDS,
    is_xformers_available,
    packed_attention_mask,
    packed_rows_cost_nothing,
    rows_cost_nothing_when,
    sdpa_attention,
)
from glmkit.nn.packed import SeqLens

MODELS = {
    "tiny": {},  # 96 wide, 3 blocks, 3 heads
    "small": {"embed_dim": 384, "num_heads": 6, "depth": 4},  # ViT-S width, 4 blocks
    "base": {"embed_dim": 768, "num_heads": 12, "depth": 12},  # ViT-B (for a GPU)
}


class MixedAspectScenes(ImageSource):
    """Procedural scenes cropped to an aspect ratio drawn log-uniformly from [1/3, 3]; the longer
    side is drawn uniformly from ``sides`` (pixels)."""

    def __init__(self, num_images: int, seed: int = 0, sides: tuple[int, int] = (384, 384)) -> None:
        self.num_images, self.seed, self.sides = num_images, seed, sides

    def __len__(self) -> int:
        return self.num_images

    def describe(self, index: int) -> str:
        return f"mixed-aspect(seed={self.seed}, index={index})"

    def load(self, index: int) -> Image.Image:
        rng = np.random.default_rng([self.seed, index, 1])
        aspect = math.exp(rng.uniform(math.log(1 / 3), math.log(3)))  # width / height
        side = int(rng.integers(self.sides[0], self.sides[1] + 1))
        scene = render_scene(self.seed, index, side)
        width, height = (side, round(side / aspect)) if aspect >= 1 else (round(side * aspect), side)
        left, top = (side - width) // 2, (side - height) // 2
        return scene.crop((left, top, left + width, top + height))


def build_batches(args: argparse.Namespace, mode: str) -> list[dict[str, Any]]:
    """Every batch of one epoch of ``mode`` (rank 0 of one), built before timing."""
    schedule = NaFlexSchedule(
        args.samples,
        mode=mode,
        seq_lens=args.seq_lens,
        max_tokens_per_batch=args.max_tokens,
        row_len=args.row_len,
        seed=args.seed,
    )
    source = MixedAspectScenes(args.samples, seed=args.seed, sides=tuple(args.sides))
    data = Mixture({"scenes": source}, None, None, seed=args.seed, num_samples=args.samples)
    transform = NaFlexResize(patch_size=16, max_upscale=args.max_upscale)
    return list(naflex_loader(NaFlexBatches(data, schedule, transform)))


def token_counts(
    batch: dict[str, Any], model: CogViT, backend: str, device: torch.device, dtype: torch.dtype
) -> tuple[int, int, int, int]:
    """(real patches, patch positions, real incl. prefix tokens, encoder-internal positions)."""
    num_prefix = model.num_prefix_tokens
    real = int(batch["patches_valid"].sum())
    positions = batch["patches_valid"].numel()
    images = len(batch["index"])
    rows, length = batch["patches_valid"].shape
    if "patches_seq_lens" in batch and packed_rows_cost_nothing(
        backend, device, dtype, model.blocks[0].attn.head_dim
    ):
        internal = real + num_prefix * images  # CogViT puts all images on one row, no padding
    elif "patches_seq_lens" in batch:  # each image gets its prefix tokens inside the row
        slots = int(batch["patches_seq_lens"].gt(0).sum(1).max())
        internal = rows * (length + num_prefix * slots)
    else:
        internal = rows * (length + num_prefix)
    return real, positions, real + num_prefix * images, internal


def on_device(batch: dict[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """The batch's tensors on ``device``, its floating ones (the patches) in ``dtype``."""
    return {
        k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) if isinstance(v, Tensor) else v
        for k, v in batch.items()
    }


def train_step(model: CogViT, batch: dict[str, Any]) -> None:
    """Forward and backward; no optimizer step, so the weights (and the step's cost) never drift."""
    out = model(**encoder_inputs(batch))
    loss = out.patch_tokens.float().square().sum() / (out.valid.sum() * out.patch_tokens.shape[-1])
    model.zero_grad(set_to_none=True)
    loss.backward()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so timers read finished steps."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- baseline: packed rows as one masked SDPA call each (glmkit's CPU path before, its CUDA fp32 path)
def masked_rows_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    seq_lens: SeqLens | None = None,
) -> Tensor:
    """Each packed row as one SDPA call with the block-diagonal mask: ``N^2`` work per row."""
    if seq_lens is None:
        return sdpa_attention(q, k, v, attn_mask, dropout_p)
    mask = packed_attention_mask(seq_lens, q, k)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    return out.masked_fill(~seq_lens.valid(q.shape[2])[:, None, :, None], 0.0)


MASKED = "naflex_bench_masked_rows"
ATTENTION_BACKENDS.register(MASKED)(masked_rows_attention)

# mode -> (batches of which schedule mode, attention backend)


# ---- a probe: attention replaced by the identity (v itself), to time everything around attention
@rows_cost_nothing_when(lambda device, dtype, head_dim: True)
def identity_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    seq_lens: SeqLens | None = None,
) -> Tensor:
    """``v`` (a copy): no attention at all, packed rows on one row as with ``sdpa`` on the CPU."""
    return v * 1.0


IDENTITY = "naflex_bench_identity"
ATTENTION_BACKENDS.register(IDENTITY)(identity_attention)

MODES = {"padded": ("pad", "sdpa"), "packed": ("pack", "sdpa"), "packed+mask": ("pack", MASKED)}
# --attention-free: the same batches with attention replaced by the identity (what attention costs)
ATTENTION_FREE_MODES = {"padded-noattn": ("pad", IDENTITY), "packed-noattn": ("pack", IDENTITY)}
XFORMERS_MODE = {"packed+xformers": ("pack", "xformers")}  # CUDA with xformers installed
FLEX_MODE = {"packed+flex": ("pack", "flex")}  # CUDA: FlexAttention, compiled, block mask per batch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(MODELS), nargs="+", default=["tiny", "small"])
    parser.add_argument("--samples", type=int, default=192, help="images per epoch (each mode)")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[64, 128, 256], help="bucket budgets")
    parser.add_argument("--max-tokens", type=int, default=1024, help="patch positions per step")
    parser.add_argument(
        "--row-len", type=int, default=None, help="packed row length (default: largest bucket)"
    )
    parser.add_argument(
        "--sides", type=int, nargs=2, default=[384, 384], help="range of the longer side (px)"
    )
    parser.add_argument(
        "--max-upscale", type=float, default=None, help="1.0: keep small images native (NaViT); default: fill"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument(
        "--attention-free",
        action="store_true",
        help="also time padded and packed with attention replaced by the identity (the step around it)",
    )
    parser.add_argument(
        "--flex",
        action="store_true",
        help="CUDA: also time packed+flex (compiled FlexAttention; compiling takes a while per batch shape)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    modes = dict(MODES)
    if args.attention_free:
        modes.update(ATTENTION_FREE_MODES)
    if device.type == "cuda" and is_xformers_available():
        modes.update(XFORMERS_MODE)
    if args.flex:
        if device.type != "cuda":
            parser.error("--flex times FlexAttention's compiled CUDA path; it cannot train on the CPU")
        modes.update(FLEX_MODE)

    start = time.perf_counter()
    built = {kind: build_batches(args, kind) for kind in ("pad", "pack")}
    on = {kind: [on_device(b, device, dtype) for b in kind_batches] for kind, kind_batches in built.items()}
    batches = {mode: on[kind] for mode, (kind, _) in modes.items()}
    print(f"built {sum(map(len, built.values()))} batches in {time.perf_counter() - start:.1f} s")

    rows = []
    for name in args.model:
        torch.manual_seed(args.seed)
        model = CogViT.preset("tiny", **MODELS[name])
        # glmkit's per-sequence CPU path equals the masked rows on one packed batch, float64
        reference = copy.deepcopy(model).double()
        model.to(device, dtype)
        probe = {**built["pack"][0], "patches": built["pack"][0]["patches"].double()}
        reference.set_attn_backend(MASKED)
        want = reference(**encoder_inputs(probe)).patch_tokens
        reference.set_attn_backend("sdpa")
        error = (reference(**encoder_inputs(probe)).patch_tokens - want).abs().max().item()
        errors = {"packed": (error, "packed+mask (float64)")}
        if "packed+flex" in modes:  # FlexAttention trains on CUDA only: checked there, in the run's dtype
            with torch.no_grad():
                first = batches["packed+flex"][0]
                model.set_attn_backend(MASKED)
                want = model(**encoder_inputs(first)).patch_tokens.float()
                model.set_attn_backend("flex")
                got = model(**encoder_inputs(first)).patch_tokens.float()
            errors["packed+flex"] = ((got - want).abs().max().item(), f"packed+mask ({args.dtype})")
        seconds = {mode: [[0.0, 0.0] for _ in range(args.rounds)] for mode in modes}  # [wall, cpu]
        for mode, (_, backend) in modes.items():  # warmup
            model.set_attn_backend(backend)
            # every batch shape once: compiled FlexAttention compiles per shape, outside the timer
            shapes = {tuple(b["patches"].shape): b for b in batches[mode]} if backend == "flex" else {}
            for batch in shapes.values() or [batches[mode][0]]:
                train_step(model, batch)
        synchronize(device)
        longest = max(map(len, batches.values()))
        for round_ in range(args.rounds):
            for i in range(longest):  # modes interleaved step by step, in a rotating order
                order = list(modes)
                shift = (i + round_) % len(order)
                for mode in order[shift:] + order[:shift]:
                    if i < len(batches[mode]):
                        model.set_attn_backend(modes[mode][1])
                        wall, cpu = time.perf_counter(), time.process_time()
                        train_step(model, batches[mode][i])
                        synchronize(device)
                        seconds[mode][round_][0] += time.perf_counter() - wall
                        seconds[mode][round_][1] += time.process_time() - cpu
        for mode, mode_batches in batches.items():
            backend = modes[mode][1]
            counts = np.array([token_counts(b, model, backend, device, dtype) for b in mode_batches]).sum(0)
            rows.append(
                {
                    "model": name,
                    "mode": mode,
                    "steps": len(mode_batches),
                    "images": sum(len(b["index"]) for b in mode_batches),
                    "real": int(counts[0]),
                    "share": counts[0] / counts[1],
                    "share_prefix": counts[2] / counts[3],
                    "wall": statistics.median(w for w, _ in seconds[mode]),
                    "cpu": statistics.median(c for _, c in seconds[mode]),
                    "rounds": [(counts[0] / w, counts[0] / c) for w, c in seconds[mode]],
                    "error": errors.get(mode),
                }
            )

    print(
        f"\n{args.samples} images (aspect ratios log-uniform in [1/3, 3], longer side {args.sides[0]}-"
        f"{args.sides[1]} px, max_upscale {args.max_upscale}), buckets {args.seq_lens} "
        f"(equal patch shares), {args.max_tokens} patch positions per step, row_len "
        f"{args.row_len or max(args.seq_lens)}, {args.threads} thread(s), {args.rounds} rounds, "
        f"forward + backward, {device} {args.dtype}\n"
    )
    print(
        "| model | mode | steps | images | real patches | real/computed | +prefix | epoch wall (s) "
        "| epoch CPU (s) | real tok/s | real tok/CPU-s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['mode']} | {r['steps']} | {r['images']} | {r['real']} | {r['share']:.3f} | "
            f"{r['share_prefix']:.3f} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['real'] / r['wall']:.0f} | "
            f"{r['real'] / r['cpu']:.0f} |"
        )
    print()
    for name in args.model:
        for r in rows:
            # each mode against padded; the attention-free modes against padded without attention
            baseline = "padded-noattn" if r["mode"].endswith("-noattn") else "padded"
            base = next(b for b in rows if b["model"] == name and b["mode"] == baseline)
            if r["model"] != name or r is base:
                continue
            wall = statistics.median(a[0] / b[0] for a, b in zip(r["rounds"], base["rounds"], strict=True))
            cpu = statistics.median(a[1] / b[1] for a, b in zip(r["rounds"], base["rounds"], strict=True))
            note = f"; max |diff| vs {r['error'][1]} {r['error'][0]:.1e}" if r["error"] is not None else ""
            print(
                f"- {name}, {r['mode']} / {baseline}: real tok/s {wall:.3f} (wall), {cpu:.3f} (CPU), medians "
                f"of per-round ratios; real share {r['share']:.3f} vs {base['share']:.3f}{note}"
            )


if __name__ == "__main__":
    main()
