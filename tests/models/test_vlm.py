"""VisionLanguageModel: assembly from CogViT + projector + any causal LM, placement of visual embeddings,
the MMTP adapter interface (glmkit's VLM and transformers' Glm4v / Qwen2.5-VL), LoRA and freezing,
save/load in the transformers layout, and answering through eval's LocalVLMAdapter and the agent's
ChatModel. Everything is tiny, random and built here; nothing is downloaded."""

from __future__ import annotations

import copy
import logging
from contextlib import contextmanager

import pytest
import torch
from PIL import Image

from glmkit.models.encoders import CogViT
from glmkit.models.vlm import (
    ENCODER_DIR,
    HFVisionLanguageAdapter,
    LoRA,
    MultimodalCausalLM,
    VisionLanguageChat,
    VisionLanguageModel,
    as_multimodal_lm,
)
from glmkit.models.vlm_processor import IMAGE_TOKEN, VLMProcessor
from tests.models.test_processor import moving_square_video, tiny_processor

LLM_KINDS = ("llama", "qwen2", "glm4")


def llm_config(kind: str, vocab_size: int, **overrides: object) -> dict:
    """A tiny random causal LM config of hidden size 32 (built by AutoConfig.for_model), with
    ``overrides`` on top (e.g. ``max_position_embeddings`` for long episodes)."""
    config = {
        "model_type": kind,
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        "pad_token_id": 0,
        "bos_token_id": None,
        "eos_token_id": 0,
    }
    if kind == "glm4":
        config["head_dim"] = 8
    return {**config, **overrides}


def tiny_encoder(seed: int = 0) -> CogViT:
    torch.manual_seed(seed)
    return CogViT.preset("tiny", patch_size=8, depth=1)


def make_vlm(
    processor: VLMProcessor, kind: str = "llama", seed: int = 0, llm: dict | None = None, **kwargs
) -> VisionLanguageModel:
    """The tiny VLM for ``processor``'s tokens (``llm``: overrides of :func:`llm_config`)."""
    kw = processor.model_kwargs()
    torch.manual_seed(seed)
    model = VisionLanguageModel(
        tiny_encoder(seed), llm_config(kind, kw["vocab_size"], **(llm or {})), kw["image_token_id"], **kwargs
    )
    return model.eval()


def images() -> list[Image.Image]:
    """Images of different aspect ratios (different NaFlex grids)."""
    wide = Image.new("RGB", (64, 32), (200, 30, 30))
    tall = Image.new("RGB", (20, 50), (30, 30, 200))
    square = Image.linear_gradient("L").resize((40, 40)).convert("RGB")
    return [wide, tall, square]


def mixed_batch(processor: VLMProcessor):
    """An image sample, a text-only sample and a sample with two images and a video."""
    wide, tall, square = images()
    texts = [
        f"<|begin_of_image|>{IMAGE_TOKEN}<|end_of_image|>What is in the image?",
        "A text-only sample in the same batch.",
        f"Two: {IMAGE_TOKEN} {IMAGE_TOKEN} and <|begin_of_video|><|video|><|end_of_video|> Where?",
    ]
    return processor(texts, images=[[wide], [], [tall, square]], videos=[[], [], [moving_square_video()]])


@pytest.fixture(scope="module")
def processor() -> VLMProcessor:
    return tiny_processor()


@pytest.fixture(scope="module")
def vlm(processor) -> VisionLanguageModel:
    return make_vlm(processor)


