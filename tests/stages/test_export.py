"""One export callback for every stage: stage 2's towers, the VLM with its MTP heads, FSDP-sharded
weights (through the empty copy taken at setup), errors."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

pytest.importorskip("transformers")

import lightning.pytorch as pl
from lightning.pytorch.strategies import FSDPStrategy

from glmkit.data.captions import PickCaption, ShapeCaptions
from glmkit.data.datamodule_naflex import NaFlexDataModule
from glmkit.data.naflex import NaFlexRandomResizedCrop, NaFlexResize
from glmkit.inference import load_vlm
from glmkit.models.encoders import CogViT
from glmkit.models.encoders.image_tower import ImageTower
from glmkit.models.text import HFTextTower
from glmkit.models.vlm import VisionLanguageModel, build_encoder
from glmkit.optim import MuonAdamW
from glmkit.stages import Export, ExportEncoder, ExportVLM
from glmkit.stages.contrastive import Contrastive
from glmkit.stages.export import empty_copy, whole_module
from glmkit.stages.vlm_pretrain import VLMPretrain
from tests.helpers.distributed import run_on_ranks
from tests.models.test_processor import tiny_processor
from tests.models.test_text_towers import tiny_bert
from tests.models.test_vlm import llm_config, tiny_encoder

CAPTIONS = ["two red circles on the left", "一个蓝色正方形", "three green triangles"]


def _stage(bert: str, trainable_layers: int | None = 1) -> Contrastive:
    torch.manual_seed(0)
    return Contrastive(
        ImageTower(CogViT.preset("tiny", depth=2), embed_dim=32, pooling="map", image_mean=(0.4, 0.5, 0.6)),
        HFTextTower(bert, embed_dim=32, pooling="cls", max_length=12, trainable_layers=trainable_layers),
        optimization=MuonAdamW(lr=1e-2, fallback_patterns=["*"]),  # AdamW everywhere: weights move
    )


def _data() -> NaFlexDataModule:
    return NaFlexDataModule(
        {"shapes": ShapeCaptions(1000, seed=1, min_size=48, max_size=96)},
        transform=PickCaption(),
        naflex=NaFlexRandomResizedCrop(16, 24),
        val_naflex=NaFlexResize(16, 24),
        seq_lens=(12, 24),
        max_tokens_per_batch=96,
        row_len=48,
        val_seq_len=24,
        samples_per_epoch=400,
        val_samples=0,
    )


def _trainer(root: Path, callback: pl.Callback, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=root,
        callbacks=[callback],
        **kwargs,
    )


def _embeddings(image: ImageTower, text: HFTextTower) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    x = torch.rand(2, 3, 48, 32)
    with torch.no_grad():
        return image.eval()(x), text.eval().encode(CAPTIONS)


def check_towers(live_image: ImageTower, live_text: HFTextTower, directory: Path) -> None:
    """The exported towers load back alone, with every argument, and embed as the live ones do."""
    image = ImageTower.from_pretrained(directory / "image_tower")
    text = HFTextTower.from_pretrained(directory / "text_tower")
    assert {**image.init_args, "encoder": None} == {**live_image.init_args, "encoder": None}
    assert image.init_args["encoder"]["init_args"] == live_image.init_args["encoder"]["init_args"]
    assert {**text.init_args, "model": None} == {**live_text.init_args, "model": None}
    # trainable_layers survives: the same parameters train after the round trip
    assert [n for n, p in text.named_parameters() if p.requires_grad] == [
        n for n, p in live_text.named_parameters() if p.requires_grad
    ]
    for got, want in zip(_embeddings(image, text), _embeddings(live_image, live_text), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    # the vision tower's encoder/ is the CogViT export the VLM reads (its `encoder` argument)
    for encoder in (
        CogViT.from_pretrained(directory / "image_tower" / "encoder"),
        build_encoder(str(directory / "image_tower" / "encoder")),
    ):
        got, want = encoder.state_dict(), live_image.encoder.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k].cpu()) for k in want)


def check_exported_towers(run_dir: Path, checkpoint: str) -> None:
    """A run's exported towers (``image_tower/``, ``text_tower/``) load back alone, with every
    argument, and embed exactly as the stage rebuilt from the run's ``checkpoint`` (a glob under
    ``run_dir`` naming the last step's checkpoint) does."""
    (path,) = run_dir.glob(checkpoint)
    stage = Contrastive.load_from_checkpoint(path, map_location="cpu")
    check_towers(stage.image_tower, stage.text_tower, run_dir)


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_bert(tmp_path_factory.mktemp("bert"))


