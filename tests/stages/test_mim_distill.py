"""CogViT stage 1: the training step, what it optimises and saves, exact resume, DDP on CPU."""

from __future__ import annotations

import csv
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from glmkit.cli import main
from glmkit.data.masking import RandomMask
from glmkit.models.distill_targets import PHISNorm
from glmkit.models.encoders import CogViT
from glmkit.models.teachers import DINOv3Teacher, SigLIP2Teacher
from glmkit.stages import MIMDistill
from tests.helpers.distributed import run_on_ranks
from tests.stages.conftest import phis_norm


def _stage(**kwargs) -> MIMDistill:
    torch.manual_seed(0)
    return MIMDistill(
        encoder=CogViT.preset("tiny"),
        teachers={
            "siglip2": SigLIP2Teacher.preset("tiny", image_size=64),
            "dinov3": DINOv3Teacher.preset("tiny", image_size=64),
        },
        **{"masking": RandomMask(0.35), **kwargs},
    )


def test_distill_step_trains_student_adaptors_and_mask_token_but_not_teachers() -> None:
    stage = _stage(teacher_weights={"siglip2": 2.0})
    images = torch.rand(2, 3, 64, 64)
    mask = stage.draw_mask(2, stage.student_grid(images), split="train", step=0)
    assert mask.shape == (2, 16) and mask.sum(1).tolist() == [6, 6]  # round(0.35 * 16)
    metrics = stage.distill(images, mask)
    expected = 2.0 * metrics["siglip2/loss"] + 1.0 * metrics["dinov3/loss"]
    assert torch.allclose(metrics["loss"], expected)
    metrics["loss"].backward()
    assert stage.mask_token.grad is not None and stage.mask_token.grad.abs().sum() > 0
    assert all(p.grad is not None for p in stage.encoder.parameters() if p.requires_grad)
    assert all(p.grad is not None for p in stage.adaptors.parameters())
    teacher_params = [p for t in stage.teachers.values() for p in t.parameters()]
    assert teacher_params and all(p.grad is None and not p.requires_grad for p in teacher_params)


def test_loss_only_sees_masked_positions() -> None:
    stage = _stage()
    images = torch.rand(2, 3, 64, 64)
    mask = stage.draw_mask(2, (4, 4), split="train", step=3)
    real_targets = stage.distill_targets
    base = stage.distill(images, mask)["loss"]

    def corrupted(imgs, grid):  # scramble the targets at visible positions only
        targets = real_targets(imgs, grid)
        return {
            k: v._replace(
                features=torch.where(mask.unsqueeze(-1), v.features, torch.randn_like(v.features) * 100)
            )
            for k, v in targets.items()
        }

    stage.distill_targets = corrupted
    assert torch.allclose(stage.distill(images, mask)["loss"], base)


def test_masks_are_a_function_of_seed_step_and_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    stage = _stage()
    a = stage.draw_mask(4, (8, 8), split="train", step=5)
    assert torch.equal(a, stage.draw_mask(4, (8, 8), split="train", step=5))
    assert not torch.equal(a, stage.draw_mask(4, (8, 8), split="train", step=6))
    assert not torch.equal(a, _stage(seed=1).draw_mask(4, (8, 8), split="train", step=5))
    monkeypatch.setattr(MIMDistill, "global_rank", property(lambda self: 1))
    assert not torch.equal(a, stage.draw_mask(4, (8, 8), split="train", step=5))


def test_teachers_are_left_out_of_checkpoint_and_optimizer() -> None:
    stage = _stage()
    assert not any(k.startswith("teachers.") for k in stage.state_dict())
    clone = _stage()
    clone.load_state_dict(stage.state_dict(), strict=True)

    class _Trainer:
        max_steps = 10

    stage._trainer = _Trainer()  # configure_optimizers only reads max_steps
    optimizer = stage.configure_optimizers()["optimizer"]
    optimised = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not optimised & {id(p) for t in stage.teachers.values() for p in t.parameters()}
    trainable = {id(p) for p in stage.parameters() if p.requires_grad}
    assert optimised == trainable
    muon = [g for g in optimizer.param_groups if not g["use_fallback"]]
    assert muon and all(p.ndim == 2 for g in muon for p in g["params"])
    patch_embed = {id(p) for p in stage.encoder.patch_embed.parameters()}
    assert not patch_embed & {id(p) for g in muon for p in g["params"]}


