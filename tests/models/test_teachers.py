"""Frozen teachers: equality with transformers/timm run directly, freezing, state-dict exclusion."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glmkit.models.frozen import FrozenModels
from glmkit.models.teachers import (
    TEACHERS,
    DINOv3Teacher,
    SigLIP2Teacher,
    Teacher,
    TeacherOutput,
    TimmTeacher,
)

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

SIGLIP2_CFG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "patch_size": 16,
    "num_patches": 16,
}
SIGLIP_CFG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "patch_size": 16,
    "image_size": 64,
}
DINOV3_CFG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "patch_size": 16,
    "image_size": 64,
    "num_register_tokens": 4,
}
TIMM_KW = {"depth": 2, "embed_dim": 32, "num_heads": 2, "reg_tokens": 4, "num_classes": 0, "img_size": 64}


def _save(model: nn.Module, path) -> str:
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Tiny random checkpoints written the way the hub ones are."""
    from transformers import (
        DINOv3ViTConfig,
        DINOv3ViTModel,
        Siglip2Config,
        Siglip2Model,
        Siglip2VisionConfig,
        Siglip2VisionModel,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    root = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(1)
    full = Siglip2Model(
        Siglip2Config(
            vision_config=SIGLIP2_CFG,
            text_config={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "vocab_size": 64,
            },
        )
    )
    timm_model = timm.create_model("vit_tiny_patch16_224", **TIMM_KW)
    timm.models.save_for_hf(timm_model, str(root / "timm"), model_args=TIMM_KW, safe_serialization=True)
    torch.save(timm_model.state_dict(), root / "timm.pth")
    return {
        "siglip2": _save(Siglip2VisionModel(Siglip2VisionConfig(**SIGLIP2_CFG)), root / "siglip2"),
        "siglip2_full": _save(full, root / "siglip2_full"),
        "siglip": _save(SiglipVisionModel(SiglipVisionConfig(**SIGLIP_CFG)), root / "siglip"),
        "dinov3": _save(DINOv3ViTModel(DINOv3ViTConfig(**DINOV3_CFG)), root / "dinov3"),
        "timm_dir": str(root / "timm"),
        "timm_pth": str(root / "timm.pth"),
    }


def _images(b: int = 2, size: int = 96) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(0))


# --- equality with the reference implementations -------------------------------------------------


def test_siglip2_naflex_matches_processor_and_model(ckpts):
    from transformers import Siglip2ImageProcessor, Siglip2VisionModel

    teacher = SigLIP2Teacher(ckpts["siglip2"])
    assert teacher.naflex and teacher.image_size == 64 and teacher.grid_size == (4, 4)
    images = _images(size=96)  # square, so the processor resizes to 64 x 64 like the teacher
    out = teacher(images)
    assert isinstance(out, TeacherOutput) and out.features.shape == (2, 16, 32) and out.grid_size == (4, 4)

    ref = Siglip2VisionModel.from_pretrained(ckpts["siglip2"]).eval()
    # exactly the 16 patches: nothing padded
    inputs = Siglip2ImageProcessor(patch_size=16, max_num_patches=16)(
        images=list(images), do_rescale=False, return_tensors="pt"
    )
    assert inputs["spatial_shapes"].tolist() == [[4, 4], [4, 4]]
    with torch.no_grad():
        expected = ref(**inputs).last_hidden_state
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=1e-5)

    # the processor's padded layout gives the same valid tokens
    padded = Siglip2ImageProcessor(patch_size=16, max_num_patches=20)(
        images=list(images), do_rescale=False, return_tensors="pt"
    )
    assert padded["pixel_attention_mask"][0].tolist() == [1] * 16 + [0] * 4
    with torch.no_grad():
        expected = ref(**padded).last_hidden_state[:, :16]
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=1e-5)