# ------------------------------------------------------------------------------ assembly and forward
@pytest.mark.parametrize("kind", LLM_KINDS)
def test_forward_on_a_mixed_batch_with_each_llm(processor, kind):
    model = make_vlm(processor, kind).train()
    batch = mixed_batch(processor)
    labels = batch["input_ids"].clone()
    out = model(**batch, labels=labels)
    assert out.logits.shape == (*batch["input_ids"].shape, len(processor.tokenizer))
    # the loss ignores targets at image positions and padding: recompute it by hand
    ignore = (labels == processor.image_token_id) | (batch["attention_mask"] == 0)
    targets = labels.masked_fill(ignore, -100)[:, 1:]
    expected = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, out.logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, expected, rtol=1e-4, atol=1e-4)
    out.loss.backward()
    for name in ("encoder", "projector", "language_model"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


@pytest.mark.parametrize("row_len", [4096, 20])
def test_visual_embeddings_land_at_the_placeholders_item_by_item(processor, vlm, row_len):
    """Packing frames into encoder rows changes nothing: each frame is encoded alone, merged on its grid."""
    vlm.encoder_row_len = row_len
    batch = mixed_batch(processor)
    with torch.no_grad():
        inputs = vlm.llm_inputs(**batch)
        expected, start = [], 0
        for t, h, w in batch["grid_thw"].tolist():
            frames = []
            for _ in range(t):
                n = h * w
                enc = vlm.encoder(
                    patches=batch["patches"][None, start : start + n],
                    coords=batch["coords"][None, start : start + n],
                )
                frames.append(enc.patch_tokens[0])
                start += n
            expected.append(vlm.projector(torch.cat(frames), torch.tensor([[t, h, w]])))
    vlm.encoder_row_len = 4096
    placed = inputs.inputs_embeds[inputs.image_mask]
    torch.testing.assert_close(placed, torch.cat(expected), rtol=1e-4, atol=1e-5)
    # text positions keep their token embeddings
    text = vlm.language_model.get_input_embeddings()(batch["input_ids"])
    torch.testing.assert_close(inputs.inputs_embeds[~inputs.image_mask], text[~inputs.image_mask])
    assert (
        inputs.image_mask.sum(1).tolist() == (batch["input_ids"] == processor.image_token_id).sum(1).tolist()
    )


def test_a_sample_alone_equals_the_sample_in_the_batch(processor, vlm):
    batch = mixed_batch(processor)
    wide = images()[0]
    alone = processor(
        [f"<|begin_of_image|>{IMAGE_TOKEN}<|end_of_image|>What is in the image?"], images=[wide]
    )
    with torch.no_grad():
        together = vlm(**batch).logits[0, : alone["input_ids"].shape[1]]
        single = vlm(**alone).logits[0]
    torch.testing.assert_close(together, single, rtol=1e-4, atol=1e-4)


def test_patch_order_within_a_frame_does_not_matter(processor, vlm):
    batch = mixed_batch(processor)
    n = int(batch["grid_thw"][0, 1] * batch["grid_thw"][0, 2])
    perm = torch.cat(
        [
            torch.randperm(n, generator=torch.Generator().manual_seed(0)),
            torch.arange(n, len(batch["patches"])),
        ]
    )
    shuffled = {**batch, "patches": batch["patches"][perm], "coords": batch["coords"][perm]}
    with torch.no_grad():
        torch.testing.assert_close(vlm(**shuffled).logits, vlm(**batch).logits, rtol=1e-4, atol=1e-5)
    bad = dict(batch)
    bad["coords"] = batch["coords"].clone()
    bad["coords"][1] = bad["coords"][0]  # one (y, x) twice in item 0's frame
    with pytest.raises(ValueError, match="visual item 0: the coords of its frame 0"):
        vlm(**bad)


def test_placeholder_mismatch_is_an_error_naming_the_sample(processor, vlm):
    batch = mixed_batch(processor)
    ids = batch["input_ids"].clone()
    third = (ids[2] == processor.image_token_id).nonzero()[0, 0]
    ids[2, third] = processor.tokenizer.convert_tokens_to_ids("<|user|>")  # one placeholder fewer
    broken = {**batch, "input_ids": ids}
    with pytest.raises(ValueError, match=r"sample 2 \('clip-7'\): \d+ <\|image\|> placeholders but its 3"):
        vlm(**broken, sample_ids=["a", "b", "clip-7"])
    without_index = {k: v for k, v in broken.items() if k != "visual_batch_index"}
    with pytest.raises(ValueError, match="sample 2: its"):
        vlm(**without_index)
    text_only = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with pytest.raises(ValueError, match="sample 0 has .* placeholders but the batch has no images"):
        vlm(**text_only)


def test_encoder_from_an_export_directory_a_preset_or_a_module(processor, tmp_path):
    encoder = tiny_encoder()
    encoder.save_pretrained(tmp_path / "enc")
    kw = processor.model_kwargs()
    from_dir = VisionLanguageModel(
        str(tmp_path / "enc"), llm_config("llama", kw["vocab_size"]), kw["image_token_id"]
    )
    torch.testing.assert_close(from_dir.encoder.state_dict(), encoder.state_dict())
    from_preset = VisionLanguageModel("tiny", llm_config("llama", kw["vocab_size"]), kw["image_token_id"])
    assert isinstance(from_preset.encoder, CogViT) and from_preset.encoder.embed_dim == 96
    with pytest.raises(ValueError, match="neither an export directory, a CogViT preset"):
        VisionLanguageModel("tinyy", llm_config("llama", kw["vocab_size"]), kw["image_token_id"])


def test_llm_from_a_directory_grows_its_vocabulary(processor, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    base = llm_config("qwen2", 300)  # smaller than the tokenizer: the VLM grows it
    model_type = base.pop("model_type")
    AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **base)).save_pretrained(
        tmp_path / "llm"
    )
    vlm = VisionLanguageModel(tiny_encoder(), str(tmp_path / "llm"), **processor.model_kwargs())
    assert vlm.language_model.get_input_embeddings().num_embeddings == len(processor.tokenizer)
    with pytest.raises(ValueError, match="image_token_id=.* is outside the LLM's 300 embeddings"):
        VisionLanguageModel(tiny_encoder(), str(tmp_path / "llm"), image_token_id=processor.image_token_id)