def test_bad_configuration_errors_name_the_problem() -> None:
    with pytest.raises(KeyError, match=r"unknown teachers \['clip'\]"):
        _stage(teacher_weights={"clip": 1.0})


def test_a_batch_mask_from_the_data_workers_is_used_and_checked() -> None:
    stage = _stage(masking=None)
    images = torch.rand(2, 3, 64, 64)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :5] = True
    assert torch.equal(stage.batch_mask({"image": images, "mask": mask}, split="train", step=0), mask)
    with pytest.raises(
        ValueError, match=r"'mask' must be a bool tensor \[2, 16\] over the student's 4x4 grid"
    ):
        stage.batch_mask({"image": images, "mask": mask[:, :9]}, split="train", step=0)
    with pytest.raises(ValueError, match="masking=None, so every batch needs a 'mask' field"):
        stage.batch_mask({"image": images}, split="train", step=0)


def _losses(run_dir: Path) -> dict[int, float]:
    (metrics,) = run_dir.glob("logs/version_*/metrics.csv")
    rows = csv.DictReader(metrics.open())
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


RESUME_VARIANTS = {
    "plain": {},
    # micro-batch seeding, stochastic depth drawn from the reseeded RNG, PHI-S frozen mid-run
    "accumulation_droppath_phis": {"accumulate_grad_batches": 2, "drop_path": 0.3, "phis": 2},
    # block masks drawn in the data workers (DrawMask), two of them
    "data_masks": {"data_masks": True},
}


def data_masks(cfg: dict) -> None:
    """Move a tiny recipe's masking into the data workers: DrawMask after each crop, masking: null."""
    cfg["model"]["init_args"]["masking"] = None
    data = cfg["data"]["init_args"]
    draw = {
        "class_path": "glmkit.data.masking.DrawMask",
        "init_args": {
            "masking": {"class_path": "glmkit.data.masking.BlockMask", "init_args": {"ratio": 0.35}},
            "patch_size": 16,
        },
    }
    for key in ("transform", "val_transform"):
        data[key] = {"class_path": "glmkit.data.Compose", "init_args": {"transforms": [data[key], draw]}}


@pytest.mark.parametrize("variant", list(RESUME_VARIANTS))
def test_resumed_run_reproduces_uninterrupted_losses(variant: str, tmp_path: Path) -> None:
    from tests.stages.conftest import tiny_recipe, write_recipe

    options = dict(RESUME_VARIANTS[variant])
    accumulate = options.pop("accumulate_grad_batches", 1)

    def recipe(name: str, steps: int) -> tuple[Path, Path]:
        run_dir = tmp_path / name
        run_dir.mkdir()
        cfg = tiny_recipe(run_dir, max_steps=steps, accumulate_grad_batches=accumulate)
        model = cfg["model"]["init_args"]
        if "drop_path" in options:
            model["encoder"]["init_args"]["drop_path_rate"] = options["drop_path"]
        if "phis" in options:
            model["target_norm"] = phis_norm(options["phis"])
        if options.get("data_masks"):
            data_masks(cfg)
        return write_recipe(tmp_path / f"{name}.yaml", cfg), run_dir

    straight, straight_dir = recipe("straight", 6)
    assert main(["fit", "--config", str(straight)]) == 0
    first, first_dir = recipe("first_half", 3)
    assert main(["fit", "--config", str(first)]) == 0
    ckpt = first_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    resumed, resumed_dir = recipe("resumed", 6)
    assert main(["fit", "--config", str(resumed), "--ckpt_path", str(ckpt)]) == 0
    expected = _losses(straight_dir)
    got = {**_losses(first_dir), **_losses(resumed_dir)}
    assert sorted(expected) == sorted(got) == list(range(6))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-7), step
    # the exported encoder of both runs is the same model
    a = CogViT.from_pretrained(straight_dir / "encoder")
    b = CogViT.from_pretrained(resumed_dir / "encoder")
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6), name


