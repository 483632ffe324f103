"""Zero-shot evaluation of image-text embeddings: retrieval R@K both ways and classification.

For ``N`` held-out pairs with L2-normalised embeddings, image-to-text retrieval ranks all ``N``
texts for each image by cosine similarity and counts a hit at ``K`` when a matching text is in
the top ``K`` (Recall@K as reported by CLIP and SigLIP); text-to-image is the same on the
transposed similarities. ``groups`` marks pairs that share a caption as mutually matching (a
procedural set repeats captions). Zero-shot classification embeds one prompt per class name and
predicts the most similar class. Computed with torchmetrics (``RetrievalHitRate``,
``MulticlassAccuracy``); torch only, no Lightning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _hit_rate(scores: Tensor, relevant: Tensor, k: int) -> float:
    from torchmetrics.functional.retrieval import retrieval_hit_rate

    hits = [retrieval_hit_rate(scores[q], relevant[q], top_k=k) for q in range(scores.shape[0])]
    return float(torch.stack(hits).float().mean())


def retrieval_metrics(
    image_emb: Tensor,
    text_emb: Tensor,
    ks: Sequence[int] = (1, 5),
    groups: Tensor | Sequence[Tensor] | None = None,
) -> dict[str, float]:
    """Recall@K image-to-text (``i2t/R@K``) and text-to-image (``t2i/R@K``) over ``N`` pairs.

    Args:
        image_emb: ``[N, D]`` image embeddings (normalised here).
        text_emb: ``[N, D]`` text embeddings; row ``i`` matches image ``i``.
        ks: the cut-offs.
        groups: ``[N]`` ids, pairs with equal ids counting as matches of each other, or several
            such id tensors, pairs matching when any of them is equal (e.g. the same caption, or
            two draws of the same record with captions in two languages); ``None``: only the
            diagonal.
    """
    if image_emb.ndim != 2 or image_emb.shape != text_emb.shape or image_emb.shape[0] == 0:
        raise ValueError(
            f"need image and text embeddings of one shape [N, D], got {image_emb.shape}, {text_emb.shape}"
        )
    x = F.normalize(image_emb.double(), dim=-1)
    y = F.normalize(text_emb.double(), dim=-1)
    sim = (x @ y.T).float()  # N images, N texts
    n = sim.shape[0]
    relevant = torch.eye(n, dtype=torch.bool, device=sim.device)
    for g in [groups] if isinstance(groups, Tensor) else groups or []:
        g = g.to(sim.device)
        if g.shape != (n,):
            raise ValueError(f"groups must be [N] = [{n}] ids per pair, got {list(g.shape)}")
        relevant |= g[:, None] == g[None, :]
    out = {}
    for k in ks:
        out[f"i2t/R@{k}"] = _hit_rate(sim, relevant, k)
        out[f"t2i/R@{k}"] = _hit_rate(sim.T, relevant.T, k)
    return out


def chance_recall(groups: Tensor, k: int = 1) -> float:
    """Expected R@K of random scores: mean over queries of ``1 - C(N - m, K) / C(N, K)`` for ``m``
    matching items (``m = 1`` without repeated captions)."""
    n = groups.numel()
    m = (groups[:, None] == groups[None, :]).sum(1).double()  # N
    miss = torch.ones_like(m)
    for j in range(k):
        miss = miss * ((n - m - j).clamp_min(0) / (n - j))
    return float((1 - miss).mean())


def zero_shot_classify(
    image_emb: Tensor,
    class_names: Sequence[str],
    encode_texts: Callable[[list[str]], Tensor],
    templates: Sequence[str] = ("{}",),
) -> Tensor:
    """Class logits ``[N, C]``: cosine similarity to each class's mean prompt embedding.

    Args:
        image_emb: ``[N, D]`` image embeddings.
        class_names: the ``C`` class names.
        encode_texts: ``list[str] -> [M, D]`` (e.g. a text tower's ``encode``).
        templates: prompt templates with one ``{}`` for the class name; embeddings are averaged.
    """
    if not class_names or not templates:
        raise ValueError("zero_shot_classify needs class names and at least one template")
    prompts = [t.format(name) for name in class_names for t in templates]
    emb = F.normalize(encode_texts(prompts).float(), dim=-1).view(len(class_names), len(templates), -1)
    classes = F.normalize(emb.mean(1), dim=-1)  # C, D
    return F.normalize(image_emb.float(), dim=-1) @ classes.to(image_emb.device).T


def zero_shot_accuracy(logits: Tensor, labels: Tensor, top_k: int = 1) -> float:
    """Top-``k`` accuracy of class ``logits [N, C]`` against ``labels [N]`` (micro average)."""
    from torchmetrics.functional.classification import multiclass_accuracy

    return float(
        multiclass_accuracy(
            logits, labels.to(logits.device), num_classes=logits.shape[1], top_k=top_k, average="micro"
        )
    )


__all__ = ["chance_recall", "retrieval_metrics", "zero_shot_accuracy", "zero_shot_classify"]
