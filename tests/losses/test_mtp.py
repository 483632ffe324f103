"""MTP loss: shift and masking rules on hand-computed examples, normalisation, registry."""

from __future__ import annotations

import math

import pytest
import torch

from glmkit.losses.mtp import (
    IGNORE_INDEX,
    TOKEN_LOSSES,
    MTPLoss,
    sequence_ids,
    shift_left,
    shifted_targets,
)

X = IGNORE_INDEX


def test_registry_holds_the_mtp_loss() -> None:
    assert TOKEN_LOSSES.get("mtp") is MTPLoss
    assert TOKEN_LOSSES.kind == "token_losses"


def test_visual_targets_are_masked_and_the_first_text_token_after_an_image_keeps_its_target() -> None:
    # positions 1, 2 are image tokens; 3 is the first text token after the image
    labels = torch.tensor([[10, 11, 12, 13, 14, 15]])
    image = torch.tensor([[False, True, True, False, False, False]])
    seq = sequence_ids(1, 6)
    assert shifted_targets(labels, 1, seq, image_mask=image).tolist() == [[X, X, 13, 14, 15, X]]
    # MTP depth 1 predicts two ahead: position 1 (an image) still predicts the text token 13
    assert shifted_targets(labels, 2, seq, image_mask=image).tolist() == [[X, 13, 14, 15, X, X]]
    assert shifted_targets(labels, 3, seq, image_mask=image).tolist() == [[13, 14, 15, X, X, X]]


def test_shifts_stay_inside_each_packed_sequence() -> None:
    labels = torch.tensor([[1, 2, 3, 4, 5, 6, 7]])
    by_lengths = sequence_ids(1, 7, seq_lens=torch.tensor([[3, 3]]))  # the 7th position is padding
    by_positions = sequence_ids(1, 7, position_ids=torch.tensor([[0, 1, 2, 0, 1, 2, 0]]))
    assert by_lengths.tolist() == [[0, 0, 0, 1, 1, 1, -1]]
    assert by_positions.tolist() == [[0, 0, 0, 1, 1, 1, 2]]
    assert shifted_targets(labels, 1, by_lengths).tolist() == [[2, 3, X, 5, 6, X, X]]
    assert shifted_targets(labels, 2, by_lengths).tolist() == [[3, X, X, 6, X, X, X]]
    assert shifted_targets(labels, 1, by_positions).tolist() == [[2, 3, X, 5, 6, X, X]]


def test_padding_and_ignored_labels_have_no_target() -> None:
    labels = torch.tensor([[1, 2, X, 4, 5, 6]])  # e.g. a prompt token excluded from the loss
    seq = sequence_ids(1, 6, attention_mask=torch.tensor([[1, 1, 1, 1, 0, 0]]))
    assert seq.tolist() == [[0, 0, 0, 0, -1, -1]]
    assert shifted_targets(labels, 1, seq).tolist() == [[2, X, 4, X, X, X]]


def test_shift_left_zero_fills_outside_the_sequence() -> None:
    x = torch.arange(1, 7, dtype=torch.float32).view(1, 6, 1)
    seq = sequence_ids(1, 6, seq_lens=torch.tensor([[4, 2]]))
    shifted, valid = shift_left(x, 1, seq)
    assert shifted.view(-1).tolist() == [2, 3, 4, 0, 6, 0]
    assert valid.tolist() == [[True, True, True, False, True, False]]


def _logits_with_probability(rows: list[tuple[int, float]], vocab: int = 2) -> torch.Tensor:
    """Logits ``[1, T, 2]`` giving probability ``p`` to token ``target`` at each position."""
    out = []
    for target, p in rows:
        probs = [1 - p] * vocab
        probs[target] = p
        out.append([math.log(q) for q in probs])
    return torch.tensor([out])