def test_gradient_accumulation_draws_a_new_mask_per_micro_batch(tmp_path: Path) -> None:
    from tests.stages.conftest import tiny_recipe, write_recipe

    seen: list[torch.Tensor] = []
    original = MIMDistill.draw_mask

    def spy(self, *args, **kwargs):
        mask = original(self, *args, **kwargs)
        if kwargs.get("split") == "train":
            seen.append(mask.clone())
        return mask

    (tmp_path / "run").mkdir()
    cfg = tiny_recipe(tmp_path / "run", max_steps=2, accumulate_grad_batches=2)
    MIMDistill.draw_mask = spy  # type: ignore[method-assign]
    try:
        assert main(["fit", "--config", str(write_recipe(tmp_path / "r.yaml", cfg))]) == 0
    finally:
        MIMDistill.draw_mask = original  # type: ignore[method-assign]
    assert len(seen) == 4 and not torch.equal(seen[0], seen[1]) and not torch.equal(seen[2], seen[3])


def test_real_teacher_widths_with_phis_block_masks_and_bf16_mixed(tmp_path: Path) -> None:
    """The real recipe's shapes: teachers 1152 (SigLIP2 so400m) and 1024 (DINOv3 ViT-L) wide, PHI-S
    on a width without a Hadamard matrix, block masks, bf16-mixed autocast; targets stay float32."""
    from tests.stages.conftest import tiny_recipe, write_recipe

    (tmp_path / "run").mkdir()
    cfg = tiny_recipe(tmp_path / "run", max_steps=2, precision="bf16-mixed")
    model = cfg["model"]["init_args"]
    model["teachers"]["siglip2"]["init_args"] = {
        "config": {
            "hidden_size": 1152,
            "intermediate_size": 256,
            "num_hidden_layers": 1,
            "num_attention_heads": 16,
            "patch_size": 16,
            "num_patches": 16,
        },
        "image_size": 64,
        "dtype": "bfloat16",
    }
    model["teachers"]["dinov3"]["init_args"] = {
        "config": {
            "hidden_size": 1024,
            "intermediate_size": 256,
            "num_hidden_layers": 1,
            "num_attention_heads": 16,
            "patch_size": 16,
            "image_size": 64,
            "num_register_tokens": 4,
        },
        "image_size": 64,
        "dtype": "bfloat16",
    }
    model["masking"] = {"class_path": "glmkit.data.masking.BlockMask", "init_args": {"ratio": 0.35}}
    model["target_norm"] = phis_norm(1)
    assert main(["fit", "--config", str(write_recipe(tmp_path / "r.yaml", cfg))]) == 0
    losses = _losses(tmp_path / "run")
    assert sorted(losses) == [0, 1] and all(0 < v < 10 for v in losses.values())
    stage = MIMDistill.load_from_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    for norm in stage.target_norms.values():
        assert norm.ready and norm.sum_outer.dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        targets = stage.teacher_targets(torch.rand(2, 3, 64, 64), (4, 4))
    assert {t.dtype for t in targets.values()} == {torch.float32}
    assert targets["siglip2"].shape == (2, 16, 1152) and targets["dinov3"].shape == (2, 16, 1024)


