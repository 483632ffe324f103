"""Rollout metrics per data source and overall, as one flat dict for ``LightningModule.log_dict``.

GLM-5V-Turbo (section 2.4) tags every sample with its data source so that reward and pass@k are
reported per source across the parallel groups of a mixed-task batch. :func:`rollout_metrics`
takes one step's scored samples (reward, source tag, prompt id, ...) and the per-source counts of
prompts that were aborted or deferred, and returns floats under these keys (``<src>`` is a source
tag, ``k`` each requested k):

====================================  =========================================================
``samples/count``                     samples in the batch (also ``samples/<src>/count``)
``reward/mean``                       mean over scored samples (also ``reward/<src>/mean``)
``pass@k``                            mean unbiased pass@k over prompts (also ``pass@k/<src>``)
``response_length/mean``, ``/max``    response tokens (also ``response_length/<src>/mean``, ...)
``verifier_failures/count``           samples whose verifier failed (also per source)
``aborted/count``, ``deferred/count`` prompts aborted / deferred this step (also per source)
====================================  =========================================================

A reward of NaN marks an unscored sample: it is counted in ``samples`` but left out of the reward
mean and of pass@k. pass@k uses the unbiased estimator of Chen et al. 2021 from
:mod:`glmkit.eval.metrics.passk` (one implementation for eval and RL); each prompt is one problem
with n = its scored samples and c = the correct ones, and a prompt with n < k is left out of
pass@k (human-eval reports a k only where n >= k). A key whose average would be over nothing
(no scored sample of a source, no prompt with n >= k) is omitted rather than logged as NaN.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from glmkit.eval.metrics.passk import pass_at_k
from glmkit.rl.algorithms.base import GroupIds, group_index


def rollout_metrics(
    rewards: Sequence[float] | Tensor,
    sources: Sequence[str],
    group_ids: GroupIds,
    *,
    ks: Sequence[int] = (1,),
    correct: Sequence[bool] | Tensor | None = None,
    success_threshold: float | Mapping[str, float] = 1.0,
    response_lengths: Sequence[int] | Tensor | None = None,
    verifier_failed: Sequence[bool] | Tensor | None = None,
    aborted: Mapping[str, int] | None = None,
    deferred: Mapping[str, int] | None = None,
) -> dict[str, float]:
    """Per-source and overall metrics of one step's rollouts (keys in the module docstring).

    Args:
        rewards: ``[N]`` final rewards; NaN for an unscored sample.
        sources: ``N`` data-source tags.
        group_ids: ``N`` prompt ids; the samples of one prompt form one pass@k problem and must
            share a source.
        ks: the k values of pass@k.
        correct: ``N`` booleans; by default a sample is correct when its reward is at least
            ``success_threshold`` (one value, or one per source).
        response_lengths: ``N`` response lengths in tokens.
        verifier_failed: ``N`` booleans, True where a verifier or judge failed on the sample.
        aborted: prompts aborted this step, counted per source.
        deferred: prompts deferred (cached for a later step) this step, counted per source.
    """
    r = torch.as_tensor(rewards, dtype=torch.float64).reshape(-1)
    n = r.numel()
    sources = list(sources)
    _check_length("sources", len(sources), n)
    for i, s in enumerate(sources):
        if not isinstance(s, str) or not s:
            raise ValueError(f"sources[{i}] must be a non-empty string, got {s!r}")
    index, num_groups = group_index(group_ids, n)
    scored = ~torch.isnan(r)

    if correct is None:
        thresholds = _thresholds(success_threshold, sources)
        ok = scored & (r >= thresholds)
    else:
        ok = torch.as_tensor(correct, dtype=torch.bool).reshape(-1)
        _check_length("correct", ok.numel(), n)
        ok = ok & scored

    out: dict[str, float] = {}
    by_source: dict[str, list[int]] = {}
    for i, s in enumerate(sources):
        by_source.setdefault(s, []).append(i)
    selections: list[tuple[str, Tensor]] = [("", torch.arange(n))]
    selections += [(f"{s}/", torch.tensor(idx, dtype=torch.long)) for s, idx in sorted(by_source.items())]

    # pass@k problems: one per prompt, carrying the source of its samples
    group_source: list[str | None] = [None] * num_groups
    for i, g in enumerate(index.tolist()):
        if group_source[g] is None:
            group_source[g] = sources[i]
        elif group_source[g] != sources[i]:
            raise ValueError(
                f"prompt group of sample {i} mixes data sources {group_source[g]!r} and {sources[i]!r}; "
                "the samples of one prompt must share a source"
            )
    group_n = torch.zeros(num_groups, dtype=torch.long).index_add_(0, index, scored.long()).tolist()
    group_c = torch.zeros(num_groups, dtype=torch.long).index_add_(0, index, ok.long()).tolist()

    lengths = None
    if response_lengths is not None:
        lengths = torch.as_tensor(response_lengths, dtype=torch.float64).reshape(-1)
        _check_length("response_lengths", lengths.numel(), n)
    failed = None
    if verifier_failed is not None:
        failed = torch.as_tensor(verifier_failed, dtype=torch.bool).reshape(-1)
        _check_length("verifier_failed", failed.numel(), n)

    for prefix, sel in selections:
        out[f"samples/{prefix}count"] = float(sel.numel())
        rs = r[sel][scored[sel]]
        if rs.numel():
            out[f"reward/{prefix}mean"] = float(rs.mean())
        if lengths is not None:
            ls = lengths[sel]
            out[f"response_length/{prefix}mean"] = float(ls.mean())
            out[f"response_length/{prefix}max"] = float(ls.max())
        if failed is not None:
            out[f"verifier_failures/{prefix}count"] = float(failed[sel].sum())

    for k in ks:
        if int(k) != k or k < 1:
            raise ValueError(f"each k of pass@k must be a positive integer, got {k!r}")
        k = int(k)
        per_source: dict[str, list[float]] = {}
        for g in range(num_groups):
            if group_n[g] >= k:
                per_source.setdefault(group_source[g], []).append(pass_at_k(group_n[g], group_c[g], k))
        values = [v for vs in per_source.values() for v in vs]
        if values:
            out[f"pass@{k}"] = sum(values) / len(values)
        for s, vs in sorted(per_source.items()):
            out[f"pass@{k}/{s}"] = sum(vs) / len(vs)

    for name, counts in (("aborted", aborted), ("deferred", deferred)):
        if counts is None:
            continue
        counts = Counter(counts)
        for s, c in counts.items():
            if c < 0:
                raise ValueError(f"{name} count for source {s!r} must be >= 0, got {c}")
        out[f"{name}/count"] = float(sum(counts.values()))
        for s, c in sorted(counts.items()):
            out[f"{name}/{s}/count"] = float(c)
    return out


def _check_length(name: str, got: int, n: int) -> None:
    if got != n:
        raise ValueError(f"{name} has {got} entries for {n} rewards; give one per sample")


def _thresholds(success_threshold: float | Mapping[str, float], sources: list[str]) -> Tensor:
    if isinstance(success_threshold, Mapping):
        missing = sorted(set(sources) - set(success_threshold))
        if missing:
            raise ValueError(
                f"success_threshold has no entry for data source(s) {missing}; "
                f"it has {sorted(success_threshold)}"
            )
        return torch.tensor([float(success_threshold[s]) for s in sources], dtype=torch.float64)
    return torch.full((len(sources),), float(success_threshold), dtype=torch.float64)
