"""MTP checkpoints: GLM / DeepSeek-V3 key names, save/load round trip, checkpoints without MTP weights."""

from __future__ import annotations

import json
import re
import warnings

import pytest
import torch

from glmkit.models.mtp import (
    MTPCausalLM,
    from_checkpoint_key,
    load_language_model,
    mtp_key_pattern,
    to_checkpoint_key,
)
from glmkit.models.mtp.checkpoint import read_checkpoint_tensors
from tests.models.mtp.tiny import tiny_llm


def _keys(directory) -> set[str]:
    return set(read_checkpoint_tensors(directory, lambda key: True))


def test_published_names_of_each_depth(tmp_path) -> None:
    model = MTPCausalLM(tiny_llm("llama", layers=2), depths=2)
    model.save_pretrained(tmp_path)
    keys = _keys(tmp_path)
    for layer in (2, 3):  # num_hidden_layers + k - 1 for depth k
        for name in (
            "enorm.weight",
            "hnorm.weight",
            "eh_proj.weight",
            "shared_head.norm.weight",
            "shared_head.head.weight",
            "embed_tokens.weight",
            "self_attn.q_proj.weight",
            "mlp.down_proj.weight",
            "input_layernorm.weight",
            "post_attention_layernorm.weight",
        ):
            assert f"model.layers.{layer}.{name}" in keys
    assert "model.layers.2.image_input.embedding" in keys
    assert not any(".block." in key or key.startswith("mtp.") for key in keys)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["num_nextn_predict_layers"] == 2 and config["mtp_image_input"] == "image_token"
    assert not hasattr(model.llm.config, "num_nextn_predict_layers")  # the live config is left as it was


def test_key_mapping_both_ways() -> None:
    assert (
        to_checkpoint_key("layers.0.block.mlp.up_proj.weight", 46, "model.layers.")
        == "model.layers.46.mlp.up_proj.weight"
    )
    assert (
        to_checkpoint_key("layers.1.eh_proj.weight", 46, "model.layers.") == "model.layers.47.eh_proj.weight"
    )
    assert to_checkpoint_key("rotary_emb.inv_freq", 46, "model.layers.") is None
    assert from_checkpoint_key("model.layers.92.shared_head.norm.weight", 92, "model.layers.") == (
        "layers.0.shared_head.norm.weight",
        "mtp",
    )
    assert from_checkpoint_key("model.layers.92.self_attn.o_proj.weight", 92, "model.layers.") == (
        "layers.0.block.self_attn.o_proj.weight",
        "mtp",
    )
    assert from_checkpoint_key("model.layers.92.embed_tokens.weight", 92, "model.layers.") == (None, "shared")
    assert from_checkpoint_key("model.layers.91.mlp.up_proj.weight", 92, "model.layers.") == (None, "other")


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_round_trip_and_plain_transformers_loading(tmp_path, kind: str) -> None:
    from transformers import AutoModelForCausalLM

    model = MTPCausalLM(tiny_llm(kind, tie=kind == "qwen2"), depths=2, image_input="mask").eval()
    model.save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete checkpoint loads without a warning of ours
        loaded = MTPCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.depths == 2 and type(loaded.mtp.image_input).__name__ == "MaskedImageInput"
    assert loaded.mtp_load_report.missing == [] and loaded.mtp_load_report.fresh_depths == []
    state, other = model.state_dict(), loaded.state_dict()
    assert state.keys() == other.keys()
    assert all(torch.equal(state[key], other[key]) for key in state)
    ids = torch.randint(0, 16, (1, 6))
    torch.testing.assert_close(loaded(ids).mtp_logits[1], model(ids).mtp_logits[1])
    # the LLM part loads in plain transformers (which reports the MTP layers as unused keys)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(plain(ids).logits, model.llm(ids).logits)