def _single_process_replica(
    recipe: Path, steps: int, world: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """What ``world`` DDP ranks compute in ``steps`` steps, computed in one process.

    Each step runs every rank's batch (the loader slice of that rank) with that rank's mask, averages
    the gradients as DDP's all-reduce does, clips and steps the optimizer and schedule. Returns the
    encoder's weights before and after."""
    from glmkit.cli import GlmkitCLI

    cli = GlmkitCLI(args=["--config", str(recipe)], run=False)
    stage, data = cli.model, cli.datamodule
    initial = {k: v.detach().clone() for k, v in stage.encoder.state_dict().items()}
    stage._trainer = type("T", (), {"max_steps": steps})()  # configure_optimizers reads max_steps only
    config = stage.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    loaders = []
    for rank in range(world):
        data._replicas = lambda rank=rank: (world, rank)  # type: ignore[method-assign]
        loader = data.train_dataloader()
        loader.sampler.set_epoch(0)
        loaders.append(iter(loader))
    rank_now = {"rank": 0}
    type(stage).global_rank = property(lambda self: rank_now["rank"])  # type: ignore[assignment]
    try:
        for step in range(steps):
            optimizer.zero_grad()
            for rank, loader in enumerate(loaders):
                rank_now["rank"] = rank
                images = next(loader)["image"]
                # micro_step counts the batch being trained on (Lightning marks it ready first)
                grid = stage.student_grid(images)
                mask = stage.draw_mask(images.shape[0], grid, split="train", step=step + 1)
                (stage.distill(images, mask)["loss"] / world).backward()
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
            optimizer.step()
            scheduler.step()
    finally:
        del type(stage).global_rank
    return initial, {k: v.detach().clone() for k, v in stage.encoder.state_dict().items()}


@pytest.mark.distributed
def test_tiny_recipe_on_two_ddp_processes_equals_one_process_training(recipe_factory) -> None:
    """``glmkit fit`` with ``strategy=ddp, devices=2`` on gloo trains exactly what one process
    computes from the same two rank slices, masks and averaged gradients."""
    recipe, run_dir = recipe_factory("ddp", max_steps=3)
    # AdamW on every weight: Muon's Newton-Schulz (bf16) turns the all-reduce's float rounding into
    # visibly different updates, which would hide what this test checks (data, masks, averaging)
    cfg = yaml.safe_load(recipe.read_text())
    cfg["model"]["init_args"]["optimization"]["init_args"]["fallback_patterns"] = ["*"]
    recipe.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "glmkit.cli", "fit", "--config", str(recipe)]
    cmd += ["--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.num_nodes=1"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr
    assert sorted(_losses(run_dir)) == [0, 1, 2]
    ddp = CogViT.from_pretrained(run_dir / "encoder").state_dict()
    initial, single = _single_process_replica(recipe, steps=3, world=2)
    assert ddp.keys() == single.keys()
    for name, value in single.items():
        assert torch.allclose(ddp[name], value, atol=1e-6, rtol=1e-5), name
        assert not torch.equal(value, initial[name]), name  # every weight trained


def test_tiny_run_learns(recipe_factory) -> None:
    """Thirty steps on 64 px procedural images: the distillation loss falls clearly."""
    recipe, run_dir = recipe_factory("learn", max_steps=30, batch_size=8)
    assert main(["fit", "--config", str(recipe)]) == 0
    losses = _losses(run_dir)
    first, last = [losses[s] for s in range(5)], [losses[s] for s in range(25, 30)]
    assert sum(last) / 5 < 0.7 * sum(first) / 5, (first, last)


def test_validate_test_and_predict_subcommands(tmp_path: Path) -> None:
    from tests.stages.conftest import tiny_recipe, write_recipe

    cfg = tiny_recipe(tmp_path / "run", max_steps=2)
    (tmp_path / "run").mkdir()
    cfg["trainer"]["limit_val_batches"] = 1
    cfg["data"]["init_args"]["val_samples"] = 4
    recipe = write_recipe(tmp_path / "r.yaml", cfg)
    assert main(["fit", "--config", str(recipe)]) == 0
    ckpt = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert main(["validate", "--config", str(recipe), "--ckpt_path", ckpt]) == 0
    assert main(["test", "--config", str(recipe), "--ckpt_path", ckpt, "--trainer.limit_test_batches=1"]) == 0
    assert (
        main(["predict", "--config", str(recipe), "--ckpt_path", ckpt, "--trainer.limit_predict_batches=1"])
        == 0
    )
    logged = "".join(p.read_text() for p in (tmp_path / "run").glob("logs/version_*/metrics.csv"))
    assert "val/siglip2/cosine" in logged and "test/dinov3/loss" in logged
    # the checkpoint carries the recipe's components, so it rebuilds the stage on its own
    stage = MIMDistill.load_from_checkpoint(ckpt)
    assert set(stage.teachers) == {"siglip2", "dinov3"}
    out = stage.predict_step({"image": torch.rand(2, 3, 64, 64), "index": torch.tensor([0, 1])}, 0)
    assert out["patch_tokens"].shape == (2, 16, stage.encoder.embed_dim) and out["embedding"].shape == (2, 96)


class _DistillStep(torch.nn.Module):
    """Runs the stage's loss through ``forward``, the way Lightning's strategies call training_step."""

    def __init__(self, stage: MIMDistill) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.stage.distill(images, mask)["loss"]


def _fsdp_bf16_mixed_steps(rank: int, world: int) -> dict:
    from torch.distributed.fsdp import FullStateDictConfig, MixedPrecision, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    torch.manual_seed(0)
    stage = MIMDistill(
        encoder=CogViT.preset("tiny"),
        teachers={"dinov3": DINOv3Teacher.preset("tiny", image_size=64, dtype="bfloat16")},
        target_norm=functools.partial(PHISNorm, estimate_steps=2),
    )
    # what Lightning's FSDP strategy passes under precision="bf16-mixed": buffers cast to bf16 too
    bf16 = MixedPrecision(
        param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16, buffer_dtype=torch.bfloat16
    )
    wrapped = FSDP(
        _DistillStep(stage), device_id=torch.device("cpu"), use_orig_params=True, mixed_precision=bf16
    )
    generator = torch.Generator().manual_seed(rank)
    for step in range(3):
        images = torch.rand(2, 3, 64, 64, generator=generator)
        wrapped(images, stage.draw_mask(2, (4, 4), split="train", step=step)).backward()
    norm = stage.target_norms["dinov3"]
    config = FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
    with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, config):
        state = wrapped.state_dict()
    return {
        "keys": sorted(state),
        "phis_state": state.get("stage.target_norms.dinov3._extra_state"),
        "count": float(norm.count),
        "dtypes": (norm.sum_outer.dtype, norm.transform.dtype, stage.encoder.rope.inv_freq.dtype),
        "transform": norm.transform.clone(),
    }


