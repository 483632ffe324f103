"""Distributed SigLIP loss: glmkit's bidirectional and all-gather exchanges vs open_clip's ``bidir``.

For each world size W (CPU processes joined in one gloo group) and local batch size B, every rank
runs forward + backward of three losses on the same normalised float32 embeddings [B, D]:

  glmkit-bidir       ``glmkit.losses.SigLIPLoss(exchange="bidirectional", chunk_size=C)``
  glmkit-allgather   ``glmkit.losses.SigLIPLoss(exchange="all_gather", chunk_size=C)``
  open_clip-bidir    open_clip's ``SigLipLoss(rank, world_size, dist_impl="bidir")`` (the baseline)

Columns:
  time (ms)      median over ``--steps`` rounds of the slowest rank's forward + backward wall time
                 (ranks start each step at a barrier; the three losses' order rotates every round)
  CPU (ms)       median over rounds of the process CPU time (all threads) of a step, summed over
                 ranks: the work done, less sensitive than wall time to other jobs on the cores
  peak (MiB)     the largest rank's peak RSS during one forward + backward minus its RSS just
                 before: ``VmHWM`` of /proc/self/status, reset through /proc/self/clear_refs, with
                 glibc's mmap threshold fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_``) so that a freed
                 tensor leaves the RSS at once. Minimum of ``--memory-repeats`` measurements. It
                 includes the embeddings' gradients and gloo's buffers.
  tensor peak (MiB)
                 the largest rank's peak of live tensor bytes during one forward + backward, from
                 the allocations and frees that ``torch.profiler`` records (``profile_memory=True``)
                 summed in time order: the loss's own tensors (chunk logits, exchange buffers,
                 gradients), without gloo's internal buffers, the process or the allocator
  saved (MiB)    what autograd keeps for backward in one forward (distinct storages, via
                 ``torch.autograd.graph.saved_tensors_hooks``): activation memory without
                 allocator noise
  x open_clip    ratio to open_clip's figure in the same run
  max |dloss|, max grad err
                 the largest difference of a rank's loss, and the largest relative difference
                 (max |a - b| / max |b|) of its image, text, temperature and bias gradients, to
                 open_clip's

Example::

    python benchmarks/siglip_loss.py --worlds 2 4 --batch-sizes 256 512 1024 --dim 256 --chunk-size 256
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

# kineto (the tensor-peak profiler) logs a CUDA probe and its start/stop on stderr for every rank
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from glmkit.losses.siglip import SigLIPLoss

IMPLS = ("glmkit-bidir", "glmkit-allgather", "open_clip-bidir")
BASELINE = "open_clip-bidir"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


class _Loss:
    """One loss implementation on this rank with its own temperature and bias."""

    def __init__(self, name: str, rank: int, world: int, chunk_size: int | None) -> None:
        self.name = name
        exchange = "bidirectional" if name == "glmkit-bidir" else "all_gather"
        glmkit_loss = SigLIPLoss(exchange=exchange, chunk_size=chunk_size)
        self.params = (glmkit_loss.logit_scale, glmkit_loss.logit_bias)  # t' = log 10, b = -10
        if name == BASELINE:
            from open_clip.loss import SigLipLoss

            self.module = SigLipLoss(rank=rank, world_size=world, dist_impl="bidir")
        else:
            self.module = glmkit_loss

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.name == BASELINE:
            return self.module(x, y, self.params[0].exp(), self.params[1])
        return self.module(x, y)

    def zero_grad(self, *tensors: torch.Tensor) -> None:
        for t in (*tensors, *self.params):
            t.grad = None


def _saved_mib(loss: _Loss, x: torch.Tensor, y: torch.Tensor) -> float:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        value = loss(x, y)
    value.backward()
    loss.zero_grad(x, y)
    params = {p.untyped_storage().data_ptr() for p in loss.params}
    return sum(n for ptr, n in storages.items() if ptr not in params) / 2**20


def _tensor_peak_mib(loss: _Loss, x: torch.Tensor, y: torch.Tensor) -> float:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss(x, y).backward()
    loss.zero_grad(x, y)
    # one "[memory]" event per allocation (+ bytes) and free (- bytes), at the time it happened
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak / 2**20


def _rank(rank: int, world: int, folder: str, args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    losses = [_Loss(name, rank, world, args.chunk_size) for name in IMPLS]
    results = {}
    for rows in args.batch_sizes:
        gen = torch.Generator().manual_seed(1000 * rows + rank)
        x = F.normalize(torch.randn(rows, args.dim, generator=gen), dim=-1).requires_grad_()
        y = F.normalize(x.detach() + torch.randn(rows, args.dim, generator=gen), dim=-1).requires_grad_()

        # values and gradients (this also warms every code path up)
        outputs = {}
        for loss in losses:
            value = loss(x, y)
            value.backward()
            outputs[loss.name] = (value.item(), [t.grad.clone() for t in (x, y, *loss.params)])
            loss.zero_grad(x, y)
        base_value, base_grads = outputs[BASELINE]
        errors = {
            name: (
                abs(value - base_value),
                max(
                    ((g - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
                    for g, b in zip(grads, base_grads, strict=True)
                ),
            )
            for name, (value, grads) in outputs.items()
        }

        saved = {loss.name: _saved_mib(loss, x, y) for loss in losses}

        peaks: dict[str, float] = {}
        for loss in losses:
            best = float("inf")
            for _ in range(args.memory_repeats):
                gc.collect()
                dist.barrier()
                _reset_peak()
                before = _status_kib("VmRSS")
                value = loss(x, y)
                value.backward()
                best = min(best, (_status_kib("VmHWM") - before) / 1024)
                del value
                loss.zero_grad(x, y)
            peaks[loss.name] = best
        tensor_peaks = {loss.name: _tensor_peak_mib(loss, x, y) for loss in losses}

        times: dict[str, list[tuple[float, float]]] = {loss.name: [] for loss in losses}
        for step in range(args.warmup + args.steps):
            order = losses[step % len(losses) :] + losses[: step % len(losses)]
            for loss in order:
                dist.barrier()
                start, start_cpu = time.perf_counter(), time.process_time()
                loss(x, y).backward()
                elapsed = (time.perf_counter() - start, time.process_time() - start_cpu)
                loss.zero_grad(x, y)
                if step >= args.warmup:
                    times[loss.name].append(elapsed)
        results[rows] = {
            "errors": errors,
            "saved": saved,
            "peaks": peaks,
            "tensor_peaks": tensor_peaks,
            "times": times,
        }

    with open(Path(folder) / f"rank{rank}.pkl", "wb") as fh:
        pickle.dump(results, fh)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown of gloo's threads (see tests/helpers/distributed.py)


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base >= 0.1 else "-"  # below a few pages the RSS says nothing


def run_world(world: int, args: argparse.Namespace) -> list[dict]:
    """Run every batch size on ``world`` gloo ranks; the per-rank results in rank order."""
    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(_rank, args=(world, folder, args), nprocs=world, join=True, start_method="spawn")
        out = []
        for rank in range(world):
            with open(Path(folder) / f"rank{rank}.pkl", "rb") as fh:
                out.append(pickle.load(fh))
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worlds", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=256, help="glmkit's image rows per logits chunk")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--memory-repeats", type=int, default=2)
    args = parser.parse_args(argv)
    # every large allocation gets its own mapping, returned to the system when freed (see docstring)
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    print(
        f"D={args.dim}, float32, chunk_size={args.chunk_size} (glmkit), {args.steps} timed rounds after "
        f"{args.warmup} warmup, torch {torch.__version__}, {os.cpu_count()} CPUs, 1 thread per rank\n"
    )
    print(
        "| W | B_local | loss | time (ms) | x open_clip | CPU (ms) | x open_clip | peak (MiB) | x open_clip "
        "| tensor peak (MiB) | saved (MiB) | max abs dloss | max grad err |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for world in args.worlds:
        ranks = run_world(world, args)
        for rows in args.batch_sizes:
            per_rank = [r[rows] for r in ranks]
            steps = {name: list(zip(*(r["times"][name] for r in per_rank), strict=True)) for name in IMPLS}
            time_ms = {
                name: 1000 * statistics.median(max(w for w, _ in s) for s in steps[name]) for name in IMPLS
            }
            cpu_ms = {
                name: 1000 * statistics.median(sum(c for _, c in s) for s in steps[name]) for name in IMPLS
            }
            peak = {name: max(r["peaks"][name] for r in per_rank) for name in IMPLS}
            tensor_peak = {name: max(r["tensor_peaks"][name] for r in per_rank) for name in IMPLS}
            saved = {name: max(r["saved"][name] for r in per_rank) for name in IMPLS}
            for name in IMPLS:
                dloss = max(r["errors"][name][0] for r in per_rank)
                dgrad = max(r["errors"][name][1] for r in per_rank)
                print(
                    f"| {world} | {rows} | {name} | {time_ms[name]:.1f} | {time_ms[name] / time_ms[BASELINE]:.2f} "
                    f"| {cpu_ms[name]:.1f} | {cpu_ms[name] / cpu_ms[BASELINE]:.2f} "
                    f"| {peak[name]:.1f} | {_ratio(peak[name], peak[BASELINE])} | {tensor_peak[name]:.1f} "
                    f"| {saved[name]:.1f} "
                    f"| {dloss:.1e} | {dgrad:.1e} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
