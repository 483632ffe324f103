"""Zero-shot retrieval and classification against direct computations."""

from __future__ import annotations

import pytest
import torch

from glmkit.eval.retrieval import chance_recall, retrieval_metrics, zero_shot_accuracy, zero_shot_classify


def test_perfect_and_shuffled_retrieval() -> None:
    torch.manual_seed(0)
    x = torch.randn(20, 8)
    assert retrieval_metrics(x, x.clone()) == {"i2t/R@1": 1.0, "t2i/R@1": 1.0, "i2t/R@5": 1.0, "t2i/R@5": 1.0}
    y = torch.randn(20, 8)
    sim = torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(y, dim=-1).T
    want = (sim.topk(5, dim=1).indices == torch.arange(20)[:, None]).any(1).float().mean().item()
    got = retrieval_metrics(x, y)
    assert abs(got["i2t/R@5"] - want) < 1e-6


def test_groups_and_chance() -> None:
    x = torch.eye(4)
    y = torch.stack([x[1], x[0], x[2], x[3]])  # texts 0 and 1 swapped: same caption group
    assert retrieval_metrics(x, y, ks=(1,), groups=torch.tensor([0, 0, 1, 2]))["i2t/R@1"] == 1.0
    assert abs(chance_recall(torch.arange(10), 1) - 0.1) < 1e-9
    assert abs(chance_recall(torch.arange(10), 5) - 0.5) < 1e-9


def test_pairs_match_when_any_of_several_ids_is_equal() -> None:
    # A held-out record drawn twice with captions in two languages: a perfect model ranks both of
    # its captions first; with caption ids alone one of them counted as a miss (R@1 0.5 here).
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # images 0 and 1: the same record
    y = x.clone()
    captions = torch.tensor([10, 11, 12])  # the record's English and Chinese captions differ
    records = torch.tensor([7, 7, 8])
    assert retrieval_metrics(x, y, ks=(1,), groups=captions)["i2t/R@1"] < 1.0
    both = retrieval_metrics(x, y, ks=(1,), groups=[captions, records])
    assert both["i2t/R@1"] == both["t2i/R@1"] == 1.0
    with pytest.raises(ValueError, match=r"\[N\] = \[3\]"):
        retrieval_metrics(x, y, groups=[torch.tensor([1, 2])])


def test_zero_shot_classification() -> None:
    classes = {"red": torch.tensor([1.0, 0, 0]), "blue": torch.tensor([0, 1.0, 0])}
    encode = lambda prompts: torch.stack([classes[p.split()[0]] for p in prompts])  # noqa: E731
    images = torch.tensor([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.7, 0.1, 0.1]])
    logits = zero_shot_classify(images, ["red", "blue"], encode, templates=("{} shapes", "{}"))
    assert logits.argmax(1).tolist() == [0, 1, 0]
    assert abs(zero_shot_accuracy(logits, torch.tensor([0, 1, 1])) - 2 / 3) < 1e-6