def test_both_towers_export_at_fit_end_and_load_back_alone(bert: str, tmp_path: Path) -> None:
    stage = _stage(bert)
    before = copy.deepcopy(stage.image_tower.proj.weight.detach())
    export = Export(str(tmp_path / "export"), {"image_tower": "image_tower", "text_tower": "text_tower"})
    _trainer(tmp_path, export).fit(stage, _data())
    assert not torch.equal(stage.image_tower.proj.weight, before)  # trained: the export is not the init
    check_towers(stage.image_tower, stage.text_tower, tmp_path / "export")


def _shard(module: torch.nn.Module) -> None:
    """Leave ``module`` holding what one FSDP rank holds of each parameter: a flat slice."""
    for param in module.parameters():
        param.data = param.data.flatten()[:1]


@pytest.mark.parametrize("tower", ["image_tower", "text_tower"])
def test_sharded_weights_are_written_through_the_empty_copy_taken_before_sharding(
    bert: str, tower: str
) -> None:
    """FSDP leaves rank 0 with flat shards; the export then loads the gathered weights strictly into
    the empty copy of the module taken when fit set up, before the strategy sharded it."""
    live = getattr(_stage(bert, trainable_layers=0), tower)
    full = {k: v.clone() for k, v in live.state_dict().items()}
    assert whole_module(live, full) is live  # whole weights: the live module is written as it is
    empty, spare = empty_copy(live), empty_copy(live)
    assert type(empty) is type(live) and all(t.is_meta for t in empty.state_dict().values())
    _shard(live)
    with pytest.raises(RuntimeError, match=f"{tower} holds sharded weights but no empty copy"):
        whole_module(live, full, None, tower)
    whole = whole_module(live, full, empty, tower)
    assert whole is empty
    got = whole.state_dict()
    assert got.keys() == full.keys() and all(torch.equal(got[k], full[k]) for k in full)
    assert [p.requires_grad for p in whole.parameters()] == [p.requires_grad for p in live.parameters()]
    assert all(p.numel() == 1 for p in live.parameters())  # the live module keeps its shards
    with pytest.raises(RuntimeError, match=f"gathered weights of {tower} do not fit the copy"):
        whole_module(live, {**full, "extra.weight": torch.zeros(1)}, spare, tower)


def _vlm_stage(processor: Any) -> VLMPretrain:
    """A tiny VLM (CogViT -> merger -> random Llama) with one MTP depth; neither the stage nor its VLM
    has init_args."""
    kw = processor.model_kwargs()
    torch.manual_seed(0)
    vlm = VisionLanguageModel(tiny_encoder(), llm_config("llama", kw["vocab_size"]), kw["image_token_id"])
    return VLMPretrain(vlm, mtp_depths=1, optimization=MuonAdamW(lr=1e-2, fallback_patterns=["*"]))


def check_vlm_export(stage: VLMPretrain, directory: Path) -> None:
    """The exported VLM loads back with its MTP heads and processor, holding the stage's weights exactly."""
    vlm, mtp, processor = load_vlm(directory)
    assert mtp.mtp_load_report.fresh_depths == []
    assert processor.model_kwargs() == tiny_processor().model_kwargs()
    for got, want in ((vlm, stage.vlm), (mtp.mtp, stage.mtp)):
        state, expected = got.state_dict(), want.state_dict()
        assert state.keys() == expected.keys()
        for name, value in expected.items():
            assert torch.equal(state[name], value.cpu()), name


