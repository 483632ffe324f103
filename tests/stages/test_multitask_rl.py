"""The multi-task RL stage: one loop from rollout to update, checkpointed prompt cache, CPU reference."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from glmkit.data.vlm_samples import packaged_tokenizer
from glmkit.losses.policy import ClippedPolicyLoss
from glmkit.models import vlm_processor
from glmkit.models.frozen import FrozenModels, module_device
from glmkit.models.vlm import VisionLanguageModel
from glmkit.models.vlm_processor import VLMProcessor
from glmkit.optim import MuonAdamW
from glmkit.rl.gym.categories import OCR, Counting, SmallText
from glmkit.rl.gym.category import Draft, TaskCategory, VerifierSpec
from glmkit.rl.gym.mix import TaskMix
from glmkit.rl.rollout import Completion, InProcessEngine, RewardFunction, RolloutRequest, TokenPrompt
from glmkit.rl.rollout.inprocess import ChatPrompts, token_logprobs
from glmkit.scoring import Sample
from glmkit.stages import STAGES
from glmkit.stages.multitask_rl import MultiTaskRL, RankShare, TaskPrompts, oracle_episode, sft_warm_start
from tests.models.test_vlm import make_vlm
from tests.rl.rollout.episodes.kit import crop_call, episode_processor, forcing


@pytest.fixture(scope="module")
def processor() -> VLMProcessor:
    return VLMProcessor(packaged_tokenizer(), patch_size=8, merge_size=2, max_num_patches=16)


def tiny_vlm(processor: VLMProcessor) -> VisionLanguageModel:
    """The VLM tests' tiny random Llama VLM, in training mode (the stage trains it)."""
    return make_vlm(processor).train()


def data(tmp_path: Path, held_out: bool = False, num_samples: int = 64) -> TaskPrompts:
    cats = [Counting(seed=0, data_dir=str(tmp_path)), OCR(seed=0, data_dir=str(tmp_path))]
    tasks = TaskMix(cats, {"counting": 1.0, "ocr": 1.0}, num_samples=num_samples)
    other = TaskMix(cats, num_samples=64, stream=1) if held_out else None
    return TaskPrompts(tasks, other, held_out_size=4)


def stage(processor: VLMProcessor, policy: VisionLanguageModel | None = None, **kwargs) -> MultiTaskRL:
    args = {
        "engine": InProcessEngine(max_batch_size=16),
        "group_size": 4,
        "groups_per_step": 2,
        "max_new_tokens": 4,
        "optimization": MuonAdamW(lr=1e-3),
        **kwargs,
    }
    return MultiTaskRL(policy if policy is not None else tiny_vlm(processor), processor, **args)


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
    assert [c.name for c in TaskPrompts(TaskMix(cats, num_samples=8)).episode_categories()] == ["small_text"]
    with pytest.raises(Exception, match="hermes"):  # the registered formats are named
        TaskPrompts(TaskMix(cats, num_samples=8), tool_format="hermez")


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
    # loaded for training: train mode, everything trains as saved; policy_freeze freezes anew
    assert rl.policy.training and all(p.requires_grad for p in rl.policy.parameters())
    frozen = MultiTaskRL(str(tmp_path / "vlm"), policy_freeze=["encoder"])
    assert frozen.policy.training
    assert not any(p.requires_grad for p in frozen.policy.encoder.parameters())
    assert all(p.requires_grad for p in frozen.policy.projector.parameters())
    with pytest.raises(ValueError, match="policy_freeze applies to a policy loaded from a directory"):
        stage(processor, policy_freeze=["encoder"])
    with pytest.raises(ValueError, match="freeze pattern 'vision' matches no parameter"):
        MultiTaskRL(str(tmp_path / "vlm"), policy_freeze=["vision"])


