"""Run a function on several CPU processes joined in one gloo group, and collect what each returns."""

from __future__ import annotations

import gc
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp


def _rank_entry(rank: int, fn: Callable[..., Any], world: int, folder: str, args: tuple) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    try:
        result = fn(rank, world, *args)
        with open(Path(folder) / f"result-rank{rank}.pkl", "wb") as fh:
            pickle.dump(result, fh)
        del result
        # Modules such as FSDP hold the process group; collect them while the interpreter is whole,
        # and let no rank tear its gloo context down while a peer still has collectives in flight.
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # Skip interpreter finalisation: gloo worker threads destroyed during it abort the process
    # ("terminate called without an active exception", SIGABRT) on a loaded machine.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_on_ranks(
    fn: Callable[..., Any], world: int, folder: Path, *args: Any, start_method: str = "spawn"
) -> list[Any]:
    """Call ``fn(rank, world, *args)`` on ``world`` gloo ranks and return the results in rank order.

    ``fn`` must be importable (a module-level function) and its result picklable. ``folder`` holds the
    rendezvous file and the per-rank results, so it should be a fresh temporary directory. Use
    ``start_method="fork"`` to skip re-importing torch in the children when the parent has not yet
    started threads of its own.
    """
    folder.mkdir(parents=True, exist_ok=True)
    mp.start_processes(
        _rank_entry, args=(fn, world, str(folder), args), nprocs=world, join=True, start_method=start_method
    )
    results = []
    for rank in range(world):
        with open(folder / f"result-rank{rank}.pkl", "rb") as fh:
            results.append(pickle.load(fh))
    return results