def test_each_depth_is_averaged_over_its_own_valid_targets() -> None:
    labels = torch.tensor([[0, 1, 0, 1]])
    # main head: targets 1, 0, 1 at positions 0..2 with probabilities 1/2, 1/4, 1/8; position 3 has none
    main = _logits_with_probability([(1, 0.5), (0, 0.25), (1, 0.125), (0, 1e-6)])
    # depth 1: targets 0, 1 at positions 0, 1 with probability 1/2; positions 2, 3 have none
    depth1 = _logits_with_probability([(0, 0.5), (1, 0.5), (0, 1e-6), (1, 1e-6)])
    # depth 2: target 1 at position 0 with probability 1/4
    depth2 = _logits_with_probability([(1, 0.25), (0, 1e-6), (0, 1e-6), (1, 1e-6)])
    ln2 = math.log(2)

    one = MTPLoss()(main, [depth1], labels)
    assert one.metrics["main_loss"].item() == pytest.approx(2 * ln2)  # (ln 2 + ln 4 + ln 8) / 3
    assert one.metrics["mtp_1_loss"].item() == pytest.approx(ln2)
    assert one.loss.item() == pytest.approx(2 * ln2 + 0.3 * ln2)
    assert [one.metrics[k].item() for k in ("main_tokens", "mtp_1_tokens")] == [3, 2]

    two = MTPLoss(mtp_weight=0.5)(main, [depth1, depth2], labels)
    assert two.metrics["mtp_2_loss"].item() == pytest.approx(2 * ln2)
    assert two.metrics["mtp_2_tokens"].item() == 1
    assert two.loss.item() == pytest.approx(2 * ln2 + 0.5 / 2 * (ln2 + 2 * ln2))
    assert two.metrics["mtp_loss"].item() == pytest.approx(1.5 * ln2)


def test_top1_agreement_per_depth() -> None:
    labels = torch.tensor([[0, 1, 0, 1]])
    main = _logits_with_probability([(1, 0.9), (0, 0.1), (1, 0.9), (0, 0.5)])  # hits 2 of 3
    depth1 = _logits_with_probability([(0, 0.9), (1, 0.9), (0, 0.1), (0, 0.1)])  # hits 2 of 2
    out = MTPLoss()(main, [depth1], labels)
    assert out.metrics["main_top1"].item() == pytest.approx(2 / 3)
    assert out.metrics["mtp_1_top1"].item() == pytest.approx(1.0)


def test_main_term_equals_transformers_causal_lm_loss() -> None:
    from tests.models.mtp.tiny import tiny_llm

    llm = tiny_llm("llama")
    ids = torch.randint(0, 16, (2, 9), generator=torch.Generator().manual_seed(0))
    reference = llm(ids, labels=ids).loss
    logits = llm(ids).logits
    out = MTPLoss(mtp_weight=0.0)(logits, [logits], ids)
    assert out.loss.item() == pytest.approx(reference.item(), rel=1e-5)


def test_no_valid_target_gives_a_zero_loss_with_a_gradient() -> None:
    logits = torch.randn(1, 3, 5, requires_grad=True)
    labels = torch.full((1, 3), X)
    out = MTPLoss()(logits, [logits], labels)
    out.loss.backward()
    assert out.loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_errors_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match="mtp_weight .* >= 0, got -0.1"):
        MTPLoss(mtp_weight=-0.1)
    logits = torch.randn(1, 4, 5)
    with pytest.raises(ValueError, match=r"mtp_logits\[0\] \(depth 1\) must have the main logits' shape"):
        MTPLoss()(logits, [torch.randn(1, 3, 5)], torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must be"):
        MTPLoss()(logits, [], torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="image_mask must be"):
        shifted_targets(
            torch.zeros(1, 4, dtype=torch.long), 1, sequence_ids(1, 4), image_mask=torch.zeros(1, 3)
        )
    with pytest.raises(ValueError, match="seq_lens rows sum to"):
        sequence_ids(1, 4, seq_lens=torch.tensor([[3, 3]]))
