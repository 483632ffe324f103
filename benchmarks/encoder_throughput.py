"""Training-step throughput and peak memory: CogViT vs timm's VisionTransformer of the same shape.

Each model runs the same step: forward on the same image batch, loss = mean square of the patch
tokens after the final norm, backward, AdamW step. The models are timed in one process with their
steps interleaved (the order alternates every round) after warmup rounds, so drifts in machine load
hit every model alike. Both use torch's scaled_dot_product_attention (timm's ``fused_attn`` is
forced on and checked).

Rows:
  cogvit          the preset as configured (QK-Norm + 2D RoPE unless --no-qk-norm / --no-rope)
  cogvit-plain    the same CogViT with QK-Norm and RoPE off: what those two cost
  timm-vit        timm VisionTransformer, same width/depth/heads/patch/image size, same class and
                  register tokens, learned absolute position embedding, no QK-Norm

Peak memory: each row runs ``--memory-steps`` training steps in a fresh subprocess of its own (same
flags, so same device and dtype), so no other row's parameters, gradients or optimizer state are
resident while it is measured. On CUDA the row shows ``torch.cuda.max_memory_allocated`` minus
``memory_allocated`` just before the model is built; on CPU the peak RSS (``VmHWM`` in
/proc/self/status, reset through /proc/self/clear_refs after the imports; ``ru_maxrss`` where that is
unavailable) minus the RSS just before the model is built. Either way: parameters, gradients, AdamW
state, activations and the input batch (plus allocator slack on CPU).

Columns: ``step(s)`` median wall time of a step, ``min(s)`` the fastest step, ``cpu(s)`` median
process CPU time of a step (all threads; less sensitive than wall time to other processes taking
cores on a shared machine). The ratios below the table compare images/s with timm four ways.

The ``saved MiB`` column counts the distinct storages autograd keeps for backward during one forward
(parameters excluded): activation memory without allocator or load noise.

FLOPs are analytic and depend on the shape only, so rows of the same shape get the same count
whatever modules implement it: patch embedding 4 x (P*P*C*D) x B x N_patches (forward and weight
gradient; the pixels need no gradient), block matmul weights 6 x weights x B x L, attention
12 x depth x B x L^2 x D (QK^T and AV, forward 4 B L^2 D per block, backward twice that), with
L = N_patches + class/register tokens. MFU is reported on CUDA against the H100 SXM dense bf16 peak
of 989 TFLOPS (``--peak-tflops`` to change).

Example::

    python benchmarks/encoder_throughput.py --preset base --batch-size 8 --steps 6 --device cpu
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from types import SimpleNamespace
from typing import Any

import torch
from timm.layers import set_fused_attn
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from glmkit.models.encoders.cogvit import CogViT

LossFn = Callable[[nn.Module, Tensor], Tensor]


def row_names(args: argparse.Namespace) -> list[str]:
    return ["cogvit"] + ([] if args.no_plain_row else ["cogvit-plain"]) + ["timm-vit"]


def resolve_config(preset: str, **overrides: Any) -> SimpleNamespace:
    """Every CogViT init argument of ``preset`` with ``overrides``, as attributes (nothing is built)."""
    return SimpleNamespace(**CogViT.preset_args(preset, **overrides))


def row_config(name: str, args: argparse.Namespace) -> SimpleNamespace:
    """The resolved shape of one row; the timm row is described by the same config (RoPE off)."""
    common = {"img_size": args.image_size, "attn_backend": "sdpa"}
    if name == "cogvit":
        return resolve_config(args.preset, qk_norm=not args.no_qk_norm, rope=not args.no_rope, **common)
    if name == "cogvit-plain":
        return resolve_config(args.preset, qk_norm=False, rope=False, **common)
    if name == "timm-vit":
        return resolve_config(args.preset, qk_norm=args.timm_qk_norm, rope=False, **common)
    raise ValueError(f"unknown row {name!r}; rows: {row_names(args)}")


def build_row(name: str, args: argparse.Namespace) -> tuple[nn.Module, LossFn]:
    """The model and loss function of one benchmarked row."""
    cfg = row_config(name, args)
    if name == "timm-vit":
        return build_timm(cfg), _timm_loss
    return CogViT(**vars(cfg)), _cogvit_loss


def build_timm(cfg: SimpleNamespace) -> nn.Module:
    """timm VisionTransformer with CogViT's shape, F.sdpa attention and no classifier head."""
    if cfg.mlp_type != "gelu" or cfg.rope:
        raise ValueError(
            f"the timm row needs mlp_type='gelu' and rope=False, got {cfg.mlp_type!r}, {cfg.rope}"
        )
    set_fused_attn(True)
    model = VisionTransformer(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        in_chans=cfg.in_chans,
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_ratio,
        qkv_bias=cfg.qkv_bias,
        qk_norm=cfg.qk_norm,
        class_token=cfg.class_token,
        reg_tokens=cfg.num_registers,
        num_classes=0,
        global_pool="",
    )
    fused = {m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")}
    if fused != {True}:
        raise RuntimeError(f"timm attention is not using F.scaled_dot_product_attention (fused_attn={fused})")
    return model


def _cogvit_loss(model: nn.Module, images: Tensor) -> Tensor:
    return model(images).patch_tokens.float().square().mean()


def _timm_loss(model: nn.Module, images: Tensor) -> Tensor:
    tokens = model.forward_features(images)[:, model.num_prefix_tokens :]
    return tokens.float().square().mean()


def mlp_hidden(cfg: SimpleNamespace) -> int:
    """Hidden width of a block's MLP (SwiGLU: 2/3 of the GELU width, rounded up to a multiple of 8)."""
    hidden = int(cfg.embed_dim * cfg.mlp_ratio)
    return -(-int(hidden * 2 / 3) // 8) * 8 if cfg.mlp_type == "swiglu" else hidden


def block_matmul_weights(cfg: SimpleNamespace) -> int:
    """Matmul weights of one block: qkv (3 D^2) + output projection (D^2) + MLP (2 or 3 x D x hidden)."""
    dim = cfg.embed_dim
    return 4 * dim * dim + (3 if cfg.mlp_type == "swiglu" else 2) * dim * mlp_hidden(cfg)


def train_flops(cfg: SimpleNamespace, batch: int, image_size: int) -> float:
    """Analytic FLOPs of one forward+backward, from the shape alone (not from module types).

    Patch embedding: 4 x (P*P*C*D) x B x N_patches (forward 2x + weight gradient 2x; the pixels need no
    gradient), whether it is a Linear (CogViT) or a stride-P Conv2d (timm). Blocks: 6 x matmul weights
    x B x L with L = N_patches + prefix tokens. Attention: QK^T and AV, forward 4 B L^2 D per block and
    backward twice that. Norms, activations, RoPE and biases are not counted.
    """
    num_patches = (image_size // cfg.patch_size) ** 2
    seq = num_patches + int(cfg.class_token) + cfg.num_registers
    patch_embed = 4 * cfg.patch_size * cfg.patch_size * cfg.in_chans * cfg.embed_dim * batch * num_patches
    blocks = 6 * cfg.depth * block_matmul_weights(cfg) * batch * seq
    attention = 12 * cfg.depth * batch * seq * seq * cfg.embed_dim
    return float(patch_embed + blocks + attention)


def autocast_context(args: argparse.Namespace, device: torch.device) -> AbstractContextManager:
    if args.dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def make_step(
    model: nn.Module, loss_fn: LossFn, images: Tensor, args: argparse.Namespace, device: torch.device
) -> Callable[[], float]:
    """A closure running one training step (zero_grad, forward, backward, AdamW step)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with autocast_context(args, device):
            loss = loss_fn(model, images)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(args: argparse.Namespace, device: torch.device) -> dict[str, dict[str, float]]:
    """Per-row median step time and images/s, steps interleaved across rows (memory: :func:`peak_memory`)."""
    torch.manual_seed(0)
    rows = {name: build_row(name, args) for name in row_names(args)}
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    steps = {}
    times: dict[str, list[float]] = {name: [] for name in rows}
    cpu_times: dict[str, list[float]] = {name: [] for name in rows}
    flops = {name: train_flops(row_config(name, args), args.batch_size, args.image_size) for name in rows}
    for name, (model, loss_fn) in rows.items():
        model.to(device).train()
        steps[name] = make_step(model, loss_fn, images, args, device)
    names = list(rows)
    for round_index in range(args.warmup + args.steps):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            synchronize(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            steps[name]()
            synchronize(device)
            elapsed, cpu_elapsed = time.perf_counter() - start, time.process_time() - cpu_start
            if round_index >= args.warmup:
                times[name].append(elapsed)
                cpu_times[name].append(cpu_elapsed)
    results = {}
    for name in names:
        median = statistics.median(times[name])
        results[name] = {
            "step_s": median,
            "step_s_min": min(times[name]),
            "cpu_s": statistics.median(cpu_times[name]),
            # per-round timm/this ratio: both ran back to back, so slow drifts in load cancel
            "paired_speed_vs_timm": statistics.median(
                t / mine for t, mine in zip(times["timm-vit"], times[name], strict=True)
            ),
            "images_per_s": args.batch_size / median,
            "tflops": flops[name] / median / 1e12,
            "peak_mib": float("nan"),  # filled in by peak_memory, one fresh process per row
            "params_m": sum(p.numel() for p in rows[name][0].parameters()) / 1e6,
            "saved_mib": saved_activation_mib(*rows[name], images, args),
        }
    return results


def saved_activation_mib(
    model: nn.Module, loss_fn: LossFn, images: Tensor, args: argparse.Namespace
) -> float:
    """MiB of distinct storages autograd saves for backward in one forward, parameters excluded.

    Deterministic (no allocator or machine-load noise), so it compares activation memory exactly.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast_context(args, images.device):
        loss_fn(model, images)
    return sum(seen.values()) / 2**20


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    """VmHWM from /proc/self/status, else ru_maxrss (which cannot be reset)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _memory_mark(device: torch.device) -> float:
    """Reset the peak-memory mark and return the memory in use now, in MiB.

    CUDA: the caching allocator's counters (tensors only; the CUDA context and allocator slack are not
    counted). CPU: the process RSS, whose peak (VmHWM) is reset through /proc/self/clear_refs.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    _reset_peak_rss()  # imports can leave a transient peak above the steady state
    return _rss_mib()


def _memory_peak(device: torch.device) -> float:
    """Peak memory in MiB since the last :func:`_memory_mark`."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    return _peak_rss_mib()


def memory_probe(args: argparse.Namespace) -> None:
    """Subprocess body: peak memory growth of ``--memory-steps`` training steps of one row.

    The row is the only model this process ever builds, so the peak holds its own parameters,
    gradients, AdamW state and activations and nothing of the other rows.
    """
    device = torch.device(args.device)
    before = _memory_mark(device)
    torch.manual_seed(0)
    model, loss_fn = build_row(args.memory_probe, args)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    step = make_step(model.to(device).train(), loss_fn, images, args, device)
    for _ in range(args.memory_steps):
        step()
    print(json.dumps({"peak_mib": _memory_peak(device) - before}))


def peak_memory(args: argparse.Namespace, names: list[str]) -> dict[str, float]:
    """Run :func:`memory_probe` for each row in its own process (same flags, so same device and dtype)."""
    peaks = {}
    for name in names:
        cmd = [sys.executable, __file__, *args.argv, "--memory-probe", name]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        peaks[name] = json.loads(out.strip().splitlines()[-1])["peak_mib"]
    return peaks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="base", help="CogViT preset (tiny, base, large)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed rounds (each runs every row once)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", choices=["fp32", "bf16"], default=None, help="bf16 = autocast (default on GPU)"
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--no-qk-norm", action="store_true", help="first CogViT row without QK-Norm")
    parser.add_argument("--no-rope", action="store_true", help="first CogViT row without RoPE")
    parser.add_argument(
        "--no-plain-row", action="store_true", help="skip the CogViT row without QK-Norm/RoPE"
    )
    parser.add_argument("--timm-qk-norm", action="store_true", help="give the timm model QK-Norm too")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    parser.add_argument(
        "--memory-steps", type=int, default=2, help="memory probe: steps per subprocess (>= 2: AdamW state)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the per-row memory subprocesses")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H100 SXM)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # replayed by the memory subprocesses
    if args.memory_steps < 1:
        parser.error(f"--memory-steps must be at least 1, got {args.memory_steps}")
    if args.dtype is None:
        args.dtype = "bf16" if args.device.startswith("cuda") else "fp32"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        memory_probe(args)
        return
    device = torch.device(args.device)
    results = time_interleaved(args, device)
    if not args.no_memory:
        # the timed models are gone with time_interleaved's frame; hand their cached blocks back to the
        # driver so the probe subprocesses have the whole device (their counters are per process anyway)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        for name, peak in peak_memory(args, list(results)).items():
            results[name]["peak_mib"] = peak
    measure = (
        "torch.cuda.max_memory_allocated - memory_allocated"
        if device.type == "cuda"
        else "peak RSS (VmHWM, reset after imports) - RSS"
    )
    mem_method = (
        "not measured (--no-memory)"
        if args.no_memory
        else f"per-row subprocess, {args.memory_steps} steps: {measure} before the build"
    )
    print(
        f"preset={args.preset} batch={args.batch_size} image={args.image_size} dtype={args.dtype} "
        f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"steps={args.steps} (median) warmup={args.warmup}"
    )
    header = (
        f"{'model':<14}{'params(M)':>10}{'step(s)':>10}{'min(s)':>9}{'cpu(s)':>9}{'img/s':>9}"
        f"{'img/s@min':>10}{'TFLOP/s':>9}{'peak MiB':>10}{'saved MiB':>10}"
    )
    if device.type == "cuda":
        header += f"{'MFU':>8}"
    print(header)
    for name, r in results.items():
        line = (
            f"{name:<14}{r['params_m']:>10.2f}{r['step_s']:>10.4f}{r['step_s_min']:>9.4f}{r['cpu_s']:>9.3f}"
            f"{r['images_per_s']:>9.2f}{args.batch_size / r['step_s_min']:>10.2f}{r['tflops']:>9.3f}"
            f"{r['peak_mib']:>10.0f}{r['saved_mib']:>10.0f}"
        )
        if device.type == "cuda":
            line += f"{r['tflops'] / args.peak_tflops:>8.1%}"
        print(line)
    timm = results["timm-vit"]
    for name, r in results.items():
        if name != "timm-vit":
            print(
                f"ratio {name}/timm-vit images/s: {r['images_per_s'] / timm['images_per_s']:.3f} (median steps), "
                f"{timm['step_s_min'] / r['step_s_min']:.3f} (fastest steps), "
                f"{r['paired_speed_vs_timm']:.3f} (median of per-round ratios), "
                f"{timm['cpu_s'] / r['cpu_s']:.3f} (process CPU time)"
            )
    print(f"peak memory: {mem_method}; saved MiB: activations autograd keeps for backward (one forward)")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