def test_summaries_are_the_teachers_pooled_outputs(ckpts):
    """SigLIP2's summary is its MAP-head (pooled) output, DINOv3's its class token, a timm ViT's its
    pooled pre-logits; a SigLIP2 without its head has none."""
    from transformers import DINOv3ViTModel, Siglip2ImageProcessor, Siglip2VisionModel

    images = _images(size=64)
    siglip2 = SigLIP2Teacher(ckpts["siglip2"])(images)
    inputs = Siglip2ImageProcessor(patch_size=16, max_num_patches=16)(
        images=list(images), do_rescale=False, return_tensors="pt"
    )
    with torch.no_grad():
        expected = Siglip2VisionModel.from_pretrained(ckpts["siglip2"]).eval()(**inputs).pooler_output
    assert siglip2.summary.shape == (2, 32)
    torch.testing.assert_close(siglip2.summary, expected, atol=1e-5, rtol=1e-5)

    dinov3 = DINOv3Teacher(ckpts["dinov3"])(images)
    with torch.no_grad():
        tokens = (
            DINOv3ViTModel.from_pretrained(ckpts["dinov3"])
            .eval()((images - IMAGENET_MEAN) / IMAGENET_STD)
            .last_hidden_state
        )
    torch.testing.assert_close(dinov3.summary, tokens[:, 0], atol=1e-5, rtol=1e-5)

    teacher = TimmTeacher.preset("tiny", image_size=64, model_kwargs={**TIMM_KW, "class_token": True})
    out = teacher(images)
    with torch.no_grad():
        feats = teacher.model.forward_features((images - teacher.mean) / teacher.std)
    torch.testing.assert_close(out.summary, feats[:, 0], atol=1e-5, rtol=1e-5)  # global_pool: token

    assert SigLIP2Teacher.preset("tiny", image_size=64)(images).summary is None  # vision_use_head: False


@pytest.mark.parametrize("kind", ["siglip2", "siglip", "dinov3"])
def test_a_per_call_image_size_runs_as_a_teacher_built_for_that_size(ckpts, kind):
    """Multi-resolution distillation runs a teacher at the student's grid for each step."""
    cls = DINOv3Teacher if kind == "dinov3" else SigLIP2Teacher
    images = _images(size=80)
    out = cls(ckpts[kind])(images, image_size=96)
    expected = cls(ckpts[kind], image_size=96)(images)
    assert out.grid_size == expected.grid_size == (6, 6)
    torch.testing.assert_close(out.features, expected.features)
    with pytest.raises(ValueError, match="image_size=90 must be a positive multiple of the patch size 16"):
        cls(ckpts[kind])(images, image_size=90)


def test_siglip2_full_image_text_checkpoint_uses_its_vision_tower(ckpts):
    from transformers import Siglip2Model

    teacher = SigLIP2Teacher(ckpts["siglip2_full"])
    full = Siglip2Model.from_pretrained(ckpts["siglip2_full"])
    ours = teacher.model.state_dict()
    theirs = full.vision_model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("image_size", [64, 96])
def test_siglip_v1_matches_model(ckpts, image_size):
    from transformers import SiglipVisionModel

    teacher = SigLIP2Teacher(ckpts["siglip"], image_size=image_size)
    assert not teacher.naflex
    images = _images(size=80)
    out = teacher(images)
    side = image_size // 16
    assert out.features.shape == (2, side * side, 32) and out.grid_size == (side, side)

    ref = SiglipVisionModel.from_pretrained(ckpts["siglip"]).eval()
    pixels = F.interpolate(images, size=image_size, mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        expected = ref(pixels * 2 - 1, interpolate_pos_encoding=image_size != 64).last_hidden_state
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=1e-5)


def test_dinov3_matches_processor_and_model_and_strips_cls_and_registers(ckpts):
    from transformers import DINOv3ViTImageProcessor, DINOv3ViTModel

    teacher = DINOv3Teacher(ckpts["dinov3"])
    assert teacher.num_prefix_tokens == 1 + 4
    images = _images(size=96)
    out = teacher(images)
    assert out.features.shape == (2, 16, 32) and out.grid_size == (4, 4)

    ref = DINOv3ViTModel.from_pretrained(ckpts["dinov3"]).eval()
    inputs = DINOv3ViTImageProcessor(size={"height": 64, "width": 64})(
        images=list(images), do_rescale=False, return_tensors="pt"
    )
    with torch.no_grad():
        full = ref(**inputs)
    tokens = full.last_hidden_state
    assert tokens.shape[1] == 1 + 4 + 16
    torch.testing.assert_close(out.features, tokens[:, 5:], atol=1e-5, rtol=1e-5)
    # the removed tokens are CLS (the pooled output) and the registers, not patches
    torch.testing.assert_close(full.pooler_output, tokens[:, 0])
    assert not torch.allclose(out.features[:, :5], tokens[:, :5], atol=1e-3)