@pytest.mark.distributed
def test_stage_shards_with_fsdp_bf16_mixed_on_two_cpu_processes(tmp_path: Path) -> None:
    """Lightning's FSDP needs CUDA, so this wraps the stage with torch FSDP on gloo directly, with the
    mixed precision Lightning's ``bf16-mixed`` uses (buffers cast to bf16): the bf16 teacher is not
    flattened with the fp32 student, PHI-S keeps float64 statistics summed over both ranks, RoPE
    keeps float32 frequencies, and the full state dict has PHI-S's statistics but no teacher."""
    first, second = run_on_ranks(_fsdp_bf16_mixed_steps, 2, tmp_path)
    assert first["dtypes"] == second["dtypes"] == (torch.float64, torch.float32, torch.float32)
    assert first["count"] == second["count"] == 2 * 2 * 2 * 16  # estimate steps x ranks x images x tokens
    assert torch.equal(first["transform"], second["transform"])
    # rank0_only: parameters and buffers are gathered on rank 0 alone (extra state passes through)
    assert not any(k.startswith("stage.encoder.") for k in second["keys"])
    keys = first["keys"]
    assert any(k.startswith("stage.encoder.") for k in keys) and "stage.mask_token" in keys
    assert not any("teacher" in k for k in keys)
    assert (
        first["phis_state"]["sum_outer"].dtype == torch.float64
        and int(first["phis_state"]["steps_seen"]) == 2
    )