def test_export_vlm_of_a_sharded_stage_writes_its_empty_copy_whole(tmp_path: Path) -> None:
    """The VLM stage has no init_args anywhere; holding shards, it exports through the empty copy
    ExportVLM took at setup (the MTP heads' rotary embedding still the LLM's), as under FSDP."""
    processor = tiny_processor()
    stage = _vlm_stage(processor)
    full = {k: v.clone() for k, v in stage.state_dict().items()}
    trainer = SimpleNamespace(
        strategy=SimpleNamespace(lightning_module_state_dict=lambda: full),
        is_global_zero=True,
        datamodule=SimpleNamespace(collate=SimpleNamespace(processor=processor)),
    )
    export = ExportVLM(str(tmp_path / "vlm"))
    export.setup(trainer, stage, "fit")
    empty = export._empty[""]
    assert empty.mtp.rotary_emb is empty.vlm.language_model.model.rotary_emb  # shared, as in the stage
    _shard(stage)
    export.on_fit_end(trainer, stage)
    assert export._empty == {}  # the copy is dropped once written
    whole = _vlm_stage(processor)
    whole.load_state_dict(full, strict=True)
    check_vlm_export(whole, tmp_path / "vlm")


def test_clear_errors(bert: str, tmp_path: Path) -> None:
    stage = _stage(bert)
    trainer = SimpleNamespace(strategy=pl.strategies.SingleDeviceStrategy(torch.device("cpu")))
    # found when fit sets up, not after training
    with pytest.raises(AttributeError, match=r"Contrastive\.image_towr is missing"):
        Export(str(tmp_path), {"image_towr": "a"}).setup(trainer, stage, "fit")
    with pytest.raises(AttributeError, match=r"Contrastive\.image_tower\.pool .* no save_pretrained"):
        Export(str(tmp_path), {"image_tower.pool": "a"}).setup(trainer, stage, "fit")
    with pytest.raises(AttributeError, match=r"Contrastive\.encoder is missing"):
        ExportEncoder(str(tmp_path)).setup(trainer, stage, "fit")  # stage 2 names its image_tower
    with pytest.raises(AttributeError, match=r"Contrastive .* no export\(\)"):
        ExportVLM(str(tmp_path)).setup(trainer, stage, "fit")
    with pytest.raises(ValueError, match="same directory"):
        Export(str(tmp_path), {"image_tower": "towers", "text_tower": "towers/."})
    with pytest.raises(ValueError, match="at least one"):
        Export(str(tmp_path), {})
    with pytest.raises(ValueError, match="state_dict_type='sharded'.* gives shards"):
        strategy = FSDPStrategy(state_dict_type="sharded")
        Export(str(tmp_path), {"text_tower": "t"}).setup(SimpleNamespace(strategy=strategy), stage, "fit")


def test_export_vlm_writes_the_vlm_its_mtp_heads_and_the_processor(tmp_path: Path) -> None:
    from glmkit.stages.vlm_pretrain import ExportVLM as OldHome

    assert OldHome is ExportVLM  # the ablation recipes still name glmkit.stages.vlm_pretrain.ExportVLM
    processor = tiny_processor()
    stage = _vlm_stage(processor).eval()
    trainer = SimpleNamespace(
        strategy=SimpleNamespace(lightning_module_state_dict=stage.state_dict),
        is_global_zero=True,
        datamodule=SimpleNamespace(collate=SimpleNamespace(processor=processor)),
    )
    ExportVLM(str(tmp_path / "vlm")).on_fit_end(trainer, stage)
    assert (tmp_path / "vlm" / "tokenizer.json").is_file()
    check_vlm_export(stage, tmp_path / "vlm")


