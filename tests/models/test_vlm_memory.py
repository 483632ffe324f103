"""The VLM's memory switches (GLM-5V-Turbo section 2.4): ViT recomputation and CPU offload of visual
activations leave the loss and every gradient as they are, and each switch does its job."""

from __future__ import annotations

import pytest
import torch

from glmkit.models.vlm import VisionLanguageModel
from tests.models.test_processor import tiny_processor
from tests.models.test_vlm import make_vlm, mixed_batch


@pytest.fixture(scope="module")
def setup():
    processor = tiny_processor()
    batch = mixed_batch(processor)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return processor, batch, labels


def loss_and_grads(vlm: VisionLanguageModel, batch, labels) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    vlm.zero_grad(set_to_none=True)
    loss = vlm(**batch, labels=labels).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in vlm.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "switches",
    [
        {"recompute_encoder": True},
        {"offload_visual_activations": True},
        {"recompute_encoder": True, "offload_visual_activations": True},
    ],
)
def test_switches_give_the_same_gradients(setup, switches, monkeypatch) -> None:
    processor, batch, labels = setup
    reference = make_vlm(processor, seed=1).train()
    switched = make_vlm(processor, seed=1, **switches).train()
    switched.load_state_dict(reference.state_dict())
    loss, grads = loss_and_grads(reference, batch, labels)
    assert any(n.startswith("encoder.") for n in grads)  # the encoder is in the graph

    encoder_calls = []
    switched.encoder.register_forward_pre_hook(
        lambda *_: encoder_calls.append(1)
    )  # recomputation may stop early
    offloads = []
    save_on_cpu = torch.autograd.graph.save_on_cpu

    def spy(*args, **kwargs):
        offloads.append(kwargs)
        return save_on_cpu(*args, **kwargs)

    monkeypatch.setattr(torch.autograd.graph, "save_on_cpu", spy)
    got_loss, got_grads = loss_and_grads(switched, batch, labels)
    torch.testing.assert_close(got_loss, loss, rtol=0, atol=0)
    assert got_grads.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-6, atol=1e-7, msg=name)
    # recomputation runs the encoder again in backward; offloading enters save_on_cpu once
    assert len(encoder_calls) == (2 if switches.get("recompute_encoder") else 1)
    assert offloads == ([{"pin_memory": False}] if switches.get("offload_visual_activations") else [])


def test_switches_are_off_without_gradients_and_saved(setup, tmp_path) -> None:
    processor, batch, _ = setup
    vlm = make_vlm(processor, recompute_encoder=True, offload_visual_activations=True)
    calls = []
    vlm.encoder.register_forward_pre_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        logits = vlm(**batch).logits
    assert len(calls) == 1 and torch.isfinite(logits).all()
    vlm.save_pretrained(tmp_path)
    loaded = VisionLanguageModel.from_pretrained(tmp_path)
    assert loaded.recompute_encoder and loaded.offload_visual_activations