def test_layer_selection(ckpts):
    from transformers import DINOv3ViTModel, Siglip2VisionModel

    images = _images(size=64)
    dino = DINOv3ViTModel.from_pretrained(ckpts["dinov3"]).eval()
    with torch.no_grad():
        hidden = dino((images - IMAGENET_MEAN) / IMAGENET_STD, output_hidden_states=True).hidden_states
    raw = DINOv3Teacher(ckpts["dinov3"], layer=0, final_norm=False)(images).features
    torch.testing.assert_close(raw, hidden[1][:, 5:], atol=1e-5, rtol=1e-5)
    normed = DINOv3Teacher(ckpts["dinov3"], layer=-2)(images).features
    torch.testing.assert_close(normed, dino.norm(hidden[1])[:, 5:], atol=1e-5, rtol=1e-5)
    last_raw = DINOv3Teacher(ckpts["dinov3"], final_norm=False)(images).features
    torch.testing.assert_close(last_raw, hidden[2][:, 5:], atol=1e-5, rtol=1e-5)

    sig = Siglip2VisionModel.from_pretrained(ckpts["siglip2"]).eval()
    teacher = SigLIP2Teacher(ckpts["siglip2"], layer=0)
    patches = (images * 2 - 1).reshape(2, 3, 4, 16, 4, 16).permute(0, 2, 4, 3, 5, 1).reshape(2, 16, -1)
    with torch.no_grad():
        h = sig(
            patches,
            torch.ones(2, 16, dtype=torch.int32),
            torch.tensor([[4, 4]] * 2),
            output_hidden_states=True,
        )
    torch.testing.assert_close(
        teacher(images).features, sig.post_layernorm(h.hidden_states[1]), atol=1e-5, rtol=1e-5
    )

    with pytest.raises(ValueError, match=r"layer=2 is out of range .* valid: -2\.\.1"):
        DINOv3Teacher(ckpts["dinov3"], layer=2)


def _timm_reference(ckpts) -> nn.Module:
    return timm.create_model("local-dir:" + ckpts["timm_dir"], pretrained=True).eval()


