"""A weighted, stateless mixture of record sources (GLM-5V-Turbo section 2.1).

Stage 1 of CogViT trains on a quality-aware mixture: 80% high-quality natural images, 10%
instruction-following data and 10% scientific imagery; stage 2, the VLM and RL mix image-text
pairs, interleaved samples and tagged prompts the same way. :class:`Mixture` is a map-style
dataset over a virtual length whose sample ``i`` is a pure function of ``(seed, stream, epoch,
i)``: a NumPy generator seeded from that tuple picks the source by weight, an index inside it and
the augmentation. Nothing is carried from one sample to the next, so samples can be read in any
order, by any number of workers and ranks, and a resumed run reproduces them exactly.

A sample is the source's record after the transform, tagged with the name of its source: the
data-source tag that per-source metrics and rewards read. Unreadable samples are skipped by
drawing again from the same generator (so the replacement is deterministic too); the sample
reports what it skipped.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from glmkit.data.decode import BadImageError
from glmkit.data.sources import BadSampleError, Source

Record = dict[str, Any]
Transform = Callable[[Record, np.random.Generator], Record]
"""A record transform: ``transform(record, rng) -> record``, every random choice drawn from ``rng``."""

#: Keys a mixture adds to every sample; a source or transform must not produce them.
RESERVED_KEYS = ("source", "index", "source_index", "skipped")


def normalize_weights(sources: Mapping[str, Source], weights: Mapping[str, float] | None) -> dict[str, float]:
    """Validate ``weights`` against ``sources`` and scale them to sum to 1.

    ``None`` weights every source by its number of images (plain concatenation).
    """
    if not sources:
        raise ValueError("a mixture needs at least one source")
    for name, source in sources.items():
        if len(source) == 0:
            raise ValueError(f"source {name!r} ({source!r}) is empty")
    if weights is None:
        weights = {name: float(len(source)) for name, source in sources.items()}
    missing = sorted(set(sources) - set(weights))
    extra = sorted(set(weights) - set(sources))
    if missing or extra:
        raise ValueError(
            "mixture weights and sources must have the same keys: "
            f"sources without a weight: {missing or 'none'}; weights without a source: {extra or 'none'} "
            f"(sources: {sorted(sources)})"
        )
    for name, value in weights.items():
        if not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ValueError(f"weight of source {name!r} must be a finite number >= 0, got {value!r}")
    total = float(sum(weights.values()))
    if total <= 0:
        raise ValueError(f"mixture weights sum to zero: {dict(weights)}")
    return {name: float(weights[name]) / total for name in sources}


class Mixture(Dataset):
    """Map-style mixture of record sources over a virtual length of ``num_samples``.

    ``mixture[i]`` uses the current epoch (:meth:`set_epoch`); ``mixture[(epoch, i)]`` names the
    epoch explicitly, which is how :class:`glmkit.data.loader.ResumableSampler` keys samples so that
    persistent workers never see a stale epoch.

    A sample is the transformed record plus ``{"source": str, "index": int, "source_index": int,
    "skipped": list[str]}``: ``source`` is the name of the source it came from (the data-source
    tag), ``index`` the virtual index ``i``, ``source_index`` the record's index in its source (two
    draws of one record share it: held-out metrics count them as one item) and ``skipped``
    describes the samples that could not be read (or transformed) before this one was drawn, each
    named by its source's ``describe``. With stage 1's image transforms a sample is
    ``{"image": FloatTensor[3, H, W], ...}``.

    Args:
        sources: named record sources.
        weights: relative weight per source name (normalised to sum to 1); ``None`` weights
            sources by their size.
        transform: ``transform(record, rng) -> record``; ``None`` keeps records as read.
        seed: base seed of every draw.
        num_samples: virtual length (samples per epoch).
        stream: separates independent streams with the same seed (e.g. train 0, validation 1).
        max_retries: consecutive unreadable draws tolerated before a sample fails with an error.
    """

    def __init__(
        self,
        sources: Mapping[str, Source],
        weights: Mapping[str, float] | None = None,
        transform: Transform | None = None,
        seed: int = 0,
        num_samples: int = 10_000,
        stream: int = 0,
        max_retries: int = 16,
    ) -> None:
        self.sources = dict(sources)
        self.weights = normalize_weights(self.sources, weights)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if seed < 0 or stream < 0:
            raise ValueError(f"seed and stream must be >= 0, got seed={seed}, stream={stream}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.transform = transform
        self.seed = int(seed)
        self.num_samples = int(num_samples)
        self.stream = int(stream)
        self.max_retries = int(max_retries)
        self.epoch = 0
        self._names = list(self.weights)
        cdf = np.cumsum([self.weights[n] for n in self._names])
        cdf[-1] = 1.0  # rounding must not leave a gap above the last source
        self._cdf = cdf

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch used by integer keys; each epoch draws a fresh mixture."""
        self.epoch = int(epoch)

    def generator(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """The generator behind sample ``index`` of ``epoch`` (default: the current epoch)."""
        epoch = self.epoch if epoch is None else int(epoch)
        return np.random.default_rng([self.seed, self.stream, epoch, int(index)])

    def _draw(self, rng: np.random.Generator) -> tuple[str, int]:
        name = self._names[int(np.searchsorted(self._cdf, rng.random(), side="right"))]
        return name, int(rng.integers(len(self.sources[name])))

    def choose(self, index: int, epoch: int | None = None) -> tuple[str, int]:
        """The (source, source index) first drawn for sample ``index``, without reading it."""
        return self._draw(self.generator(index, epoch))

    def _split_key(self, key: int | tuple[int, int]) -> tuple[int, int]:
        epoch, index = (self.epoch, key) if not isinstance(key, tuple | list) else key
        index = int(index)
        if not 0 <= index < self.num_samples:
            raise IndexError(f"Mixture: index {index} out of range [0, {self.num_samples})")
        return int(epoch), index

    def __getitem__(self, key: int | tuple[int, int]) -> Record:
        epoch, index = self._split_key(key)
        rng = self.generator(index, epoch)
        skipped: list[str] = []
        for _ in range(self.max_retries + 1):
            name, source_index = self._draw(rng)
            try:
                record = self.sources[name].read(source_index)
            except (BadImageError, BadSampleError) as exc:
                skipped.append(str(exc))
                continue
            if self.transform is not None:
                try:
                    record = self.transform(record, rng)
                except (BadImageError, BadSampleError) as exc:
                    # the transform sees a record, not where it came from: name the sample here
                    where = self.sources[name].describe(source_index)
                    skipped.append(str(exc) if str(exc).startswith(where) else f"{where}: {exc}")
                    continue
            clash = [k for k in RESERVED_KEYS if k in record]
            if clash:
                raise KeyError(
                    f"source {name!r} ({self.sources[name].describe(source_index)}) or the transform "
                    f"produced the keys {clash}, which the mixture sets itself; rename them"
                )
            return {
                **record,
                "source": name,
                "index": index,
                "source_index": source_index,
                "skipped": skipped,
            }
        tried = "\n  ".join(skipped)
        raise RuntimeError(
            f"Mixture sample {index} (epoch {epoch}): {len(skipped)} draws in a row could not be "
            f"read; the sources look broken. Tried:\n  {tried}"
        )

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {w:.3g} of {self.sources[n]!r}" for n, w in self.weights.items())
        return f"Mixture(num_samples={self.num_samples}, seed={self.seed}, sources={{{parts}}})"
