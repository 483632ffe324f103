import json
import os
import warnings

import lightning as L
import pytest
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import ModelCheckpoint

from glmkit.data import EvalTransform, MixtureDataModule, ProceduralImages, TrainTransform
from tests.data.test_mixture import Solid
from tests.helpers.distributed import run_on_ranks

BATCHES_PER_EPOCH = 4


def datamodule(num_workers=0, **kwargs):
    sources = {
        "natural": ProceduralImages(num_images=1000, seed=0, image_size=32),
        "science": ProceduralImages(num_images=100, seed=1, image_size=32, kinds=["chart"]),
    }
    args = {
        "weights": {"natural": 0.8, "science": 0.2},
        "transform": TrainTransform(16),
        "val_transform": EvalTransform(16),
        "batch_size": 3,
        "num_workers": num_workers,
        "samples_per_epoch": 3 * BATCHES_PER_EPOCH + 2,  # the uneven tail is dropped
        "seed": 5,
        **kwargs,
    }
    return MixtureDataModule(sources, **args)


class Recorder(L.LightningModule):
    """A Linear on the mean-pooled image that records what every training step saw."""

    def __init__(self, touch_estimated_steps: bool = False) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.touch_estimated_steps = touch_estimated_steps
        self.seen: list[tuple[list[int], float]] = []

    def training_step(self, batch, batch_idx):
        # the image checksum catches a resume that gets indices right but the epoch wrong
        self.seen.append((batch["index"].tolist(), round(float(batch["image"].sum()), 3)))
        return self.layer(batch["image"].mean(dim=(2, 3))).pow(2).mean()

    def configure_optimizers(self):
        if self.touch_estimated_steps:  # triggers Lightning #20550: loader states dropped on resume
            assert self.trainer.estimated_stepping_batches > 0
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer(max_steps, **kwargs):
    return L.Trainer(
        max_steps=max_steps,
        max_epochs=100,  # with max_epochs unset, estimated_stepping_batches never reads the loader
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def fit(max_steps, dm, ckpt_dir=None, ckpt_path=None, every=None, touch=False):
    model = Recorder(touch_estimated_steps=touch)
    callbacks = [ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=every, save_top_k=-1)] if every else []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(does not have many workers|persistent_workers).*")
        trainer(max_steps, callbacks=callbacks, enable_checkpointing=bool(every)).fit(
            model, dm, ckpt_path=ckpt_path
        )
    return model.seen


@pytest.mark.parametrize(
    "num_workers, stop, touch",
    [
        (0, 2, False),  # mid-epoch 0
        (0, BATCHES_PER_EPOCH, False),  # exactly at the epoch boundary
        (0, 5, False),  # mid-epoch 1: set_epoch must follow the resume
        (2, 5, False),  # worker processes (persistent) see the right epoch after resume
        (0, 5, True),  # configure_optimizers reads estimated_stepping_batches (Lightning #20550)
    ],
)
def test_resume_sees_exactly_the_uninterrupted_batches(tmp_path, num_workers, stop, touch):
    total = 2 * stop
    straight = fit(total, datamodule(num_workers), touch=touch)
    assert len(straight) == total
    assert len({tuple(idx) for idx, _ in straight[:BATCHES_PER_EPOCH]}) == BATCHES_PER_EPOCH

    first = fit(stop, datamodule(num_workers), ckpt_dir=tmp_path, every=stop, touch=touch)
    assert first == straight[:stop]
    (ckpt,) = list(tmp_path.glob("*.ckpt"))
    state = torch.load(ckpt, weights_only=False)
    assert state["MixtureDataModule"]["train_loader"]["batches"] == (stop - 1) % BATCHES_PER_EPOCH + 1

    resumed = fit(total, datamodule(num_workers), ckpt_path=str(ckpt), touch=touch)
    assert resumed == straight[stop:]


def test_epochs_draw_fresh_samples():
    seen = fit(2 * BATCHES_PER_EPOCH, datamodule())
    epoch0, epoch1 = seen[:BATCHES_PER_EPOCH], seen[BATCHES_PER_EPOCH:]
    assert [i for i, _ in epoch0] == [i for i, _ in epoch1]  # same positions ...
    assert [s for _, s in epoch0] != [s for _, s in epoch1]  # ... different draws