def test_timm_local_dir_and_checkpoint_match_timm(ckpts):
    ref = _timm_reference(ckpts)
    images = _images(size=64)
    with torch.no_grad():
        tokens = ref.forward_features(images * 2 - 1)  # the saved config's mean/std are 0.5
    assert tokens.shape[1] == 5 + 16

    from_dir = TimmTeacher("local-dir:" + ckpts["timm_dir"])
    assert (from_dir.num_prefix_tokens, from_dir.image_size, from_dir.embed_dim) == (5, 64, 32)
    torch.testing.assert_close(from_dir(images).features, tokens[:, 5:], atol=1e-5, rtol=1e-5)

    kwargs = {k: v for k, v in TIMM_KW.items() if k != "img_size"}
    from_file = TimmTeacher(
        "vit_tiny_patch16_224", checkpoint=ckpts["timm_pth"], model_kwargs=kwargs, image_size=64
    )
    torch.testing.assert_close(from_file(images).features, tokens[:, 5:], atol=1e-5, rtol=1e-5)

    layered = TimmTeacher("local-dir:" + ckpts["timm_dir"], layer=0, final_norm=False)
    with torch.no_grad():
        (expected,) = ref.forward_intermediates(
            images * 2 - 1, indices=[0], norm=False, intermediates_only=True
        )
    torch.testing.assert_close(
        layered(images).features, expected.flatten(2).transpose(1, 2), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize(
    ("model_name", "num_prefix", "mean"),
    [
        ("vit_small_patch16_dinov3", 5, (0.485, 0.456, 0.406)),  # CLS + 4 registers, ImageNet stats
        ("vit_base_patch16_siglip_224", 0, (0.5, 0.5, 0.5)),  # SigLIP: no class token
        ("naflexvit_base_patch16_gap", 4, (0.5, 0.5, 0.5)),
    ],
)
def test_timm_architectures_strip_their_prefix_tokens(model_name, num_prefix, mean):
    kwargs = {"depth": 1, "embed_dim": 64, "num_heads": 2}
    teacher = TimmTeacher(model_name, pretrained=False, model_kwargs=kwargs, image_size=64)
    assert teacher.num_prefix_tokens == num_prefix
    torch.testing.assert_close(teacher.mean.flatten(), torch.tensor(mean))
    torch.manual_seed(0)  # the teacher's seed: the same random weights
    ref = timm.create_model(model_name, pretrained=False, num_classes=0, img_size=64, **kwargs).eval()
    images = _images(size=64)
    with torch.no_grad():
        tokens = ref.forward_features(teacher.preprocess(images))
    assert tokens.shape[1] == num_prefix + 16
    torch.testing.assert_close(teacher(images).features, tokens[:, num_prefix:], atol=1e-5, rtol=1e-5)


# --- frozen, eval, no grad, dtype ---------------------------------------------------------------


def test_dinov3_stays_in_eval_mode_so_rope_is_not_jittered():
    cfg = dict(DINOV3_CFG, pos_embed_shift=0.5, pos_embed_jitter=2.0)
    teacher = DINOv3Teacher(config=cfg)
    images = _images(size=64)
    before = teacher(images).features

    # the failure this guards against: the raw model in train mode is not deterministic
    raw = copy.deepcopy(teacher.model).train()
    pixels = teacher.preprocess(images)
    with torch.no_grad():
        assert not torch.allclose(raw(pixels).last_hidden_state, raw(pixels).last_hidden_state)

    parent = nn.ModuleDict({"teacher": teacher, "student": nn.Linear(2, 2)})
    parent.train()
    assert parent["student"].training
    assert not any(m.training for m in teacher.modules())
    torch.testing.assert_close(teacher(images).features, before)

    teacher.model.rope_embeddings.training = True  # set behind the module's back
    torch.testing.assert_close(teacher(images).features, before)
    assert not teacher.model.rope_embeddings.training


@pytest.mark.parametrize("preset_cls", [SigLIP2Teacher, DINOv3Teacher, TimmTeacher])
def test_frozen_no_grad_and_targets_usable_in_a_loss(preset_cls):
    teacher = preset_cls.preset("tiny")
    assert all(not p.requires_grad for p in teacher.parameters())
    images = _images(size=64).requires_grad_(True)
    out = teacher(images)
    assert not out.features.requires_grad and out.features.grad_fn is None
    assert not out.features.is_inference()  # usable as a target of a loss that backprops
    student = nn.Linear(teacher.embed_dim, teacher.embed_dim)
    F.mse_loss(student(out.features), out.features).backward()
    assert student.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("preset_cls", [SigLIP2Teacher, DINOv3Teacher, TimmTeacher])
def test_bfloat16_runs_and_returns_float32(preset_cls):
    fp32 = preset_cls.preset("tiny")
    bf16 = preset_cls.preset("tiny", dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    images = _images(size=224)
    a, b = fp32(images).features, bf16(images).features
    assert b.dtype == torch.float32 and b.shape == a.shape
    assert F.cosine_similarity(a, b, dim=-1).mean() > 0.98
    with pytest.raises(ValueError, match=r"unknown teacher dtype 'bf16'; valid: float32, bfloat16, float16"):
        preset_cls.preset("tiny", dtype="bf16")


def test_preprocessing_statistics_and_resize():
    grey = torch.full((1, 3, 32, 32), 0.5)
    sig = SigLIP2Teacher.preset("tiny", image_size=64)
    torch.testing.assert_close(sig.preprocess(grey), torch.zeros(1, 3, 64, 64))
    dino = DINOv3Teacher.preset("tiny", image_size=64)
    torch.testing.assert_close(
        dino.preprocess(grey), ((0.5 - IMAGENET_MEAN) / IMAGENET_STD).expand(1, 3, 64, 64)
    )
    tim = TimmTeacher.preset("tiny")  # vit_tiny's pretrained config: 0.5 / 0.5
    torch.testing.assert_close(tim.mean.flatten(), torch.tensor([0.5] * 3))
    custom = DINOv3Teacher.preset("tiny", mean=(0.0, 0.0, 0.0), std=(2.0, 2.0, 2.0))
    torch.testing.assert_close(custom.preprocess(grey)[0, :, 0, 0], torch.full((3,), 0.25))
    # an image already at the teacher's size is not resampled
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(sig.preprocess(x), x * 2 - 1)
    # casting the teacher leaves its statistics in float32 (bf16 would turn 0.485 into 0.484375)
    expected = dino.preprocess(grey)
    dino.to(torch.bfloat16)
    assert dino.mean.dtype == dino.std.dtype == torch.float32
    assert torch.equal(dino.preprocess(grey), expected)


@pytest.mark.parametrize(
    ("cls", "image_size", "grid"),
    [(SigLIP2Teacher, None, 14), (SigLIP2Teacher, 256, 16), (DINOv3Teacher, 96, 6), (TimmTeacher, 128, 8)],
)
def test_grid_sizes(cls, image_size, grid):
    teacher = cls.preset("tiny", image_size=image_size)
    out = teacher(torch.rand(1, 3, 100, 100))
    assert out.grid_size == teacher.grid_size == (grid, grid)
    assert out.features.shape == (1, grid * grid, teacher.embed_dim)


def test_random_teachers_are_seeded_and_leave_global_rng_alone():
    state = torch.get_rng_state()
    a, b = DINOv3Teacher.preset("tiny"), DINOv3Teacher.preset("tiny")
    assert torch.equal(torch.get_rng_state(), state)
    c = DINOv3Teacher.preset("tiny", seed=1)
    wa, wb, wc = (t.model.embeddings.patch_embeddings.weight for t in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


# --- errors ---------------------------------------------------------------------------------------


def test_errors_name_the_problem(ckpts, tmp_path):
    missing = str(tmp_path / "no" / "such_teacher")
    with pytest.raises(FileNotFoundError, match="such_teacher"):
        SigLIP2Teacher(missing)
    with pytest.raises(FileNotFoundError, match="such_teacher"):
        DINOv3Teacher(missing)
    with pytest.raises(FileNotFoundError, match="such_teacher"):
        TimmTeacher("local-dir:" + missing)
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        TimmTeacher("vit_tiny_patch16_224", checkpoint=str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="exactly one of model=.*got both"):
        DINOv3Teacher(ckpts["dinov3"], config=DINOV3_CFG)
    with pytest.raises(ValueError, match="exactly one of model=.*got neither"):
        SigLIP2Teacher()
    with pytest.raises(TypeError, match="model_name"):
        TimmTeacher()  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="unknown DINOv3Teacher preset 'tiyn'. Did you mean 'tiny'"):
        DINOv3Teacher.preset("tiyn")
    with pytest.raises(ValueError, match="'hiden_size' \\(did you mean 'hidden_size'\\?\\)"):
        DINOv3Teacher(config={"hiden_size": 32})
    with pytest.raises(ValueError, match="model_type 'siglip2_vision_model'; valid: dinov3_vit"):
        DINOv3Teacher(ckpts["siglip2"])
    with pytest.raises(ValueError, match="model_type 'dinov3_vit'; valid: siglip2"):
        SigLIP2Teacher(ckpts["dinov3"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OSError, match="empty"):
        SigLIP2Teacher(str(empty))
    with pytest.raises(ValueError, match="timm has no model 'vit_tiny_patch16_2244'. Did you mean"):
        TimmTeacher("vit_tiny_patch16_2244")
    with pytest.raises(ValueError, match="image_size=256 disagrees with model_kwargs img_size=224"):
        TimmTeacher.preset("tiny", image_size=256, model_kwargs={"img_size": 224})
    with pytest.raises(ValueError, match="image_size=100 must be a positive multiple of the patch size 16"):
        DINOv3Teacher.preset("tiny", image_size=100)
    teacher = DINOv3Teacher.preset("tiny")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\], got \(3, 64, 64\)"):
        teacher(torch.rand(3, 64, 64))
    with pytest.raises(TypeError, match="divide uint8 images by 255"):
        teacher(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_checkpoint_missing_used_weights_is_an_error(ckpts, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(
        (__import__("pathlib").Path(ckpts["dinov3"]) / "config.json").read_text()
    )
    weights = load_file(f"{ckpts['dinov3']}/model.safetensors")
    save_file({k: v for k, v in weights.items() if "layer.1." not in k}, str(broken / "model.safetensors"))
    with pytest.raises(ValueError, match=r"has no weights for .*layer\.1\."):
        DINOv3Teacher(str(broken))


# --- checkpoints without teacher weights ----------------------------------------------------------


class _Stage(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.student = nn.Linear(4, 4)
        self.teachers = FrozenModels(
            {"siglip2": SigLIP2Teacher.preset("tiny"), "dinov3": DINOv3Teacher.preset("tiny")}
        )


def test_teachers_held_outside_the_module_tree_stay_out_of_state_dict_and_training():
    stage = _Stage()
    state = stage.state_dict()
    assert sorted(state) == ["student.bias", "student.weight"]
    trainable = [n for n, p in stage.named_parameters() if p.requires_grad]
    assert trainable == ["student.weight", "student.bias"]
    fresh = _Stage()
    torch.nn.init.zeros_(fresh.student.weight)
    result = fresh.load_state_dict(state, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert torch.equal(fresh.student.weight, stage.student.weight)


def test_module_with_teacher_survives_copy_and_pickle():
    stage = _Stage()
    for clone in (copy.deepcopy(stage), pickle.loads(pickle.dumps(stage))):
        assert sorted(clone.state_dict()) == ["student.bias", "student.weight"]
        clone.load_state_dict(stage.state_dict(), strict=True)
        clone.train()
        assert not clone.teachers["dinov3"].training


# --- registry and recipes -------------------------------------------------------------------------


def test_registry_and_recipe_style_construction():
    from jsonargparse import ArgumentParser

    assert TEACHERS.get("siglip2") is SigLIP2Teacher
    assert TEACHERS.get("dinov3") is DINOv3Teacher
    assert TEACHERS.get("timm") is TimmTeacher
    parser = ArgumentParser()
    parser.add_subclass_arguments(Teacher, "teacher")
    cfg = parser.parse_object(
        {
            "teacher": {
                "class_path": "glmkit.models.teachers.DINOv3Teacher",
                "init_args": {"config": DINOV3_CFG, "image_size": 96, "dtype": "bfloat16"},
            }
        }
    )
    teacher = parser.instantiate_classes(cfg).teacher
    assert isinstance(teacher, DINOv3Teacher)
    assert (teacher.embed_dim, teacher.image_size, teacher.grid_size) == (32, 96, (6, 6))


def test_lightning_checkpoint_without_teacher_weights_resumes_strictly(tmp_path):
    lightning = pytest.importorskip("lightning")

    class Stage(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.student = nn.Linear(64, 64)
            self.teachers = FrozenModels({"dinov3": DINOv3Teacher.preset("tiny", image_size=64)})

        def training_step(self, batch, batch_idx):
            teacher = self.teachers["dinov3"]
            assert self.student.training and not teacher.training  # after Lightning's model.train()
            with self.teachers.on(batch[0].device):
                target = teacher(batch[0]).features
            return F.mse_loss(self.student(target), target)

        def configure_optimizers(self):
            return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=1e-3)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(4, 3, 64, 64)), batch_size=2)
    options = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    options |= {"enable_model_summary": False, "accelerator": "cpu", "devices": 1}
    stage = Stage()
    trainer = lightning.Trainer(max_steps=2, **options)
    trainer.fit(stage, data)
    path = tmp_path / "stage1.ckpt"
    trainer.save_checkpoint(path)
    assert list(torch.load(path, weights_only=False)["state_dict"]) == ["student.weight", "student.bias"]

    resumed = Stage()
    assert resumed.strict_loading
    trainer = lightning.Trainer(max_steps=3, **options)
    trainer.fit(resumed, data, ckpt_path=path)
    assert trainer.global_step == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_teacher_moves_to_cuda_and_runs_bfloat16():
    images = _images(size=224)
    expected = DINOv3Teacher.preset("tiny")(images).features
    teacher = DINOv3Teacher.preset("tiny", dtype="bfloat16").cuda()
    out = teacher(images.cuda())
    assert out.features.device.type == "cuda" and out.features.dtype == torch.float32
    assert F.cosine_similarity(out.features.cpu(), expected, dim=-1).mean() > 0.98