# ------------------------------------------------------------------------------ the MMTP adapter interface
def test_glmkit_vlm_adapter_inputs_reproduce_its_logits(processor, vlm):
    adapter = as_multimodal_lm(vlm)
    assert adapter is vlm and isinstance(vlm, MultimodalCausalLM)
    batch = mixed_batch(processor)
    with torch.no_grad():
        inputs = adapter.llm_inputs(**batch)
        fed_back = adapter.causal_lm(**inputs.llm_kwargs()).logits
        torch.testing.assert_close(fed_back, vlm(**batch).logits)
        # the decoder layers and head are the LLM's: running them by hand gives the same logits
        hidden = adapter.causal_lm(**inputs.llm_kwargs(), output_hidden_states=True).hidden_states[-1]
        torch.testing.assert_close(adapter.lm_head(hidden), fed_back)
    assert len(adapter.decoder_layers) == 1 and adapter.lm_head is vlm.language_model.lm_head
    assert inputs.position_ids.shape == batch["input_ids"].shape


def tiny_glm4v(vocab_size: int = 64):
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration

    config = Glm4vConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 1, 1],
                "partial_rotary_factor": 0.5,
            },
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "num_heads": 2,
            "intermediate_size": 64,
            "patch_size": 4,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
            "out_hidden_size": 64,
            "image_size": 16,
        },
        image_token_id=60,
        video_token_id=61,
        image_start_token_id=58,
        image_end_token_id=59,
        video_start_token_id=56,
        video_end_token_id=57,
    )
    torch.manual_seed(0)
    return Glm4vForConditionalGeneration(config).eval()


GLM_IMAGE = [1, 2, 58, *[60] * 6, 59, 3, 4]  # one image of 4x6 patches: 6 merged tokens
GLM_VIDEO = [1, 56, 58, *[60] * 4, 59, 5, 58, *[60] * 4, 59, 6, 57, 4]  # 2 temporal patches of 4x4


def test_glm4v_adapter_reproduces_the_hf_logits(processor):
    model = tiny_glm4v()
    adapter = HFVisionLanguageAdapter(model)
    assert isinstance(adapter, MultimodalCausalLM) and isinstance(
        as_multimodal_lm(model), HFVisionLanguageAdapter
    )
    torch.manual_seed(1)
    image = {"pixel_values": torch.randn(24, 3 * 2 * 4 * 4), "image_grid_thw": torch.tensor([[1, 4, 6]])}
    video = {
        "pixel_values_videos": torch.randn(32, 3 * 2 * 4 * 4),
        "video_grid_thw": torch.tensor([[2, 4, 4]]),
    }
    for ids, media in ((GLM_IMAGE, image), (GLM_VIDEO, video)):
        # a left-padded copy in the same batch
        input_ids = torch.tensor([ids, [0, 0, *ids[:-2]]])
        mask = torch.ones_like(input_ids)
        mask[1, :2] = 0
        kwargs = {**media}
        if "pixel_values" in media:  # two images: the same one twice
            kwargs = {
                "pixel_values": media["pixel_values"].repeat(2, 1),
                "image_grid_thw": media["image_grid_thw"].repeat(2, 1),
            }
        else:
            kwargs = {
                "pixel_values_videos": media["pixel_values_videos"].repeat(2, 1),
                "video_grid_thw": media["video_grid_thw"].repeat(2, 1),
            }
        with torch.no_grad():
            model.model.rope_deltas = None
            reference = model(
                input_ids=input_ids,
                attention_mask=mask,
                mm_token_type_ids=adapter.token_types(input_ids),
                **kwargs,
            ).logits
            inputs = adapter.llm_inputs(input_ids, mask, **kwargs)
            model.model.rope_deltas = None
            fed_back = adapter.causal_lm(**inputs.llm_kwargs()).logits
        assert inputs.position_ids.shape == (3, *input_ids.shape)  # M-RoPE (t, h, w)
        assert inputs.image_mask.sum().item() == (input_ids == 60).sum().item()
        torch.testing.assert_close(fed_back[mask.bool()], reference[mask.bool()], rtol=1e-4, atol=1e-5)
    assert len(adapter.decoder_layers) == 1 and adapter.lm_head is model.lm_head


