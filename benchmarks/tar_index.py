"""Start-up time of ``TarShards``: walking every shard's tar headers vs reading cached indexes.

Writes ``--shards`` WebDataset shards of ``--samples`` samples each (an image, a caption and a JSON
member per sample, like real shards) into a temporary folder, then times building ``TarShards``:

  walk          ``index_cache=False``: every shard's headers are walked (the baseline, and what
                every rank paid before the cache existed)
  walk+write    cold cache: walked once, sidecars written
  cached        warm cache: sidecars read, no header walk

Each row is the median of ``--repeats`` runs. The page cache is warm in every row (the shards were
just written), so on a network filesystem the walk costs more and the ratio understates the gain.

Example::

    python benchmarks/tar_index.py --shards 200 --samples 200
"""

from __future__ import annotations

import argparse
import io
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

from glmkit.data.sources import TarShards


def write_shards(folder: Path, shards: int, samples: int, image_bytes: int) -> str:
    """``shards`` tar files of ``samples`` samples; returns their glob pattern."""
    payload = {"jpg": b"\xff" * image_bytes, "txt": b"a caption of moderate length", "json": b"{}"}
    for s in range(shards):
        with tarfile.open(folder / f"shard-{s:06d}.tar", "w") as archive:
            for k in range(samples):
                for ext, data in payload.items():
                    info = tarfile.TarInfo(f"{s:06d}{k:06d}.{ext}")
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
    return str(folder / "shard-*.tar")


def time_build(pattern: str, **kwargs: object) -> tuple[float, int]:
    """Seconds to build ``TarShards(pattern, **kwargs)``, and its number of samples."""
    start = time.perf_counter()
    source = TarShards(pattern, **kwargs)
    return time.perf_counter() - start, len(source)


def main() -> None:
    """Print the start-up table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, default=200)
    parser.add_argument("--samples", type=int, default=200, help="samples per shard")
    parser.add_argument("--image-bytes", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pattern = write_shards(folder, args.shards, args.samples, args.image_bytes)
        rows: dict[str, list[float]] = {"walk": [], "walk+write": [], "cached": []}
        for _ in range(args.repeats):
            rows["walk"].append(time_build(pattern, index_cache=False)[0])
            for sidecar in folder.glob("*.idx.json"):
                sidecar.unlink()
            rows["walk+write"].append(time_build(pattern)[0])
            seconds, total = time_build(pattern)
            rows["cached"].append(seconds)

    base = statistics.median(rows["walk"])
    print(f"TarShards start-up: {args.shards} shards x {args.samples} samples = {total} samples")
    print(f"{'row':<12} {'seconds':>9} {'vs walk':>8}")
    for name, times in rows.items():
        median = statistics.median(times)
        print(f"{name:<12} {median:>9.3f} {base / median:>7.1f}x")


if __name__ == "__main__":
    main()
