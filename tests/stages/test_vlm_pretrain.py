"""VLMPretrain: main + per-depth MTP losses on a mixed batch, freezing, export and reload, the recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from glmkit.cli import main
from glmkit.data.vlm_samples import ProceduralConversations, VLMChatCollate
from glmkit.models.mtp import MTPCausalLM
from glmkit.models.vlm import VisionLanguageModel
from glmkit.stages.vlm_pretrain import VLMPretrain
from tests.models.test_processor import tiny_processor
from tests.models.test_vlm import llm_config, tiny_encoder

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart" / "vlm_tiny.yaml"


@pytest.fixture(scope="module")
def collate() -> VLMChatCollate:
    return VLMChatCollate(tiny_processor(), max_length=512)


@pytest.fixture(scope="module")
def batch(collate: VLMChatCollate) -> dict:
    tasks = ("caption", "text", "grounding", "video")
    samples = [
        {**ProceduralConversations(t).read(i), "source": t, "index": i, "skipped": []}
        for i, t in enumerate(tasks)
    ]
    return collate(samples)


def make_stage(collate: VLMChatCollate, depths: int = 2, **vlm_args) -> VLMPretrain:
    kw = collate.processor.model_kwargs()
    torch.manual_seed(0)
    vlm = VisionLanguageModel(
        tiny_encoder(), llm_config("llama", kw["vocab_size"]), kw["image_token_id"], **vlm_args
    )
    return VLMPretrain(vlm, mtp_depths=depths)


def test_step_logs_main_and_per_depth_metrics_and_the_loss_falls(collate, batch) -> None:
    stage = make_stage(collate, depths=2)
    optimizer = torch.optim.AdamW([p for p in stage.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(8):
        result = stage.compute_loss(batch)
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
        losses.append(float(result.loss.detach()))
    for key in ("main_loss", "main_top1", "mtp_1_loss", "mtp_1_top1", "mtp_2_loss", "mtp_2_top1", "mtp_loss"):
        assert key in result.metrics
    expected = result.metrics["main_loss"] + 0.3 * result.metrics["mtp_loss"]
    assert torch.allclose(result.loss.detach(), expected)
    assert losses[-1] < 0.7 * losses[0]
    assert stage.mtp.layers[0].eh_proj.weight.grad is not None


def test_frozen_encoder_stays_fixed_and_depth_zero_is_next_token_only(collate, batch) -> None:
    stage = make_stage(collate, depths=0, freeze=["encoder"])
    assert stage.mtp is None
    result = stage.compute_loss(batch)
    assert "mtp_loss" not in result.metrics
    result.loss.backward()
    assert all(p.grad is None for p in stage.vlm.encoder.parameters())
    assert stage.vlm.projector.proj.weight.grad is not None if hasattr(stage.vlm.projector, "proj") else True
    with pytest.raises(ValueError, match="mtp_depths"):
        make_stage(collate, depths=-1)


def test_export_reloads_the_vlm_and_its_mtp_heads(collate, batch, tmp_path: Path) -> None:
    stage = make_stage(collate, depths=1).eval()
    stage.export(tmp_path, processor=collate.processor)
    loaded = MTPCausalLM.from_pretrained(tmp_path)
    assert loaded.mtp_load_report.fresh_depths == [] and loaded.depths == 1
    vlm = VisionLanguageModel.from_pretrained(tmp_path, language_model=loaded.llm).eval()
    reloaded = VLMPretrain(vlm, mtp_depths=1)
    reloaded.mtp = loaded.mtp
    with torch.no_grad():
        before, after = stage.compute_loss(batch), reloaded.compute_loss(batch)
    for key in ("main_loss", "mtp_1_loss"):
        assert torch.allclose(before.metrics[key], after.metrics[key], atol=1e-5)


@pytest.mark.parametrize("recipe", ["quickstart/vlm_tiny.yaml", "vlm/pretrain_mmtp.yaml"])
def test_recipes_print_their_whole_config(recipe: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(ROOT / "recipes" / recipe), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "glmkit.stages.vlm_pretrain.VLMPretrain"