def test_glm4v_adapter_takes_images_and_videos_in_one_batch():
    """transformers' Glm4v cannot tell image and video placeholders apart (one token); the adapter can."""
    model = tiny_glm4v()
    adapter = HFVisionLanguageAdapter(model)
    torch.manual_seed(1)
    pixel_values, pixel_values_videos = torch.randn(24, 96), torch.randn(32, 96)
    ids = torch.tensor([GLM_IMAGE + GLM_VIDEO])
    image_grid, video_grid = torch.tensor([[1, 4, 6]]), torch.tensor([[2, 4, 4]])
    with torch.no_grad():
        inputs = adapter.llm_inputs(ids, None, pixel_values, image_grid, pixel_values_videos, video_grid)
        image_features = torch.cat(model.model.get_image_features(pixel_values, image_grid).pooler_output)
        video_features = torch.cat(
            model.model.get_video_features(pixel_values_videos, video_grid).pooler_output
        )
    types = adapter.token_types(ids)
    torch.testing.assert_close(inputs.inputs_embeds[types == 1], image_features)
    torch.testing.assert_close(inputs.inputs_embeds[types == 2], video_features)
    with pytest.raises(ValueError, match="6 image placeholders .* give 12 visual tokens"):
        adapter.llm_inputs(ids, None, pixel_values.repeat(2, 1), image_grid.repeat(2, 1))


def test_qwen2_5_vl_adapter_reproduces_the_hf_logits():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 64,
            "hidden_size": 64,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": 0,
            "eos_token_id": 1,
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "num_heads": 2,
            "intermediate_size": 64,
            "patch_size": 4,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
            "out_hidden_size": 64,
            "window_size": 8,
            "fullatt_block_indexes": [0],
        },
        image_token_id=60,
        video_token_id=61,
        vision_start_token_id=58,
        vision_end_token_id=59,
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    adapter = HFVisionLanguageAdapter(model)
    ids = torch.tensor([[1, 2, 58, *[60] * 6, 59, 3, 4]])
    pixel_values, grid = torch.randn(24, 96), torch.tensor([[1, 4, 6]])
    with torch.no_grad():
        reference = model(
            input_ids=ids,
            pixel_values=pixel_values,
            image_grid_thw=grid,
            mm_token_type_ids=adapter.token_types(ids),
        ).logits
        inputs = adapter.llm_inputs(ids, None, pixel_values, grid)
        model.model.rope_deltas = None
        torch.testing.assert_close(adapter.causal_lm(**inputs.llm_kwargs()).logits, reference)
    assert inputs.position_ids.shape == (3, 1, ids.shape[1])


def test_mtp_heads_attach_to_the_adapter_inputs(processor, vlm):
    """The MTP model (models/mtp) reads LLMInputs; its main logits are the VLM's."""
    mtp = pytest.importorskip("glmkit.models.mtp")
    batch = mixed_batch(processor)
    with torch.no_grad():
        inputs = vlm.llm_inputs(**batch)
        model = mtp.MTPCausalLM(vlm.causal_lm, depths=1)
        out = model(
            inputs_embeds=inputs.inputs_embeds,
            image_mask=inputs.image_mask,
            attention_mask=inputs.attention_mask,
            position_ids=inputs.position_ids,
        )
        torch.testing.assert_close(out.logits, vlm(**batch).logits)
    assert len(out.mtp_logits) == 1 and out.mtp_logits[0].shape == out.logits.shape


