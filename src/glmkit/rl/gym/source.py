"""Task categories as record sources of :class:`glmkit.data.Mixture`, and records back to samples.

A recipe mixes categories with per-category weights through the one weighted mixture of the data
layer: each category is a :class:`TaskSource` (``read(index) -> {"sample": Sample, "images": [...]}``)
registered in the mixture under its data-source name, so the mixture's seeded draw picks categories
by weight and tags each record with ``record["source"]``. :func:`sample_from_record` takes the
sample back out and checks that the mixture's tag and the sample's own ``source`` agree, so the tag
that per-source rewards and metrics count is the one the sample was generated with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from glmkit.data.mixture import Mixture
from glmkit.data.sources import Source
from glmkit.rl.gym.category import TaskCategory
from glmkit.scoring import Sample


class TaskSource(Source):
    """The records of one task category: record ``i`` is ``category.record(i)``.

    Not registered in ``datasets``: a recipe configures the category (registry
    ``task_categories``) and :class:`~glmkit.rl.gym.mix.TaskMix` wraps it.
    """

    def __init__(self, category: TaskCategory) -> None:
        if not isinstance(category, TaskCategory):
            raise TypeError(f"TaskSource needs a TaskCategory, got {type(category).__name__}")
        self.category = category

    def __len__(self) -> int:
        return self.category.size

    def read(self, index: int) -> dict[str, Any]:
        """``{"sample": Sample, "images": [PIL images]}``."""
        return self.category.record(self._check_index(index))

    def describe(self, index: int) -> str:
        cat = self.category
        return f"{cat.name}(source={cat.source!r}, seed={cat.seed}, index={index})"

    def __repr__(self) -> str:
        return f"TaskSource({self.category!r})"


def task_sources(categories: Sequence[TaskCategory]) -> dict[str, TaskSource]:
    """``{source name: TaskSource}``; two categories may not share a source name."""
    sources: dict[str, TaskSource] = {}
    for category in categories:
        if not isinstance(category, TaskCategory):
            raise TypeError(f"expected TaskCategory instances, got {type(category).__name__}: {category!r}")
        if category.source in sources:
            raise ValueError(
                f"two categories use the source name {category.source!r} ({sources[category.source].category!r} "
                f"and {category!r}); give one of them source=... so each data source has its own tag"
            )
        sources[category.source] = TaskSource(category)
    return sources


def task_mixture(
    categories: Sequence[TaskCategory],
    weights: Mapping[str, float] | None = None,
    *,
    seed: int = 0,
    num_samples: int = 10_000,
    stream: int = 0,
) -> Mixture:
    """A :class:`~glmkit.data.Mixture` over the categories, keyed by their source names.

    Args:
        categories: the task categories.
        weights: relative weight per source name (a category's ``source``, by default its name);
            ``None``: equal weights (not weighted by size: category sizes are index ranges).
    """
    if not categories:
        raise ValueError("task_mixture needs at least one task category")
    sources = task_sources(categories)
    if weights is None:
        weights = dict.fromkeys(sources, 1.0)
    return Mixture(sources, weights, seed=seed, num_samples=num_samples, stream=stream)


def sample_from_record(record: Mapping[str, Any]) -> Sample:
    """The :class:`~glmkit.scoring.Sample` of a task record (from :class:`TaskSource` or a mixture).

    Raises:
        ValueError: the mixture's ``source`` tag differs from the sample's (the source was
            registered in the mixture under another name than its category's ``source``).
    """
    sample = record.get("sample") if isinstance(record, Mapping) else None
    if not isinstance(sample, Sample):
        keys = sorted(record) if isinstance(record, Mapping) else type(record).__name__
        raise TypeError(f"expected a task record with a 'sample' (a glmkit.scoring.Sample), got {keys}")
    tag = record.get("source")
    if tag is not None and tag != sample.source:
        raise ValueError(
            f"record of sample {sample.id!r}: the mixture tags it with source {tag!r} but the sample's "
            f"source is {sample.source!r}; register each TaskSource under its category's source name "
            "(task_mixture does)"
        )
    return sample