def test_the_mtp_layers_a_config_records_match_under_any_decoder_prefix() -> None:
    from transformers import LlamaConfig

    assert mtp_key_pattern(LlamaConfig(num_hidden_layers=46)) is None
    pattern = re.compile(mtp_key_pattern(LlamaConfig(num_hidden_layers=46, num_nextn_predict_layers=2)))
    for key in ("model.layers.46.eh_proj.weight", "model.language_model.layers.47.mlp.up_proj.weight"):
        assert pattern.search(key), key
    for key in ("model.layers.45.mlp.up_proj.weight", "model.layers.48.eh_proj.weight", "model.layers.460.x"):
        assert not pattern.search(key), key


def test_the_llm_loads_without_its_mtp_layers_reported_unexpected(tmp_path) -> None:
    from safetensors.torch import load_file, save_file
    from transformers import LlamaForCausalLM

    model = MTPCausalLM(tiny_llm("llama", layers=2), depths=1)
    model.save_pretrained(tmp_path)
    llm, info = load_language_model(tmp_path, output_loading_info=True)
    assert info["unexpected_keys"] == set() and info["missing_keys"] == set()
    state = model.llm.state_dict()
    assert all(torch.equal(value, llm.state_dict()[key]) for key, value in state.items())
    assert "_keys_to_ignore_on_load_unexpected" not in LlamaForCausalLM.__dict__  # the class is restored
    # keys outside the recorded MTP layer (layer 3 is past it) are still reported
    path = str(tmp_path / "model.safetensors")
    save_file(
        {**load_file(path), "model.layers.3.mlp.up_proj.weight": torch.zeros(2)}, path, {"format": "pt"}
    )
    _, info = load_language_model(tmp_path, output_loading_info=True)
    assert info["unexpected_keys"] == {"model.layers.3.mlp.up_proj.weight"}


def test_a_checkpoint_without_mtp_weights_loads_with_fresh_heads(tmp_path) -> None:
    llm = tiny_llm("llama")
    llm.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match=r"depths \[1, 2\] freshly initialised"):
        model = MTPCausalLM.from_pretrained(tmp_path, depths=2)
    assert model.mtp_load_report.loaded == [] and model.mtp_load_report.fresh_depths == [1, 2]
    ids = torch.randint(0, 16, (1, 5))
    torch.testing.assert_close(model.llm(ids).logits, llm(ids).logits)
    assert len(model(ids).mtp_logits) == 2


def test_depth_mismatch_is_reported(tmp_path) -> None:
    MTPCausalLM(tiny_llm("llama"), depths=1).save_pretrained(tmp_path / "one")
    MTPCausalLM(tiny_llm("llama"), depths=2).save_pretrained(tmp_path / "two")
    with pytest.warns(UserWarning, match=r"depths \[2\] freshly initialised"):
        deeper = MTPCausalLM.from_pretrained(tmp_path / "one", depths=2)
    assert deeper.mtp_load_report.fresh_depths == [2]
    with pytest.warns(UserWarning, match=r"ignored: model\.layers\.3\."):
        shallower = MTPCausalLM.from_pretrained(tmp_path / "two", depths=1)
    assert shallower.mtp_load_report.fresh_depths == []


def test_a_shape_mismatch_names_the_key(tmp_path) -> None:
    model = MTPCausalLM(tiny_llm("llama"), depths=1)
    model.save_pretrained(tmp_path)
    other = MTPCausalLM(tiny_llm("llama"), depths=1)
    other.mtp.layers[0].eh_proj = torch.nn.Linear(64, 16, bias=False)
    with pytest.raises(ValueError, match=r"model\.layers\.2\.eh_proj\.weight has shape \(32, 64\)"):
        other.load_mtp(tmp_path)


def test_a_hub_id_resolves_to_its_snapshot(tmp_path, monkeypatch) -> None:
    import huggingface_hub

    MTPCausalLM(tiny_llm("llama"), depths=1).save_pretrained(tmp_path)
    asked = []
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda repo, **kw: asked.append(repo) or str(tmp_path)
    )
    report = MTPCausalLM(tiny_llm("llama"), depths=1).load_mtp("someone/tiny-mtp")
    assert asked == ["someone/tiny-mtp"] and report.fresh_depths == [] and report.source == "someone/tiny-mtp"
