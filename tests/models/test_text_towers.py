"""Text towers: a tiny random BERT from a local directory, pooling, truncation count, export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from glmkit.models.text import TEXT_TOWERS, HFTextTower

WORDS = [
    "one",
    "two",
    "three",
    "red",
    "blue",
    "green",
    "square",
    "circle",
    "triangle",
    "on",
    "the",
    "left",
    "right",
    "in",
    "middle",
    "shapes",
]


def tiny_bert(directory: Path) -> str:
    """A random 2-layer BERT and a word-level vocab (with CJK chars) saved to ``directory``."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"左右中间有一两三个红色蓝绿正方形圆三角"]
    (directory / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    BertTokenizerFast(str(directory / "vocab.txt")).save_pretrained(directory)
    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_bert(tmp_path_factory.mktemp("bert"))


def test_registered() -> None:
    assert TEXT_TOWERS.get("hf_text") is HFTextTower


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pool_project_and_padding_invariance(bert_dir: str, pooling: str) -> None:
    tower = HFTextTower(bert_dir, embed_dim=16, pooling=pooling, max_length=16).eval()
    with torch.no_grad():
        both = tower.encode(["red circle", "two blue squares on the left"])
        alone = tower.encode(["red circle"])
    assert both.shape == (2, 16)
    torch.testing.assert_close(both[:1], alone, atol=1e-5, rtol=1e-5)  # padding never changes a caption


def test_truncation_is_counted(bert_dir: str) -> None:
    tower = HFTextTower(bert_dir, embed_dim=8, max_length=5)
    tokens = tower.tokenize(["red", "one two three red blue green", "左边有两个红色圆形"])
    assert tokens.input_ids.shape[1] == 5
    assert tokens.truncated == 2


def test_captions_the_tokenizer_cannot_read_are_named(bert_dir: str) -> None:
    # "紫" and "黄" are not in the vocabulary: a caption mostly of them trains on [UNK]
    tower = HFTextTower(bert_dir, embed_dim=8, max_length=16)
    tokens = tower.tokenize(["red circle", "紫黄紫黄", "左边有两个红色圆形", "red 紫"])
    assert tokens.unreadable == (1, 3)  # half or more unknown; the readable Chinese caption passes
    assert tokens.to("cpu").unreadable == (1, 3)


def test_the_stage_warns_once_and_counts_unreadable_captions(bert_dir: str, recwarn) -> None:
    from glmkit.models.encoders import CogViT
    from glmkit.models.encoders.image_tower import ImageTower
    from glmkit.stages.contrastive import Contrastive

    stage = Contrastive(
        ImageTower(CogViT.preset("tiny", depth=1), embed_dim=8), HFTextTower(bert_dir, embed_dim=8)
    )
    for _ in range(2):
        stage._warn_unreadable(["red", "紫黄"], stage.text_tower.tokenize(["red", "紫黄"]))
    said = [str(w.message) for w in recwarn if "unknown tokens" in str(w.message)]
    assert len(said) == 1 and "1 of 2 captions" in said[0] and "紫黄" in said[0]


def test_empty_caption_is_an_error(bert_dir: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        HFTextTower(bert_dir).tokenize(["red", " "])


def test_bad_pooling_and_missing_package() -> None:
    with pytest.raises(ValueError, match="pooling"):
        HFTextTower("unused", pooling="max")
    with pytest.raises(ModuleNotFoundError, match="not installed"):
        HFTextTower("pkg:no_such_package_xyz/model")


def test_export_loads_back_alone(bert_dir: str, tmp_path: Path) -> None:
    tower = HFTextTower(bert_dir, embed_dim=16, pooling="mean", max_length=12).eval()
    tower.save_pretrained(tmp_path / "text")
    again = HFTextTower.from_pretrained(tmp_path / "text").eval()
    with torch.no_grad():
        torch.testing.assert_close(again.encode(["red square"]), tower.encode(["red square"]))


def test_pooling_never_mixes_packed_images() -> None:
    from glmkit.models.encoders import CogViT
    from glmkit.models.encoders.image_tower import ImageTower

    torch.manual_seed(0)
    for pooling in ("map", "mean"):
        tower = ImageTower(CogViT.preset("tiny", patch_size=8), embed_dim=16, pooling=pooling).eval()
        a, b = torch.rand(1, 6, 8 * 8 * 3), torch.rand(1, 4, 8 * 8 * 3)
        ca = torch.stack(torch.meshgrid(torch.arange(2), torch.arange(3), indexing="ij"), -1).reshape(1, 6, 2)
        cb = torch.stack(torch.meshgrid(torch.arange(2), torch.arange(2), indexing="ij"), -1).reshape(1, 4, 2)
        packed = torch.cat([a, b, torch.zeros(1, 2, 192)], 1)
        coords = torch.cat([ca, cb, torch.zeros(1, 2, 2, dtype=torch.long)], 1)
        with torch.no_grad():
            out = tower(patches=packed, coords=coords, seq_lens=torch.tensor([[6, 4]]))
            ref = torch.cat([tower(patches=a, coords=ca), tower(patches=b, coords=cb)])
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_image_tower_export(tmp_path: Path) -> None:
    from glmkit.models.encoders import CogViT
    from glmkit.models.encoders.image_tower import ImageTower

    tower = ImageTower(CogViT.preset("tiny", patch_size=8), embed_dim=16).eval()
    tower.save_pretrained(tmp_path / "image")
    again = ImageTower.from_pretrained(tmp_path / "image").eval()
    x = torch.rand(2, 3, 32, 24)
    with torch.no_grad():
        torch.testing.assert_close(again(x), tower(x))
    assert CogViT.from_pretrained(tmp_path / "image" / "encoder").embed_dim == 96  # the VLM's vision tower


def test_a_pretrained_encoders_backend_and_checkpointing_can_be_overridden(tmp_path: Path) -> None:
    # A stage-1 export records its attention backend; stage 2 on a GPU may want xformers or
    # checkpointing without re-exporting. The weights stay the export's; the tower's export keeps the choice.
    from glmkit.models.encoders import CogViT
    from glmkit.models.encoders.image_tower import ImageTower

    stage1 = CogViT.preset("tiny", patch_size=8)
    stage1.save_pretrained(tmp_path / "encoder")
    overrides = {"attn_backend": "xformers", "grad_checkpointing": True}
    tower = ImageTower(pretrained=str(tmp_path / "encoder"), encoder_overrides=overrides, embed_dim=16)
    assert (
        tower.encoder.blocks[0].attn.attn_backend == "xformers"
        and tower.encoder.init_args["grad_checkpointing"]
    )
    for name, value in stage1.state_dict().items():
        assert torch.equal(tower.encoder.state_dict()[name], value), name
    tower.save_pretrained(tmp_path / "tower")
    assert ImageTower.from_pretrained(tmp_path / "tower").encoder.init_args["attn_backend"] == "xformers"
    with pytest.raises(ValueError, match="encoder_overrides"):
        ImageTower(CogViT.preset("tiny"), encoder_overrides={"attn_backend": "sdpa"})


def test_the_encoder_sees_one_normalisation_from_stage_1_to_the_vlm() -> None:
    # Stage 2 starts from stage 1's encoder and the VLM starts from stage 2's: all three must feed it
    # pixels normalised the same way (stage 2 used SigLIP2's 0.5 / 0.5 against ImageNet's elsewhere).
    import inspect

    import yaml

    from glmkit.models.encoders.image_tower import ImageTower
    from glmkit.models.vlm_processor import VLMProcessor
    from glmkit.stages.mim_distill import MIMDistill

    def defaults(fn):
        params = inspect.signature(fn).parameters
        return tuple(params["image_mean"].default), tuple(params["image_std"].default)

    assert defaults(ImageTower) == defaults(MIMDistill) == defaults(VLMProcessor)
    for recipe in ("recipes/cogvit/stage2_siglip_naflex.yaml", "recipes/quickstart/stage2_tiny.yaml"):
        tower = yaml.safe_load(Path(recipe).read_text())["model"]["init_args"]["image_tower"]["init_args"]
        given = (
            tuple(tower.get("image_mean", defaults(ImageTower)[0])),
            tuple(tower.get("image_std", defaults(ImageTower)[1])),
        )
        assert given == defaults(ImageTower), recipe


@pytest.mark.parametrize("layers", [None, 0, 1, 2])
def test_trainable_layers_freeze_the_bottom(bert_dir: str, layers: int | None) -> None:
    tower = HFTextTower(bert_dir, embed_dim=8, trainable_layers=layers)
    trainable = {n for n, p in tower.model.named_parameters() if p.requires_grad}
    everything = {n for n, _ in tower.model.named_parameters()}
    if layers is None:
        assert trainable == everything
    else:
        top = {
            n for n in everything if any(n.startswith(f"encoder.layer.{i}.") for i in range(2 - layers, 2))
        }
        assert trainable == top
    assert all(p.requires_grad for p in tower.proj.parameters())  # the projection always trains
    out = tower(tower.tokenize(["red circle", "two blue squares"])).sum()
    out.backward()
    assert all(p.grad is None for n, p in tower.model.named_parameters() if n not in trainable)


def test_trainable_layers_out_of_range(bert_dir: str) -> None:
    with pytest.raises(ValueError, match="trainable_layers"):
        HFTextTower(bert_dir, trainable_layers=3)
