"""The multi-task RL stage: one loop from rollout to update, checkpointed prompt cache, CPU reference."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from glmkit.data.vlm_samples import packaged_tokenizer
from glmkit.losses.policy import ClippedPolicyLoss
from glmkit.models.encoders import CogViT
from glmkit.models.frozen import FrozenModels, module_device
from glmkit.models.vlm import VisionLanguageModel
from glmkit.models.vlm_processor import VLMProcessor
from glmkit.optim import MuonAdamW
from glmkit.rl.gym.categories import OCR, Counting, SmallText
from glmkit.rl.gym.mix import TaskMix
from glmkit.rl.rollout import InProcessEngine
from glmkit.stages import STAGES
from glmkit.stages.multitask_rl import MultiTaskRL, TaskPrompts

LLAMA = {
    "model_type": "llama",
    "vocab_size": 30534,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
}


@pytest.fixture(scope="module")
def processor() -> VLMProcessor:
    return VLMProcessor(packaged_tokenizer(), patch_size=8, merge_size=2, max_num_patches=16)


def tiny_vlm(processor: VLMProcessor) -> VisionLanguageModel:
    torch.manual_seed(0)
    return VisionLanguageModel(
        CogViT.preset("tiny", patch_size=8, depth=1), LLAMA, **processor.model_kwargs()
    )


def data(tmp_path: Path, held_out: bool = False) -> TaskPrompts:
    cats = [Counting(seed=0, data_dir=str(tmp_path)), OCR(seed=0, data_dir=str(tmp_path))]
    tasks = TaskMix(cats, {"counting": 1.0, "ocr": 1.0}, num_samples=64)
    other = TaskMix(cats, num_samples=64, stream=1) if held_out else None
    return TaskPrompts(tasks, other, held_out_size=4)


def stage(processor: VLMProcessor, **kwargs) -> MultiTaskRL:
    args = {
        "engine": InProcessEngine(max_batch_size=16),
        "group_size": 4,
        "groups_per_step": 2,
        "max_new_tokens": 4,
        "optimization": MuonAdamW(lr=1e-3),
        **kwargs,
    }
    return MultiTaskRL(tiny_vlm(processor), processor, **args)


def trainer(tmp_path: Path, max_steps: int, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
        **kwargs,
    )


def test_registered() -> None:
    assert STAGES.get("multitask_rl") is MultiTaskRL


def test_steps_update_the_policy_with_a_cpu_reference(processor, tmp_path, monkeypatch) -> None:
    rl = stage(processor, loss=ClippedPolicyLoss(beta=0.1, loss_type="grpo"), reference="initial")
    before = {k: v.clone() for k, v in rl.policy.state_dict().items()}
    entered: list[torch.device] = []
    on = FrozenModels.on

    def spy(self, device):
        entered.append(torch.device(device))
        return on(self, device)

    monkeypatch.setattr(FrozenModels, "on", spy)
    fit = trainer(tmp_path, max_steps=2, val_check_interval=2)
    fit.fit(rl, data(tmp_path, held_out=True))
    logged = fit.logged_metrics
    for key in (
        "reward/mean",
        "reward/counting/mean",
        "pass@1",
        "response_length/mean",
        "verifier_failures/count",
        "aborted/count",
        "deferred/count",
        "train/kl",
        "packing/vit_patches_max_over_mean",
        "val/reward/mean",
    ):
        assert key in logged, key
    assert logged["samples/count"] == 8  # 2 groups of 4
    assert rl.engine.weights_version == 2 == rl.global_step  # weights pushed after each update
    assert any(not torch.equal(before[k], v) for k, v in rl.policy.state_dict().items())
    reference = rl.reference["reference"]
    assert module_device(reference).type == "cpu" and entered  # moved for its forward, released
    for key, value in reference.state_dict().items():  # the reference never trains
        assert torch.equal(value, before[key])
    assert float(logged["train/kl"]) > 0  # the policy moved away from it


def test_prompt_cache_is_checkpointed_and_restored(processor, tmp_path) -> None:
    # 4 groups issued, one per generate call; the step stops once 1 of 2 is complete (it is scored
    # while the next batch generates in the engine's thread): the unfinished groups are cached
    rl = stage(
        processor,
        engine=InProcessEngine(max_batch_size=4),
        oversample=2,
        complete_fraction=0.5,
    )
    prompts = data(tmp_path)
    fit = trainer(tmp_path, max_steps=1)
    fit.fit(rl, prompts)
    path = tmp_path / "rl.ckpt"
    fit.save_checkpoint(path)
    saved = torch.load(path, weights_only=False)["rollout_state"]
    cached = [(g["epoch"], g["prompt_index"]) for g in saved["cache"]["groups"]]
    assert len(cached) >= 1 and saved["step"] == 1
    assert [(g.epoch, g.prompt_index) for g in rl.pipeline.scheduler.cache] == cached

    resumed = stage(processor, oversample=2, complete_fraction=0.5)
    submitted: list[str] = []
    submit = resumed.engine.submit

    def record(request, on_complete=None):
        submitted.append(request.prompt_id)
        return submit(request, on_complete)

    resumed.engine.submit = record
    fit = trainer(tmp_path, max_steps=2)
    fit.fit(resumed, prompts, ckpt_path=str(path))
    scheduler = resumed.pipeline.scheduler
    assert resumed.global_step == 2 and scheduler.step == 2  # one more step after the restored one
    unfinished = [
        f"{g['epoch']}/{g['prompt_index']}" for g in saved["cache"]["groups"] if len(g["samples"]) < 4
    ]
    order = list(dict.fromkeys(submitted))
    assert unfinished and order[: len(unfinished)] == unfinished  # the cached groups are re-issued first
    assert set(submitted) - set(unfinished)  # then fresh prompts from the restored cursor


def test_errors_name_the_problem(processor, tmp_path) -> None:
    with pytest.raises(ValueError, match="reference"):
        stage(processor, loss=ClippedPolicyLoss(beta=0.1))
    with pytest.raises(ValueError, match="pass_k"):
        stage(processor, pass_k=[8])
    cats = [Counting(seed=0, data_dir=str(tmp_path)), SmallText(seed=0, data_dir=str(tmp_path))]
    with pytest.raises(ValueError, match=r"\['small_text'\] are multi-step"):
        TaskPrompts(TaskMix(cats, num_samples=8))


def test_policy_from_a_save_pretrained_directory(processor, tmp_path) -> None:
    vlm = tiny_vlm(processor)
    vlm.save_pretrained(tmp_path / "vlm", processor=processor)
    rl = MultiTaskRL(str(tmp_path / "vlm"))  # the default engine generates with the policy itself
    assert isinstance(rl.policy, VisionLanguageModel) and rl.engine.model is rl.policy
    assert rl.processor.image_token_id == vlm.image_token_id
    for key, value in vlm.state_dict().items():
        assert torch.equal(rl.policy.state_dict()[key], value)
    out = rl.export(tmp_path / "export")
    again = VisionLanguageModel.from_pretrained(out)
    for key, value in vlm.state_dict().items():
        assert torch.equal(again.state_dict()[key], value)