def _fsdp_stage() -> MIMDistill:
    torch.manual_seed(0)
    return MIMDistill(
        encoder=CogViT.preset("tiny"),
        teachers={"dinov3": DINOv3Teacher.preset("tiny", image_size=64)},
        masking=RandomMask(0.35),
    )


def _rank_images(rank: int) -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(100 + rank))


def _fsdp_full_gradients(rank: int, world: int) -> dict[str, torch.Tensor]:
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    stage = _fsdp_stage()
    wrapped = FSDP(_DistillStep(stage), device_id=torch.device("cpu"), use_orig_params=True)
    mask = stage.draw_mask(2, (4, 4), split="train", step=0)
    wrapped(_rank_images(rank), mask).backward()
    with FSDP.summon_full_params(wrapped, with_grads=True):
        return {n: p.grad.clone() for n, p in stage.named_parameters() if p.grad is not None}


@pytest.mark.distributed
def test_fsdp_gradients_on_two_processes_equal_one_process_gradients(tmp_path: Path) -> None:
    """Torch FSDP (as Lightning wraps it, ``use_orig_params=True``) on 2 gloo ranks: the gathered
    gradients equal the mean of the two ranks' gradients computed in one unsharded process."""
    first, second = run_on_ranks(_fsdp_full_gradients, 2, tmp_path)
    stage = _fsdp_stage()
    mask = stage.draw_mask(2, (4, 4), split="train", step=0)
    for rank in range(2):
        (stage.distill(_rank_images(rank), mask)["loss"] / 2).backward()
    expected = {n: p.grad for n, p in stage.named_parameters() if p.grad is not None}
    assert first.keys() == expected.keys() and len(expected) > 10
    for name, grad in expected.items():
        assert torch.allclose(first[name], grad, atol=1e-6, rtol=1e-4), name
        assert torch.allclose(second[name], grad, atol=1e-6, rtol=1e-4), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (Lightning's FSDP strategy)")
def test_lightning_fsdp_bf16_mixed_with_phis_on_one_gpu(tmp_path: Path) -> None:
    """The real recipe's sharded path end to end: Lightning's FSDP with bf16-mixed casts buffers to
    bf16 and moves parameters and buffers to the GPU without ``_apply``. PHI-S statistics and RoPE
    frequencies must still reach the GPU in full precision, and the run must train and export."""
    from tests.stages.conftest import tiny_recipe, write_recipe

    (tmp_path / "run").mkdir()
    cfg = tiny_recipe(
        tmp_path / "run", max_steps=3, accelerator="gpu", devices=1, strategy="fsdp", precision="bf16-mixed"
    )
    cfg["model"]["init_args"]["target_norm"] = phis_norm(1)
    assert main(["fit", "--config", str(write_recipe(tmp_path / "r.yaml", cfg))]) == 0
    losses = _losses(tmp_path / "run")
    assert len(losses) == 3 and torch.isfinite(torch.tensor(list(losses.values()))).all()
    assert (tmp_path / "run" / "encoder" / "model.safetensors").is_file()


def test_phis_statistics_are_estimated_before_step_0_which_already_trains(tmp_path: Path) -> None:
    """With both teachers on PHI-S, the first step's loss is not zero (the running estimate gave
    weight 0 to both for ``estimate_steps - 1`` steps), and the statistics frozen by the pass before
    training equal a running estimate over the first training batches."""
    from glmkit.cli import GlmkitCLI
    from tests.stages.conftest import tiny_recipe, write_recipe

    (tmp_path / "run").mkdir()
    cfg = tiny_recipe(tmp_path / "run", max_steps=1)
    cfg["model"]["init_args"]["target_norm"] = phis_norm(3)
    recipe = write_recipe(tmp_path / "r.yaml", cfg)
    assert main(["fit", "--config", str(recipe)]) == 0
    losses = _losses(tmp_path / "run")
    assert list(losses) == [0] and losses[0] > 0.1
    trained = MIMDistill.load_from_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")

    cli = GlmkitCLI(args=["--config", str(recipe)], run=False)
    stage, loader = cli.model, cli.datamodule.train_dataloader()
    batches = iter(loader)
    running = {
        name: PHISNorm(norm.dim, estimate_steps=3).train() for name, norm in stage.target_norms.items()
    }
    for _ in range(3):
        images = next(batches)["image"]
        for name, features in stage.teacher_features(images, stage.student_grid(images)).items():
            running[name](features)  # the running estimate: training-mode forward folds the batch in
    for name, norm in trained.target_norms.items():
        assert norm.ready and running[name].ready
        torch.testing.assert_close(norm.mean, running[name].mean, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(norm.transform, running[name].transform, rtol=1e-5, atol=1e-5)
        assert int(norm.steps_seen) == 3


def test_estimating_target_statistics_needs_enough_batches() -> None:
    stage = _stage(target_norm=functools.partial(PHISNorm, estimate_steps=3))
    batches = [{"image": torch.rand(2, 3, 64, 64)} for _ in range(2)]
    with pytest.raises(RuntimeError, match=r"need more batches than the training loader gives \(2\)"):
        stage.estimate_target_statistics(batches)
    stage = _stage(target_norm=functools.partial(PHISNorm, estimate_steps=2))
    assert stage.estimate_target_statistics(batches * 2) == 2 and not stage.pending_statistics()


def _summary_stage(**kwargs) -> MIMDistill:
    headed = SigLIP2Teacher(config={**siglip2_tiny_config(), "vision_use_head": True}, image_size=64)
    torch.manual_seed(0)
    return MIMDistill(
        encoder=CogViT.preset("tiny"),
        teachers={"siglip2": headed, "dinov3": DINOv3Teacher.preset("tiny", image_size=64)},
        masking=RandomMask(0.35),
        **kwargs,
    )


def siglip2_tiny_config() -> dict:
    return dict(SigLIP2Teacher.PRESETS["tiny"]["config"])


def test_summary_distillation_adds_a_cosine_loss_per_teacher_on_its_own_prefix_token() -> None:
    """AM-RADIO's summary loss: the class token learns SigLIP2's pooled output and the first register
    DINOv3's class token, each through its own adaptor, weighted per teacher."""
    stage = _summary_stage(summary_weights={"siglip2": 0.5, "dinov3": 2.0}, summary_tokens={"dinov3": 1})
    assert stage.summary_tokens == {"siglip2": 0, "dinov3": 1}
    images = torch.rand(2, 3, 64, 64)
    mask = stage.draw_mask(2, (4, 4), split="train", step=0)
    metrics = stage.distill(images, mask)
    patch = metrics["siglip2/loss"] + metrics["dinov3/loss"]
    expected = patch + 0.5 * metrics["siglip2/summary_loss"] + 2.0 * metrics["dinov3/summary_loss"]
    torch.testing.assert_close(metrics["loss"], expected)
    # the summary loss against an independent computation: teacher summary vs adaptor(prefix token)
    prefix = stage.encoder(
        (images - stage.image_mean) / stage.image_std, mask=mask, mask_token=stage.mask_token
    ).prefix_tokens
    for name, index in (("siglip2", 0), ("dinov3", 1)):
        summary = stage.teachers[name](images).summary
        pred = stage.summary_adaptors[name](prefix[:, index])
        reference = (1 - F.cosine_similarity(pred, summary, dim=-1)).mean()
        torch.testing.assert_close(metrics[f"{name}/summary_loss"], reference)
    metrics["loss"].backward()
    assert stage.encoder.cls_token.grad.abs().sum() > 0 and stage.encoder.reg_token.grad[0, 0].abs().sum() > 0
    assert all(p.grad is not None for p in stage.summary_adaptors.parameters())


def test_summary_distillation_learns_the_summaries() -> None:
    stage = _summary_stage(summary_weights={"siglip2": 1.0, "dinov3": 1.0}, summary_tokens={"dinov3": 1})
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    mask = stage.draw_mask(4, (4, 4), split="train", step=0)
    optimizer = torch.optim.AdamW([p for p in stage.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for _ in range(15):
        metrics = stage.distill(images, mask)
        first = first or {k: float(v.detach()) for k, v in metrics.items()}
        optimizer.zero_grad()
        metrics["loss"].backward()
        optimizer.step()
    for name in ("siglip2", "dinov3"):
        assert float(metrics[f"{name}/summary_cosine"]) > first[f"{name}/summary_cosine"] + 0.1, name


def test_summary_distillation_errors_name_the_problem() -> None:
    with pytest.raises(KeyError, match=r"summary_weights names unknown teachers \['clip'\]"):
        _summary_stage(summary_weights={"clip": 1.0})
    with pytest.raises(
        ValueError, match=r"summary_tokens\['dinov3'\] = 3 is not one of the encoder's 3 prefix"
    ):
        _summary_stage(summary_weights={"dinov3": 1.0}, summary_tokens={"dinov3": 3})
    stage = _stage(summary_weights={"siglip2": 1.0})  # the tiny preset has no pooling head
    with pytest.raises(ValueError, match="teacher 'siglip2', but it returns no summary"):
        stage.distill(torch.rand(1, 3, 64, 64), torch.ones(1, 16, dtype=torch.bool))


def test_multi_resolution_steps_run_teachers_and_student_on_one_grid() -> None:
    """Each step's batch is resized to a drawn size (same on every rank, reproducible); teachers run
    at the size that gives the student's grid, so their targets are never resampled."""
    import warnings

    stage = _stage(resolutions=[64, 128])
    sizes = [stage.train_resolution(step) for step in range(20)]
    assert set(sizes) == {64, 128} and sizes == [stage.train_resolution(step) for step in range(20)]
    step = sizes.index(128)
    batch = stage.resize_batch(
        {"image": torch.rand(2, 3, 64, 64), "mask": torch.ones(2, 16, dtype=torch.bool)}, step
    )
    assert batch["image"].shape == (2, 3, 128, 128) and "mask" not in batch
    mask = stage.batch_mask(batch, split="train", step=step)
    assert mask.shape == (2, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no TargetResamplingWarning, no resampling at all
        outputs = stage.teacher_outputs(batch["image"], (8, 8))
        metrics = stage.distill(batch["image"], mask)
    assert {tuple(o.features.shape[1:2]) for o in outputs.values()} == {(64,)}
    assert torch.isfinite(metrics["loss"]) and metrics["loss"] > 0
    with pytest.raises(ValueError, match=r"resolutions \[100\] are not positive multiples"):
        _stage(resolutions=[100])
    with pytest.raises(ValueError, match="resolutions need masking"):
        _stage(resolutions=[64], masking=None)


def test_target_statistics_are_saved_and_loaded_instead_of_estimated(tmp_path: Path) -> None:
    batches = [{"image": torch.rand(2, 3, 64, 64)} for _ in range(2)]
    first = _stage(target_norm=functools.partial(PHISNorm, estimate_steps=2), target_statistics=str(tmp_path))
    first.prepare_target_statistics(lambda: iter(batches))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dinov3.pt", "siglip2.pt"]
    second = _stage(
        target_norm=functools.partial(PHISNorm, estimate_steps=2), target_statistics=str(tmp_path)
    )
    second.prepare_target_statistics(lambda: pytest.fail("loaded statistics need no batches"))
    for name, norm in second.target_norms.items():
        assert norm.ready
        torch.testing.assert_close(norm.transform, first.target_norms[name].transform)
        torch.testing.assert_close(norm.mean, first.target_norms[name].mean)
    wrong = PHISNorm(8)
    with pytest.raises(ValueError, match=r"are for width 96, this teacher's is 8"):
        wrong.load_statistics(tmp_path / "siglip2.pt")