def test_validation_loader_is_fixed_and_separate():
    dm = datamodule(val_samples=7)
    val = list(dm.val_dataloader())
    assert sum(len(b["index"]) for b in val) == 7  # no sample dropped in validation
    again = list(dm.val_dataloader())
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(val, again, strict=True))
    train = next(iter(dm.train_dataloader()))
    assert not torch.equal(train["image"][0], val[0]["image"][0])
    assert datamodule().val_dataloader() == []


def test_batches_and_skipped_reports(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    from glmkit.data import ImageFolder

    dm = MixtureDataModule(
        {"good": Solid(10, 1), "bad": ImageFolder(str(tmp_path))},
        {"good": 0.5, "bad": 0.5},
        transform=TrainTransform(8),
        batch_size=4,
        samples_per_epoch=40,
    )
    batches = list(dm.train_dataloader())
    assert len(batches) == 10
    batch = batches[0]
    assert batch["image"].shape == (4, 3, 8, 8) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= 0 and batch["image"].max() <= 1
    assert batch["source"] == ["good"] * 4 and batch["index"].dtype == torch.long
    skipped = [s for b in batches for s in b["skipped"]]
    assert len(skipped) > 10 and all(s.startswith(str(tmp_path / "bad.jpg")) for s in skipped)


def test_errors():
    with pytest.raises(ValueError, match=r"weights without a source: \['web'\]"):
        datamodule(weights={"natural": 1.0, "science": 1.0, "web": 1.0})
    with pytest.raises(ValueError, match="fewer than batch_size=3: no full batch"):
        datamodule(samples_per_epoch=2).train_dataloader()


def test_built_from_a_recipe_with_class_paths():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(MixtureDataModule, "data")
    config = {
        "data": {
            "class_path": "glmkit.data.MixtureDataModule",
            "init_args": {
                "sources": {
                    "natural": {
                        "class_path": "glmkit.data.ProceduralImages",
                        "init_args": {"num_images": 50},
                    },
                    "science": {
                        "class_path": "ProceduralImages",
                        "init_args": {"kinds": ["chart"], "seed": 1},
                    },
                },
                "weights": {"natural": 0.9, "science": 0.1},
                "transform": {"class_path": "TrainTransform", "init_args": {"scale": [0.5, 1.0]}},
            },
        }
    }
    dm = parser.instantiate_classes(parser.parse_object(config)).data
    assert isinstance(dm, MixtureDataModule) and isinstance(dm.sources["science"], ProceduralImages)
    assert dm.sources["science"].kinds == ("chart",) and dm.train_set.transform.scale == (0.5, 1.0)
    assert dm.train_set.weights == pytest.approx({"natural": 0.9, "science": 0.1})


def _rank_batches(rank: int, world: int) -> dict:
    dm = datamodule(samples_per_epoch=3 * 5 * world + 1)  # 5 batches per rank, one sample dropped
    batches = [b["index"].tolist() for b in dm.train_dataloader()]
    # resume on every rank from the same (rank 0) state, as Lightning does under DDP
    loader = dm.train_dataloader()
    it = iter(loader)
    head = [next(it)["index"].tolist() for _ in range(2)]
    state = [loader.state_dict()]
    dist.broadcast_object_list(state, src=0)
    resumed = datamodule(samples_per_epoch=3 * 5 * world + 1)
    resumed.load_state_dict({"train_loader": state[0]})
    tail = [b["index"].tolist() for b in resumed.train_dataloader()]
    return {"batches": batches, "resumed": head + tail}


@pytest.mark.distributed
def test_ranks_read_disjoint_slices_with_equal_batch_counts(tmp_path):
    # fork: the children inherit the imported modules instead of re-importing torch and Lightning
    results = run_on_ranks(_rank_batches, 2, tmp_path, start_method="fork")
    counts = [len(r["batches"]) for r in results]
    assert counts == [5, 5]
    per_rank = [{i for b in r["batches"] for i in b} for r in results]
    assert not per_rank[0] & per_rank[1]
    assert per_rank[0] | per_rank[1] == set(range(30))
    assert all(r["resumed"] == r["batches"] for r in results)


class RankRecorder(Recorder):
    """Writes each rank's batches to ``folder/<tag>-rank<r>.json`` at the end of fit."""

    def __init__(self, folder: str, tag: str) -> None:
        super().__init__()
        self.folder, self.tag = folder, tag

    def on_train_end(self) -> None:
        loader = self.trainer.train_dataloader
        record = {
            "seen": self.seen,
            "sampler": type(loader.sampler).__name__,
            "replicas": loader.sampler.num_replicas,
        }
        with open(os.path.join(self.folder, f"{self.tag}-rank{self.global_rank}.json"), "w") as fh:
            json.dump(record, fh)


def ddp_fit(folder, tag, max_steps, ckpt_dir=None, every=None, ckpt_path=None):
    callbacks = [ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=every, save_top_k=-1)] if every else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        L.Trainer(
            max_steps=max_steps,
            accelerator="cpu",
            devices=2,
            strategy="ddp_fork",  # fork keeps the test fast: no re-import of torch in the children
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=bool(every),
            callbacks=callbacks,
        ).fit(
            RankRecorder(str(folder), tag),
            datamodule(samples_per_epoch=2 * 3 * BATCHES_PER_EPOCH),
            ckpt_path=ckpt_path,
        )
    return [json.loads((folder / f"{tag}-rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.distributed
def test_lightning_ddp_keeps_the_sampler_and_resumes_every_rank(tmp_path):
    straight = ddp_fit(tmp_path, "straight", 6)
    assert [r["sampler"] for r in straight] == ["ResumableSampler"] * 2  # Lightning did not replace it
    assert [r["replicas"] for r in straight] == [2, 2]
    indices = [{i for idx, _ in r["seen"][:BATCHES_PER_EPOCH] for i in idx} for r in straight]
    assert not indices[0] & indices[1] and len(indices[0]) == len(indices[1]) == 3 * BATCHES_PER_EPOCH
    first = ddp_fit(tmp_path, "first", 3, ckpt_dir=tmp_path / "ckpt", every=3)
    assert [r["seen"] for r in first] == [r["seen"][:3] for r in straight]
    (ckpt,) = list((tmp_path / "ckpt").glob("*.ckpt"))
    resumed = ddp_fit(tmp_path, "resumed", 6, ckpt_path=str(ckpt))
    assert [r["seen"] for r in resumed] == [r["seen"][3:] for r in straight]


class ValRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.val: list[list[int]] = []

    def validation_step(self, batch, batch_idx):
        self.val.append(batch["index"].tolist())


@pytest.mark.parametrize("val_samples, expected", [(0, []), (7, [[0, 1, 2], [3, 4, 5], [6]])])
def test_fit_with_and_without_validation(val_samples, expected):
    model = ValRecorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer(BATCHES_PER_EPOCH, enable_checkpointing=False).fit(model, datamodule(val_samples=val_samples))
    assert model.val == expected and len(model.seen) == BATCHES_PER_EPOCH


@pytest.mark.parametrize("val_samples", [0, 7])
def test_fit_with_overfit_batches(val_samples, tmp_path):
    # Lightning rebuilds the train loader with a SequentialSampler: it must run as a plain loader,
    # repeat the same 2 batches every epoch, and its checkpoint must load (a plain loader has no
    # position to restore, so the resumed run restarts its epoch).
    model = ValRecorder()
    every = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_top_k=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer(6, overfit_batches=2, callbacks=[every]).fit(model, datamodule(val_samples=val_samples))
    assert [idx for idx, _ in model.seen] == [[0, 1, 2], [3, 4, 5]] * 3
    assert model.seen[:2] == model.seen[2:4] == model.seen[4:]  # the same images, not fresh draws
    (ckpt,) = list(tmp_path.glob("*step=3.ckpt"))
    assert torch.load(ckpt, weights_only=False)["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{}]
    resumed = ValRecorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer(6, overfit_batches=2, enable_checkpointing=False).fit(
            resumed, datamodule(val_samples=val_samples), ckpt_path=str(ckpt)
        )
    assert len(resumed.seen) == 3 and all(batch in model.seen[:2] for batch in resumed.seen)