class CPUFSDPStrategy(FSDPStrategy):
    """Lightning's FSDP strategy wrapping on the CPU, which Lightning itself refuses (its
    accelerator check; FSDP then needs ``device_id=cpu``). The loss's scalar temperature and bias
    stay unsharded: FSDP does not take 0-d parameters."""

    def _setup_model(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel(
            module=model,
            device_id=torch.device("cpu"),
            sharding_strategy=self.sharding_strategy,
            ignored_states=[model.loss],
            **self.kwargs,
        )


def _fit_sharded(
    world: int, stage: pl.LightningModule, data: pl.LightningDataModule, export: Export, out: str
) -> dict:
    """Fit ``stage`` under Lightning FSDP on ``world`` ranks with ``export``; returns whether the live
    parameters held shards and the trained full parameters."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    trainer = _trainer(Path(out), export, accelerator="cpu", devices=world, strategy=CPUFSDPStrategy())
    trainer.fit(stage, data)
    shapes = {n: p.shape for n, p in stage.named_parameters()}
    with FullyShardedDataParallel.summon_full_params(trainer.strategy.model):
        full = {n: p.detach().clone() for n, p in stage.named_parameters()}
    return {"sharded": any(full[n].shape != s for n, s in shapes.items()), "full": full}


def _join(rank: int, world: int) -> None:
    # the process group is up already: Lightning joins it instead of launching processes
    os.environ.update(LOCAL_RANK=str(rank), NODE_RANK="0", WORLD_SIZE=str(world), RANK=str(rank))
    torch.set_num_threads(1)


def _fsdp_fit(rank: int, world: int, bert: str, out: str) -> dict:
    _join(rank, world)
    export = Export(out, {"image_tower": "image_tower", "text_tower": "text_tower"})
    return _fit_sharded(world, _stage(bert), _data(), export, out)


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_export_on_two_processes_writes_the_whole_trained_towers(bert: str, tmp_path: Path) -> None:
    """Lightning FSDP on 2 gloo ranks (about 75 s here): every rank joins the gather, rank 0
    writes; the exported towers hold exactly the trained full weights."""
    first, _ = run_on_ranks(_fsdp_fit, 2, tmp_path / "dist", bert, str(tmp_path / "export"))
    assert first["sharded"]  # the live modules held shards, so the export went through the copy
    stage = _stage(bert)
    stage.load_state_dict({**stage.state_dict(), **first["full"]}, strict=True)
    check_towers(stage.image_tower, stage.text_tower, tmp_path / "export")


def _fsdp_fit_vlm(rank: int, world: int, out: str) -> dict:
    from glmkit.data import MixtureDataModule
    from glmkit.data.vlm_samples import ProceduralConversations, VLMChatCollate

    _join(rank, world)
    collate = VLMChatCollate(tiny_processor(), max_length=256)
    tasks = ("caption", "text")
    sources = {task: ProceduralConversations(task, size=64, seed=i) for i, task in enumerate(tasks)}
    data = MixtureDataModule(sources, collate=collate, batch_size=2, samples_per_epoch=64)
    return _fit_sharded(world, _vlm_stage(collate.processor), data, ExportVLM(out), out)


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_export_on_two_processes_writes_the_whole_trained_vlm_and_mtp_heads(tmp_path: Path) -> None:
    """ExportVLM under Lightning FSDP on 2 gloo ranks: the stage (no init_args anywhere) exports
    through its empty copy; the directory loads back with ``load_vlm`` and holds exactly the
    trained full weights of the VLM and its MTP heads."""
    first, _ = run_on_ranks(_fsdp_fit_vlm, 2, tmp_path / "dist", str(tmp_path / "vlm"))
    assert first["sharded"]  # the live stage held shards, so the export went through the empty copy
    stage = _vlm_stage(tiny_processor())
    untrained = {n: p.detach().clone() for n, p in stage.named_parameters()}
    stage.load_state_dict({**stage.state_dict(), **first["full"]}, strict=True)
    assert not torch.equal(stage.mtp.layers[0].eh_proj.weight, untrained["mtp.layers.0.eh_proj.weight"])
    check_vlm_export(stage, tmp_path / "vlm")