def test_a_causal_lm_policy_directory_is_frozen_by_pattern(tmp_path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from glmkit.stages.multitask_rl import load_policy
    from tests.helpers.tokenizers import byte_level_bpe

    config = LlamaConfig(
        vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    byte_level_bpe(["count the red squares"] * 5, 300, eos_token="<|endoftext|>").save_pretrained(tmp_path)
    model, tokenizer = load_policy(tmp_path, freeze=["model.embed_tokens", "model.layers.0"])
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert "lm_head.weight" in trainable and "model.layers.1.mlp.up_proj.weight" in trainable
    assert not any(name.startswith(("model.embed_tokens", "model.layers.0.")) for name in trainable)
    assert tokenizer.eos_token == "<|endoftext|>"
    everything = load_policy(tmp_path)[0]
    assert all(p.requires_grad for p in everything.parameters())


def first_step_on_rank(
    processor: VLMProcessor, prompts: TaskPrompts, rank: int, world: int, groups_per_step: int
) -> tuple[list[str], dict]:
    """The group ids and prompts of the first rollout step of ``rank`` out of ``world`` (the rank
    and world size the stage reads from its trainer, simulated)."""
    rl = stage(processor, group_size=2, groups_per_step=groups_per_step, max_new_tokens=2)
    rl.trainer = SimpleNamespace(global_rank=rank, world_size=world, datamodule=prompts)
    rl.setup_rollout(prompts)
    try:
        rollout = rl._run(rl.pipeline.next_batch())
        samples, by_id = rl.gather_rollouts(rollout)  # no process group: this rank's own
    finally:
        rl.close()
    assert rl.engine.seed == rank  # the engine's seed 0, offset by the rank
    assert len(samples) == 2 * groups_per_step
    assert {s.prompt_id for s in samples} == set(by_id)
    return sorted(by_id), by_id


def test_data_parallel_ranks_roll_out_disjoint_shares(processor, tmp_path) -> None:
    prompts = data(tmp_path, num_samples=8)
    ids0, prompts0 = first_step_on_rank(processor, prompts, rank=0, world=2, groups_per_step=4)
    ids1, prompts1 = first_step_on_rank(processor, prompts, rank=1, world=2, groups_per_step=4)
    single, _ = first_step_on_rank(processor, prompts, rank=0, world=1, groups_per_step=8)
    assert not set(ids0) & set(ids1)  # no prompt rolled out twice
    assert sorted(ids0 + ids1) == single == sorted(f"0/{i}" for i in range(8))  # one epoch between them
    for by_id in (prompts0, prompts1):  # a group id names the dataset index of its prompt
        for prompt_id, sample in by_id.items():
            assert sample == prompts.tasks[int(prompt_id.split("/")[1])], prompt_id


def test_rank_share_strides_the_dataset(tmp_path) -> None:
    tasks = data(tmp_path, num_samples=5).tasks
    shares = [RankShare(tasks, r, 2) for r in range(2)]
    assert [len(s) for s in shares] == [3, 2]
    assert shares[1].global_id("3/1") == "3/3" and shares[0].global_id("0/2") == "0/4"
    with pytest.raises(IndexError, match="outside rank 1's share of 2"):
        shares[1][2]
    with pytest.raises(ValueError, match="5 prompts cannot be shared by 8"):
        RankShare(tasks, 0, 8)


def test_initial_reference_survives_a_resume(processor, tmp_path) -> None:
    rl = stage(processor, loss=ClippedPolicyLoss(beta=0.1, loss_type="grpo"), reference="initial")
    initial = {k: v.clone() for k, v in rl.policy.state_dict().items()}
    prompts = data(tmp_path)
    fit = trainer(tmp_path, max_steps=1)
    fit.fit(rl, prompts)
    path = tmp_path / "rl.ckpt"
    fit.save_checkpoint(path)
    trained = torch.load(path, weights_only=False)["state_dict"]
    assert any(not torch.equal(trained[f"policy.{k}"], v) for k, v in initial.items())

    resumed = stage(processor, loss=ClippedPolicyLoss(beta=0.1, loss_type="grpo"), reference="initial")
    with torch.no_grad():  # a different starting point: only the checkpoint can give the reference
        for p in resumed.policy.parameters():
            p.add_(1.0)
    fit = trainer(tmp_path, max_steps=2)
    fit.fit(resumed, prompts, ckpt_path=str(path))
    assert resumed.global_step == 2
    reference = resumed.reference["reference"].state_dict()
    for key, value in initial.items():  # the uninterrupted run's reference: the initial policy
        assert torch.equal(reference[key], value), key


def _ddp_rollout_steps(rank: int, world: int, root: str) -> dict:
    """Two RL steps under Lightning DDP on this gloo rank; what each rank rolled out and trained."""
    import os

    # the helper started the process group: Lightning sees an externally launched rank and joins it
    os.environ.update(LOCAL_RANK=str(rank), NODE_RANK="0", WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    processor = VLMProcessor(packaged_tokenizer(), patch_size=8, merge_size=2, max_num_patches=16)
    rl = stage(processor, group_size=2, groups_per_step=2, max_new_tokens=2)
    own: list[str] = []
    gathered: list[list[str]] = []
    gather = rl.gather_rollouts

    def record(rollout):
        own.extend(rl.share.global_id(g.prompt_id) for g in rollout.groups)
        samples, prompts = gather(rollout)
        gathered.append([s.prompt_id for s in samples])
        return samples, prompts

    rl.gather_rollouts = record
    fit = trainer(Path(root), max_steps=2, devices=world, strategy="ddp")
    fit.fit(rl, data(Path(root), num_samples=8))
    path = Path(root) / "ddp.ckpt"
    fit.save_checkpoint(path)  # a collective: every rank's rollout state goes into the file
    saved = torch.load(path, weights_only=False)
    return {
        "own": own,
        "gathered": gathered,
        "weights": {k: v.detach().clone() for k, v in rl.policy.state_dict().items()},
        "states": [s["rollout_state"]["step"] for s in saved["rollout_state_per_rank"]],
    }


@pytest.mark.slow
def test_ddp_ranks_share_the_prompts_and_train_on_all(tmp_path) -> None:
    from tests.helpers.distributed import run_on_ranks

    ranks = run_on_ranks(_ddp_rollout_steps, 2, tmp_path / "dist", str(tmp_path))
    own0, own1 = ranks[0]["own"], ranks[1]["own"]
    assert len(own0) == len(own1) == 4 and not set(own0) & set(own1)
    assert sorted(own0 + own1) == sorted(f"0/{i}" for i in range(8))  # one epoch between them
    assert ranks[0]["gathered"] == ranks[1]["gathered"]  # both ranks train on every rollout
    assert all(len(step) == 2 * 2 * 2 for step in ranks[0]["gathered"])
    for key, value in ranks[0]["weights"].items():  # DDP kept the policies equal
        assert torch.equal(ranks[1]["weights"][key], value), key
    assert ranks[0]["states"] == ranks[1]["states"] == [2, 2]


# ------------------------------------------------------------------------ multi-step categories
class AnswerOnly(SmallText):
    """``small_text`` without a scripted trajectory."""

    def oracle_trajectory(self, sample: Sample, tool_format: str = "hermes") -> None:
        return None


def test_oracle_episode_trains_the_trajectory_with_observations_masked(tmp_path) -> None:
    processor = episode_processor()
    prompts = ChatPrompts(processor)
    eos = processor.tokenizer.eos_token_id
    category = SmallText(data_dir=str(tmp_path))
    sample = category.sample(0)
    trace = oracle_episode(category, sample, prompts, eos)
    crop, final = category.oracle_trajectory(sample)
    call = processor.tokenizer.encode(crop, add_special_tokens=False)
    answer = processor.tokenizer.encode(final, add_special_tokens=False)
    observation = processor.token_id("<|observation|>")
    # the call ends with the template's <|observation|>: the policy learns to end its turn with it
    assert trace.token_ids[: len(call) + 1] == [*call, observation] and all(trace.mask[: len(call) + 1])
    assert trace.token_ids[-len(answer) - 1 :] == [*answer, eos] and all(trace.mask[-len(answer) - 1 :])
    assert not any(trace.mask[len(call) + 1 : -len(answer) - 1]) and len(trace.images) == 1
    assert trace.messages[-1]["content"] == final and "crop_image" in trace.messages[1]["content"]
    # a category without a trajectory: its final answer right after the episode's opening
    plain = oracle_episode(AnswerOnly(data_dir=str(tmp_path)), sample, prompts, eos)
    assert plain.token_ids == [*answer, eos] and all(plain.mask) and plain.images == []
    assert plain.prompt[0]["role"] == "system"  # the tools are announced as in the rollouts
    # the warm start runs on a mix of both kinds
    vlm = tiny_vlm(processor)
    mix = TaskMix([category, Counting(data_dir=str(tmp_path))], num_samples=8)
    losses = sft_warm_start(vlm, prompts, mix, steps=1, batch_size=2, lr=1e-3, stop_token_id=eos)
    assert len(losses) == 1 and math.isfinite(losses[0])


def test_grpo_steps_on_a_multi_step_and_a_single_step_category(tmp_path) -> None:
    processor = episode_processor()
    small_text = SmallText(data_dir=str(tmp_path), max_turns=2)
    cats = [small_text, Counting(data_dir=str(tmp_path))]
    tasks = TaskMix(cats, {"small_text": 1.0, "counting": 1.0}, num_samples=16)
    held_out = TaskMix(cats, num_samples=8, stream=1)
    prompts = TaskPrompts(tasks, held_out, held_out_size=2, tool_format="hermes")
    call = processor.tokenizer.encode(crop_call("top-left"), add_special_tokens=False)
    call.append(processor.token_id("<|observation|>"))
    rl = stage(processor, group_size=2, groups_per_step=2, max_new_tokens=len(call) + 2, temperature=1.0)
    # the policy's first turn on small_text is its own forced crop call (real log-probs); the rest samples
    rl.params = dataclasses.replace(
        rl.params, extra={"prefix_allowed_tokens_fn": forcing(processor, [call], True)}
    )
    scores = iter(range(10_000))  # rewards cycling 0, 1, 2: groups seldom tie, advantages are non-zero
    prompts.reward_system = lambda: RewardFunction(lambda sample, response, metadata: float(next(scores) % 3))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def keep_grad(module, args, kwargs):
        logprobs, mask = args[0], args[3]
        logprobs.retain_grad()
        seen.append((logprobs, mask))

    rl.loss.register_forward_pre_hook(keep_grad, with_kwargs=True)
    gathered: list[list] = []
    gather = rl.gather_rollouts

    def record(rollout):
        out = gather(rollout)
        gathered.append(out[0])
        return out

    rl.gather_rollouts = record
    fit = trainer(tmp_path, max_steps=2, val_check_interval=2)
    fit.fit(rl, prompts)
    logged = fit.logged_metrics
    for key in (
        "reward/small_text/mean",
        "reward/counting/mean",
        "episodes/count",
        "train/loss",
        "val/reward/small_text/mean",  # held-out episodes, greedy
    ):
        assert key in logged, key
    assert float(logged["episodes/untrainable"]) == 0 and rl.global_step == 2
    episodes = [s for step in gathered for s in step if s.token_mask is not None]
    assert episodes and any(not all(s.token_mask) for s in episodes)
    assert any(s.observation_images for s in episodes)
    # observation tokens (and padding) get no gradient; the policy's tokens do
    assert seen
    for logprobs, mask in seen:
        assert logprobs.grad is not None
        assert (logprobs.grad[~mask] == 0).all() and (logprobs.grad[mask] != 0).any()


class ScriptedPolicyEngine(InProcessEngine):
    """An in-process engine (so the stage rolls out nothing ahead) that writes, in each turn of an
    episode, the small-text oracle's replies as token ids, and answers "3" to anything else."""

    def __init__(self, category: SmallText, **kwargs) -> None:
        super().__init__(**kwargs)
        self.category = category

    async def generate(self, request: RolloutRequest, prompt: TokenPrompt | None = None) -> Completion:
        tokenizer = self.prompts.tokenizer
        if prompt is None:
            ids = [*tokenizer.encode("3", add_special_tokens=False), tokenizer.eos_token_id]
            return Completion(request, "3", "stop", len(ids), self.weights_version, ids, [-1.0] * len(ids))
        processor = self.prompts.processor
        turn = list(prompt.token_ids).count(processor.token_id("<|assistant|>")) - 1
        text = self.category.oracle_trajectory(request.sample)[turn]
        ids = tokenizer.encode(text, add_special_tokens=False)
        ids.append(processor.token_id("<|observation|>") if turn == 0 else tokenizer.eos_token_id)
        logprobs = [-0.5 - 0.01 * k for k in range(len(ids))]
        return Completion(request, text, "stop", len(ids), self.weights_version, ids, logprobs)


def test_pack_items_are_the_teacher_forced_sizes_from_images_processed_once(tmp_path, monkeypatch) -> None:
    """Each sample's PackItem is its row of the teacher-forced batch (prompt + response tokens,
    each image's patches), for single-step samples and episodes; packing counts them without
    cutting any image into patches, and a step reads each prompt image from disk once (packing
    used to encode every prompt, images included, and teacher forcing encoded it again)."""
    processor = episode_processor()
    category = SmallText(data_dir=str(tmp_path), max_turns=2)
    mix = TaskMix(
        [category, Counting(data_dir=str(tmp_path))], {"small_text": 1.0, "counting": 1.0}, num_samples=16
    )
    prompts = TaskPrompts(mix)
    rl = stage(
        processor, engine=ScriptedPolicyEngine(category, max_batch_size=8), group_size=2, groups_per_step=4
    )
    rl.trainer = SimpleNamespace(global_rank=0, world_size=1, datamodule=prompts)
    rl.setup_rollout(prompts)
    try:
        samples, by_id = rl.gather_rollouts(rl._run(rl.pipeline.next_batch()))
    finally:
        rl.close()
    chosen = [i for i, s in enumerate(samples) if rl.trainable(s, by_id)]
    assert any(samples[i].observation_images for i in chosen)
    assert any(samples[i].token_mask is None and by_id[samples[i].prompt_id].images for i in chosen)

    reads: Counter[str] = Counter()
    processed: list = []
    decode, preprocess = vlm_processor.decode_image, VLMProcessor.preprocess_image
    monkeypatch.setattr(
        vlm_processor, "decode_image", lambda src, where: reads.update([src]) or decode(src, where)
    )
    monkeypatch.setattr(
        VLMProcessor, "preprocess_image", lambda self, im: processed.append(im) or preprocess(self, im)
    )
    items = rl.pack_items(samples, chosen, by_id)
    assert not processed  # sizes from the text and the image sizes
    rl.micro_batch_loss(samples, chosen, by_id, torch.ones(len(samples)), 1)
    assert processed and reads and set(reads.values()) == {1}, reads  # each prompt image read once
    monkeypatch.undo()

    for i, item in zip(chosen, items, strict=True):
        s = samples[i]
        prompt = by_id[s.prompt_id]
        prompt = prompt if s.token_mask is None else rl.rollout_engine.opening(prompt)
        batch, _, _ = rl.prompts.teacher_forcing_batch(
            [prompt], [rl.response_ids(s)], [s.token_mask], [s.observation_images]
        )
        assert item.text_tokens == int(batch["attention_mask"].sum()), s
        assert item.image_patches == tuple(batch["grid_thw"].prod(dim=1).tolist()), s


def _episode_run(tmp_path: Path, max_steps: int, ckpt: Path | None = None, save: Path | None = None) -> list:
    """RL on ``small_text`` with a scripted engine: 1 group per step plus 1 oversampled, so each step
    caches a complete surplus group of episodes. Returns, per trained sample, its step, group id,
    index, mask, crops (pixels) and the conversation it was trained after."""
    processor = episode_processor()
    category = SmallText(data_dir=str(tmp_path / "gym"), max_turns=2)
    prompts = TaskPrompts(TaskMix([category], num_samples=8))
    prompts.reward_system = lambda: RewardFunction(
        lambda sample, response, metadata: float(metadata["index"])
    )
    engine = ScriptedPolicyEngine(category, max_batch_size=4)
    rl = stage(processor, engine=engine, group_size=2, groups_per_step=1, oversample=1)
    trained: list = []
    micro_batch_loss = rl.micro_batch_loss

    def record(samples, rows, by_id, *args):
        for i in rows:
            s = samples[i]
            crops = [np.asarray(im).copy() for im in s.observation_images]
            trained.append(
                (rl.global_step, s.prompt_id, s.index, s.token_mask, crops, rl.prompt_of(s, by_id))
            )
        return micro_batch_loss(samples, rows, by_id, *args)

    rl.micro_batch_loss = record
    fit = trainer(tmp_path, max_steps=max_steps)
    fit.fit(rl, prompts, ckpt_path=None if ckpt is None else str(ckpt))
    if save is not None:
        fit.save_checkpoint(save)
    assert float(fit.logged_metrics["episodes/untrainable"]) == 0
    return trained


def test_cached_episodes_are_trained_after_a_resume_as_without_it(tmp_path) -> None:
    whole = _episode_run(tmp_path / "whole", max_steps=2)
    path = tmp_path / "rl.ckpt"
    _episode_run(tmp_path / "first", max_steps=1, save=path)
    saved = torch.load(path, weights_only=False)["rollout_state"]["cache"]["groups"]
    assert len(saved) == 1 and all("observation_images" in s for s in saved[0]["samples"])
    resumed = _episode_run(tmp_path / "resumed", max_steps=2, ckpt=path)
    after = [r for r in whole if r[0] == 1]  # the second step: the group cached by the first
    assert len(after) == len(resumed) == 2 and all(r[0] == 1 for r in resumed)
    for (_, gid, index, mask, crops, opening), again in zip(after, resumed, strict=True):
        assert (gid, index, mask) == again[1:4] and gid == f"0/{saved[0]['prompt_index']}"
        assert mask is not None and not all(mask) and len(crops) == 1 == len(again[4])
        assert np.array_equal(crops[0], again[4][0])  # the same crop, read back from the checkpoint
        assert _strip_paths(opening) == _strip_paths(again[5])


def _strip_paths(messages: list) -> list:
    """The conversation with its images as pixel arrays (comparable across data folders)."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            content = [np.asarray(p["image"]).tolist() if p.get("type") == "image" else p for p in content]
        out.append({**m, "content": content})
    return out


def test_a_text_only_response_ends_with_the_engines_turn_end(processor) -> None:
    # A server that returns text only: the response is tokenized again and, when it stopped, ends
    # with the id the engine stops on (its configured ids first), not the processor's by default.
    from glmkit.rl.rollout.group import ScoredSample

    turn_ends = processor.stop_token_ids()
    given = max(turn_ends) + 1  # another id the engine was told to stop on
    rl = stage(processor, engine=InProcessEngine(max_batch_size=16, stop_token_ids=[given, *turn_ends]))
    stopped = ScoredSample("p", 0, "counting", "three", 1.0, finish_reason="stop")
    cut = ScoredSample("p", 1, "counting", "three", 1.0, finish_reason="length")
    words = processor.tokenizer.encode("three", add_special_tokens=False)
    assert rl.turn_end_id() == given
    assert rl.response_ids(stopped) == [*words, given] and rl.response_ids(cut) == words
    assert stage(processor).turn_end_id() == turn_ends[0]  # no ids given: the processor's
    # a server that names the id that stopped the reply (vLLM's stop_reason): that id, not the default
    named = ScoredSample("p", 2, "counting", "three", 1.0, finish_reason="stop", stop_token_id=turn_ends[-1])
    assert rl.response_ids(named) == [*words, turn_ends[-1]]


def test_dr_grpo_divides_by_one_constant_length(processor) -> None:
    """Dr. GRPO's L is one constant: without one the stage gives ``max_new_tokens`` (a micro-batch's
    padded width would make the update depend on the packing; the 2-rank test checks the update)."""
    assert stage(processor, loss=ClippedPolicyLoss(loss_type="dr_grpo")).loss.max_completion_length == 4
    kept = stage(processor, loss=ClippedPolicyLoss(loss_type="dr_grpo", max_completion_length=9))
    assert kept.loss.max_completion_length == 9
    assert stage(processor, loss=ClippedPolicyLoss(loss_type="grpo")).loss.max_completion_length is None


class SayYes(TaskCategory):
    """A one-token task: the reward is 1 for ``yes`` (exact match), 0 for anything else."""

    name = "say_yes"

    def draw(self, rng: np.random.Generator, index: int) -> Draft:
        shade = int(rng.integers(256))
        return Draft("Is it? Answer yes or no.", "yes", [Image.new("RGB", (16, 16), (shade, 0, 0))])

    def verifiers(self) -> dict[str, VerifierSpec]:
        return {"exact_match": VerifierSpec("exact_match")}

    def oracle(self, sample: Sample) -> str:
        return "yes"


def test_grpo_raises_the_probability_of_the_rewarded_answer(processor, tmp_path) -> None:
    """The whole loop points the right way: rollouts, rewards, advantages by group, packing rows
    and the update. Three answers share most of the initial mass (a bias on the LM head); only
    ``yes`` is rewarded; after a few GRPO steps its teacher-forced probability on held-out prompts
    has risen and the others' have fallen. A sign error or a row mix-up anywhere lowers it."""
    vlm = tiny_vlm(processor)
    lm = vlm.language_model
    yes, no, maybe = (processor.tokenizer.convert_tokens_to_ids(t) for t in ("yes", "no", "maybe"))
    head = torch.nn.Linear(lm.lm_head.in_features, lm.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[[yes, no, maybe]] = 10.0  # about 0.23 each, the rest of the vocabulary 0.32
    lm.lm_head = head
    cat = SayYes(data_dir=str(tmp_path))
    rl = stage(
        processor,
        policy=vlm,
        group_size=8,
        groups_per_step=4,
        max_new_tokens=1,
        optimization=MuonAdamW(lr=0.1, weight_decay=0.0),
    )
    held_out = [SayYes(seed=1, data_dir=str(tmp_path)).sample(i) for i in range(4)]

    def probabilities() -> torch.Tensor:
        """p(yes), p(no), p(maybe) as the first answer token, per held-out prompt."""
        out = []
        with torch.no_grad():
            for token in (yes, no, maybe):
                batch, ids, mask = rl.prompts.teacher_forcing_batch(held_out, [[token]] * len(held_out))
                out.append(token_logprobs(vlm, batch, ids, mask)[:, 0].exp())
        return torch.stack(out, dim=1)

    before = probabilities()
    assert ((before > 0.15) & (before < 0.3)).all(), before
    trainer(tmp_path, max_steps=6).fit(rl, TaskPrompts(TaskMix([cat], num_samples=64)))
    after = probabilities()
    assert (after[:, 0] > before[:, 0] + 0.1).all(), (before, after)
    assert (after[:, 1:] < before[:, 1:]).all(), (before, after)