# ------------------------------------------------------------------------------ LoRA and freezing
def test_llm_lora_trains_only_adapters_and_starts_as_the_base(processor):
    base = make_vlm(processor)
    lora = make_vlm(processor, llm_lora=LoRA(r=4, alpha=8))
    lora.load_state_dict(base.state_dict(), strict=False)  # same base weights (LoRA keys aside)
    batch = mixed_batch(processor)
    with torch.no_grad():
        torch.testing.assert_close(lora(**batch).logits, base(**batch).logits)
    trainable = {n for n, p in lora.language_model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert all(p.requires_grad for p in lora.encoder.parameters())
    assert all(p.requires_grad for p in lora.projector.parameters())
    assert "lm_head.weight" not in {n.replace(".base_layer", "") for n in trainable}


def test_encoder_lora_wraps_the_block_linears_only(processor):
    model = make_vlm(processor, encoder_lora={"r": 2, "alpha": 4})
    wrapped = {n for n, m in model.encoder.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == {"blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2"}
    enc_trainable = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    assert enc_trainable and all(".lora_" in n for n in enc_trainable)
    assert all(p.requires_grad for p in model.language_model.parameters())
    with pytest.raises(TypeError, match="valid keys: r, alpha, dropout, target_modules"):
        make_vlm(processor, encoder_lora={"rank": 2})


def test_freeze_and_unfreeze_patterns(processor):
    model = make_vlm(
        processor,
        llm_lora=LoRA(r=2),
        freeze=["encoder.blocks.0.*", "projector.downsample"],
        unfreeze=["language_model.lm_head"],
    )
    params = dict(model.named_parameters())
    assert not any(p.requires_grad for n, p in params.items() if n.startswith("encoder.blocks.0."))
    assert params["encoder.patch_embed.proj.weight"].requires_grad
    assert (
        not params["projector.downsample.weight"].requires_grad
        and params["projector.proj.weight"].requires_grad
    )
    assert params["language_model.lm_head.weight"].requires_grad
    summary = model.trainable_summary()
    assert 0 < summary["encoder"][0] < summary["encoder"][1]
    with pytest.raises(
        ValueError, match="freeze pattern 'encoderr' matches no parameter; names start with encoder"
    ):
        make_vlm(processor, freeze=["encoderr"])
    with pytest.raises(ValueError, match="encoder has LoRA adapters but freeze"):
        make_vlm(processor, encoder_lora=LoRA(r=2), freeze=["encoder"])


# ------------------------------------------------------------------------------ save and load
def perturb_lora(model: VisionLanguageModel) -> None:
    """Give the LoRA B matrices values, so the adapters change the outputs."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def text_logits(llm, ids):
    with torch.no_grad():
        return llm(input_ids=ids).logits


@pytest.mark.parametrize("lora", ["none", "merged", "adapters"])
def test_save_and_load_round_trip(processor, tmp_path, lora):
    from transformers import AutoModelForCausalLM

    kwargs = {} if lora == "none" else {"llm_lora": LoRA(r=2), "encoder_lora": LoRA(r=2)}
    model = make_vlm(processor, "qwen2", **kwargs)
    perturb_lora(model)
    batch = mixed_batch(processor)
    directory = model.save_pretrained(tmp_path / "vlm", merge_lora=lora != "adapters", processor=processor)
    assert (directory / "config.json").is_file() and (directory / ENCODER_DIR / "config.json").is_file()
    assert (directory / "lora_adapters.safetensors").is_file() == (lora == "adapters")
    loaded = VisionLanguageModel.from_pretrained(directory).eval()
    tol = {"rtol": 1e-3, "atol": 1e-3} if lora == "merged" else {"rtol": 0.0, "atol": 0.0}  # merging rounds
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, **tol)
    assert loaded.llm_lora == model.llm_lora and loaded.freeze_patterns == model.freeze_patterns
    # the LLM part loads in plain transformers; with merged LoRA it is the fine-tuned LLM
    plain = AutoModelForCausalLM.from_pretrained(str(directory)).eval()
    ids = batch["input_ids"][1:2]
    if lora != "adapters":
        torch.testing.assert_close(
            text_logits(plain, ids), text_logits(model.language_model, ids), rtol=1e-4, atol=1e-5
        )
    else:
        assert not any("lora" in n for n, _ in plain.named_parameters())
    # the encoder export and the processor load on their own
    assert isinstance(CogViT.from_pretrained(directory / ENCODER_DIR), CogViT)
    assert VLMProcessor.from_pretrained(directory).model_kwargs() == processor.model_kwargs()


@contextmanager
def transformers_log():
    """The messages transformers logs while the block runs (its loggers do not propagate to caplog)."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def add_tensors(directory, tensors: dict[str, torch.Tensor]) -> None:
    """Write ``tensors`` into the checkpoint's ``model.safetensors`` beside its own."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = str(directory / "model.safetensors")
    with safe_open(path, framework="pt") as handle:
        metadata = handle.metadata()
    save_file({**load_file(path), **tensors}, path, metadata=metadata)


def test_an_mtp_export_loads_as_a_plain_vlm_without_unexpected_mtp_keys(processor, tmp_path):
    """The MTP layers of an MMTP export (what ``VLMPretrain.export`` writes) are expected to go unused."""
    from glmkit.models.mtp import MTPCausalLM

    vlm = make_vlm(processor)  # 1 decoder layer: the MTP layer is model.layers.1
    directory = vlm.save_pretrained(tmp_path / "vlm", processor=processor, save_language_model=False)
    MTPCausalLM(vlm.causal_lm, depths=1).save_pretrained(directory)
    with transformers_log() as messages:
        loaded = VisionLanguageModel.from_pretrained(directory)
    assert not any("UNEXPECTED" in message for message in messages), messages
    state, other = vlm.state_dict(), loaded.state_dict()
    assert state.keys() == other.keys()
    assert all(torch.equal(state[key], other[key]) for key in state)

    # a key of no MTP layer (layer 2 is past the one MTP layer) is still reported
    add_tensors(
        directory, {"model.layers.2.foreign.weight": torch.zeros(2), "model.foreign.bias": torch.zeros(2)}
    )
    with transformers_log() as messages:
        VisionLanguageModel.from_pretrained(directory)
    report = "\n".join(message for message in messages if "LOAD REPORT" in message)
    assert "model.layers.2.foreign.weight" in report and "model.foreign.bias" in report
    assert "model.layers.1." not in report and "eh_proj" not in report


def test_saving_merged_lora_leaves_the_model_unchanged(processor, tmp_path):
    model = make_vlm(processor, llm_lora=LoRA(r=2))
    perturb_lora(model)
    before = copy.deepcopy(model.state_dict())
    model.save_pretrained(tmp_path / "vlm")
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------------------------ generation and chat
def test_generate_from_a_processor_batch(processor, vlm):
    batch = processor(
        [f"{IMAGE_TOKEN} What?", "Only text, a bit longer."], images=[images()[0]], padding_side="left"
    )
    out = vlm.generate(
        **batch,
        max_new_tokens=3,
        min_new_tokens=3,
        do_sample=False,
        pad_token_id=processor.tokenizer.pad_token_id,
    )
    assert out.shape == (2, batch["input_ids"].shape[1] + 3)
    assert torch.equal(out[:, : batch["input_ids"].shape[1]], batch["input_ids"])


def test_answers_through_evals_local_adapter(processor, vlm, tmp_path):
    from glmkit.eval.adapters import LocalVLMAdapter, Request
    from glmkit.scoring import Sample

    path = tmp_path / "red.png"
    images()[0].save(path)
    sample = Sample(id="s0", question="What colour is it?", answer="red", images=[path])
    adapter = LocalVLMAdapter(VisionLanguageChat(vlm, processor, max_new_tokens=4))
    prediction = adapter.predict(Request(sample, "What colour is it? Answer in one word."))
    assert isinstance(prediction.text, str)


def test_drives_the_agent_loop_as_a_chat_model(processor, vlm):
    from glmkit.agent.loop import AgentLoop
    from glmkit.agent.models import ChatModel
    from tests.agent.toy_tools import EchoTool

    chat = VisionLanguageChat(vlm, processor, max_new_tokens=4)
    assert isinstance(chat, ChatModel) and chat.tool_format.name == "glm45"
    result = AgentLoop(chat, [EchoTool()], max_turns=2).run("What is in the image?", [images()[1]])
    assert result.stop_reason != "model_error", result.error
    assert result.usage["completion_tokens"] >= 1
    # a history with a native tool call and a tool result holding an image renders and runs
    history = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image_id": "img_0", "image": images()[0]},
                {"type": "text", "text": "Crop it."},
            ],
        },
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "echo", "arguments": '{"text": "hi"}'}}
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image", "image_id": "img_1", "image": images()[2]},
            ],
        },
    ]
    prompt = chat.render_prompt(history, [EchoTool().schema()])
    assert prompt.count("<|begin_of_image|><|image|><|end_of_image|>") == 2 and "<|observation|>" in prompt
    assert "<tool_call>echo" in prompt and "echo" in prompt.split("<|user|>")[0]
    completion = chat.chat(history, [EchoTool().schema()])
    assert completion.finish_reason in ("stop", "length") and completion.usage["prompt_tokens"] > 0
