"""One export callback for every stage: stage 2's towers, the VLM, FSDP-sharded weights, errors."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("transformers")

import lightning.pytorch as pl
from lightning.pytorch.strategies import FSDPStrategy

from glmkit.data.captions import PickCaption, ShapeCaptions
from glmkit.data.datamodule_naflex import NaFlexDataModule
from glmkit.data.naflex import NaFlexRandomResizedCrop, NaFlexResize
from glmkit.models.encoders import CogViT
from glmkit.models.encoders.image_tower import ImageTower
from glmkit.models.text import HFTextTower
from glmkit.models.vlm import build_encoder
from glmkit.optim import MuonAdamW
from glmkit.stages import Export, ExportEncoder, ExportVLM
from glmkit.stages.contrastive import Contrastive
from glmkit.stages.export import whole_module
from tests.helpers.distributed import run_on_ranks
from tests.models.test_text_towers import tiny_bert

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


@pytest.mark.parametrize("tower", ["image_tower", "text_tower"])
def test_sharded_weights_are_written_through_a_copy_rebuilt_from_init_args(bert: str, tower: str) -> None:
    """FSDP leaves rank 0 with flat shards; the export then rebuilds the module from its init_args
    (the image tower's encoder as a nested spec) and loads the gathered weights strictly."""
    live = getattr(_stage(bert, trainable_layers=0), tower)
    full = {k: v.clone() for k, v in live.state_dict().items()}
    sharded = copy.deepcopy(live)
    for param in sharded.parameters():
        param.data = param.data.flatten()[:1]  # what a rank holds of a sharded parameter
    assert whole_module(live, full) is live  # whole weights: the live module is written as it is
    rebuilt = whole_module(sharded, full, tower)
    assert rebuilt is not sharded and type(rebuilt) is type(live)
    got = rebuilt.state_dict()
    assert got.keys() == full.keys() and all(torch.equal(got[k], full[k]) for k in full)
    assert [p.requires_grad for p in rebuilt.parameters()] == [p.requires_grad for p in live.parameters()]
    with pytest.raises(RuntimeError, match=f"gathered weights of {tower}"):
        whole_module(sharded, {**full, "extra.weight": torch.zeros(1)}, tower)


def test_clear_errors(bert: str, tmp_path: Path) -> None:
    stage = _stage(bert)
    trainer = SimpleNamespace(strategy=pl.strategies.SingleDeviceStrategy(torch.device("cpu")))
    with pytest.raises(AttributeError, match=r"Contrastive\.image_towr is missing"):
        Export(str(tmp_path), {"image_towr": "a"}).on_fit_start(trainer, stage)
    with pytest.raises(AttributeError, match=r"Contrastive\.loss .* no save_pretrained"):
        Export(str(tmp_path), {"loss": "a"}).on_fit_start(trainer, stage)
    with pytest.raises(AttributeError, match=r"Contrastive .* no export\(\)"):
        ExportVLM(str(tmp_path)).on_fit_start(trainer, stage)
    with pytest.raises(ValueError, match="same directory"):
        Export(str(tmp_path), {"image_tower": "towers", "text_tower": "towers/."})
    with pytest.raises(ValueError, match="at least one"):
        Export(str(tmp_path), {})
    # under FSDP a module must be rebuildable; found when fit starts, not after training
    stage.image_tower.encoder.__dict__.pop("init_args")
    sharded = SimpleNamespace(strategy=FSDPStrategy())
    with pytest.raises(
        AttributeError, match=r"image_tower\.encoder \(CogViT\) has no init_args.*FSDPStrategy"
    ):
        ExportEncoder(str(tmp_path), attribute="image_tower.encoder").on_fit_start(sharded, stage)
    with pytest.raises(ValueError, match="state_dict_type='sharded'.* gives shards"):
        strategy = FSDPStrategy(state_dict_type="sharded")
        Export(str(tmp_path), {"text_tower": "t"}).on_fit_start(SimpleNamespace(strategy=strategy), stage)


def test_export_vlm_writes_the_vlm_its_mtp_heads_and_the_processor(tmp_path: Path) -> None:
    from glmkit.models.mtp import MTPCausalLM
    from glmkit.models.vlm import VisionLanguageModel
    from glmkit.stages.vlm_pretrain import ExportVLM as OldHome
    from tests.models.test_processor import tiny_processor
    from tests.stages.test_vlm_pretrain import make_stage

    assert OldHome is ExportVLM  # the ablation recipes still name glmkit.stages.vlm_pretrain.ExportVLM
    processor = tiny_processor()
    stage = make_stage(SimpleNamespace(processor=processor), depths=1).eval()
    trainer = SimpleNamespace(
        strategy=SimpleNamespace(lightning_module_state_dict=stage.state_dict),
        is_global_zero=True,
        datamodule=SimpleNamespace(collate=SimpleNamespace(processor=processor)),
    )
    ExportVLM(str(tmp_path / "vlm")).on_fit_end(trainer, stage)
    loaded = MTPCausalLM.from_pretrained(tmp_path / "vlm")
    assert loaded.mtp_load_report.fresh_depths == []
    vlm = VisionLanguageModel.from_pretrained(tmp_path / "vlm", language_model=loaded.llm)
    assert (tmp_path / "vlm" / "tokenizer.json").is_file()
    for name, value in stage.vlm.encoder.state_dict().items():
        assert torch.equal(vlm.encoder.state_dict()[name], value), name


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


def _fsdp_fit(rank: int, world: int, bert: str, out: str) -> dict:
    from torch.distributed.fsdp import FullyShardedDataParallel

    # the process group is up already: Lightning joins it instead of launching processes
    os.environ.update(LOCAL_RANK=str(rank), NODE_RANK="0", WORLD_SIZE=str(world), RANK=str(rank))
    torch.set_num_threads(1)
    stage = _stage(bert)
    export = Export(out, {"image_tower": "image_tower", "text_tower": "text_tower"})
    trainer = _trainer(Path(out), export, accelerator="cpu", devices=world, strategy=CPUFSDPStrategy())
    trainer.fit(stage, _data())
    shapes = {n: p.shape for n, p in stage.named_parameters()}
    with FullyShardedDataParallel.summon_full_params(trainer.strategy.model):
        full = {n: p.detach().clone() for n, p in stage.named_parameters()}
    return {"sharded": any(full[n].shape != s for n, s in shapes.items()), "full": full}


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_export_on_two_processes_writes_the_whole_trained_towers(bert: str, tmp_path: Path) -> None:
    """Lightning FSDP on 2 gloo ranks (about 75 s here): every rank joins the gather, rank 0
    writes; the exported towers hold exactly the trained full weights."""
    first, _ = run_on_ranks(_fsdp_fit, 2, tmp_path / "dist", bert, str(tmp_path / "export"))
    assert first["sharded"]  # the live modules held shards, so the export went through the rebuild
    stage = _stage(bert)
    stage.load_state_dict({**stage.state_dict(), **first["full"]}, strict=True)
    check_towers(stage.image_tower, stage.text_tower, tmp_path / "export")
