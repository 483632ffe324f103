"""CogViT stage 2: NaFlex contrastive image-text pretraining with the sigmoid (SigLIP) loss.

GLM-5V-Turbo section 2.1: starting from the stage-1 encoder, an image tower (CogViT on NaFlex
inputs, pooled and projected) and a text tower (a pretrained, possibly bilingual, transformers
encoder, pooled and projected) are trained with SigLIP's sigmoid loss (arXiv 2303.15343, eq. 1) over
the global batch: each rank's images meet the texts of every rank through the loss's exchange, so
the global batch is the per-rank batch times the world size. Vision, text and projection have their
own learning rates and schedules (``optim_modules``; the recipe's ``optimization.modules``).

Validation embeds the held-out pairs and reports image-text retrieval R@1/R@5 both ways and, when
``class_names`` are given and batches carry ``label``, zero-shot classification accuracy.

At fit end :class:`~glmkit.stages.export.Export` writes both towers and the loss's trained
temperature and bias (``modules: {image_tower: ..., text_tower: ..., loss: ...}``);
:func:`evaluate_towers` (``glmkit eval-retrieval``) runs this validation on an exported pair, over
a recipe's validation draws or over :class:`PairsInOrder` (every record of a manifest once, in
order).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from jsonargparse import lazy_instance
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import IterableDataset

from glmkit.data.collate import PadCollate
from glmkit.data.decode import BadImageError
from glmkit.data.naflex import NaFlexResize, encoder_inputs
from glmkit.data.sources import BadSampleError, Source
from glmkit.data.transforms import Transform
from glmkit.eval.retrieval import retrieval_metrics, zero_shot_accuracy, zero_shot_classify
from glmkit.losses.siglip import ContrastiveLoss, SigLIPLoss
from glmkit.models.encoders.image_tower import ImageTower
from glmkit.models.text.base import TextTower, Tokens
from glmkit.optim import MuonAdamW, OptimizerBuilder
from glmkit.stages.base import STAGES, Stage


@STAGES.register("contrastive")
class Contrastive(Stage):
    """Image-text contrastive training (CogViT stage 2).

    Args:
        image_tower: encoder + pooling + projection (:class:`~glmkit.models.encoders.image_tower.ImageTower`).
        text_tower: a :class:`~glmkit.models.text.TextTower` with the same ``embed_dim``.
        loss: the contrastive loss; owns temperature and bias and exchanges across ranks.
        optimization: the optimizer builder; ``modules`` may set ``vision``, ``text`` and ``proj``.
        caption_key: the batch field holding one caption per image.
        class_names: zero-shot classes of the validation ``label`` field (``None``: no classification).
        class_templates: prompt templates of the classes (``{}`` is the class name).
        retrieval_ks: the R@K cut-offs of validation.
        seed: seed of the step's random draws (stochastic depth).
    """

    def __init__(
        self,
        image_tower: ImageTower,
        text_tower: TextTower,
        loss: ContrastiveLoss = lazy_instance(SigLIPLoss),
        optimization: OptimizerBuilder = lazy_instance(MuonAdamW),
        caption_key: str = "caption",
        class_names: list[str] | None = None,
        class_templates: list[str] = ["{}"],  # noqa: B006  (jsonargparse needs a literal default)
        retrieval_ks: Sequence[int] = (1, 5),
        seed: int = 0,
    ) -> None:
        super().__init__()
        if int(image_tower.embed_dim) != int(text_tower.embed_dim):
            raise ValueError(
                f"image_tower.embed_dim={image_tower.embed_dim} != text_tower.embed_dim={text_tower.embed_dim}; "
                "set both towers' embed_dim to the shared width"
            )
        self.save_component_hparams(["image_tower", "text_tower", "loss", "optimization"])
        self.image_tower = image_tower
        self.text_tower = text_tower
        self.loss = loss
        self.optimization = optimization
        self.caption_key = caption_key
        self.class_names = list(class_names) if class_names else None
        self.class_templates = list(class_templates)
        self.retrieval_ks = tuple(int(k) for k in retrieval_ks)
        self.seed = seed
        self._val: dict[str, list[Tensor]] = {}
        self._warned_unreadable = False

    # ----------------------------------------------------------------------------------- pieces
    def optim_modules(self) -> Mapping[str, nn.Module]:
        """``vision`` (the encoder), ``text`` (the transformers model), ``proj`` (pooling heads,
        projections, and the loss's temperature and bias; named ``image_pool.*``,
        ``projection.image.*``, ``projection.text.*``, ``loss.*`` inside the module).

        A module without trainable parameters (a frozen text backbone, ``trainable_layers: 0``) is
        left out, unless ``optimization.modules`` names it: then it stays, so the recipe's settings
        still match, and the builder makes no (empty) group for it."""
        # Named so that the optimizer's patterns can address them: ``projection.image`` /
        # ``projection.text`` (the towers' linear maps into the shared space, hidden-like weights:
        # Muon; measured on the quickstart, AdamW there left the space unlearnt in 200 steps:
        # held-out R@1 0.015 against 0.08), the MAP head's ``probe`` (a learned token: no decay),
        # its attention and MLP (Muon).
        text_rest = {
            f"text_{name}": m for name, m in self.text_tower.named_children() if name not in ("model", "proj")
        }
        heads = {"image": self.image_tower.proj, "text": getattr(self.text_tower, "proj", nn.Identity())}
        modules: dict[str, nn.Module] = {
            "vision": self.image_tower.encoder,
            "text": self.text_tower.model,
            "proj": nn.ModuleDict(
                {
                    "image_pool": self.image_tower.pool,
                    "projection": nn.ModuleDict(heads),
                    "loss": self.loss,
                    **text_rest,
                }
            ),
        }
        named = set(getattr(self.optimization, "modules", None) or {})
        return {
            name: module
            for name, module in modules.items()
            if name in named or any(p.requires_grad for p in module.parameters())
        }

    def encode_images(self, batch: Mapping[str, Any]) -> Tensor:
        """``[I, D]`` L2-normalised embeddings of the batch's images (NaFlex or ``image [B, 3, H, W]``)."""
        if "patches" in batch:
            emb = self.image_tower(**encoder_inputs(dict(batch)))
        else:
            emb = self.image_tower(batch["image"])
        return F.normalize(emb.float(), dim=-1)

    def encode_texts(self, captions: Sequence[str]) -> tuple[Tensor, Tokens]:
        """``([B, D]`` L2-normalised caption embeddings, their tokens``)``: the tokens count the
        captions cut at the length limit and name those the tokenizer cannot read."""
        tokens = self.text_tower.tokenize(list(captions)).to(self.device)
        return F.normalize(self.text_tower(tokens).float(), dim=-1), tokens

    def captions(self, batch: Mapping[str, Any]) -> list[str]:
        """The batch's captions, one per image."""
        if self.caption_key not in batch:
            raise KeyError(f"batch has no {self.caption_key!r} field; it has {sorted(batch)}")
        return list(batch[self.caption_key])

    # ------------------------------------------------------------------------------- lightning
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """Encode images and captions, sigmoid loss over the global batch, log."""
        image_emb = self.encode_images(batch)
        captions = self.captions(batch)
        text_emb, tokens = self.encode_texts(captions)
        self._warn_unreadable(captions, tokens)
        loss = self.loss(image_emb, text_emb)
        size = image_emb.shape[0]
        self.log_dict(
            {
                "train/loss": loss,
                "train/temperature": self.loss.logit_scale.detach().exp(),
                "train/bias": self.loss.logit_bias.detach(),
            },
            batch_size=size,
        )
        # every rank's captions count (the loss and the shared temperature and bias need no sync)
        for name, count in (("truncated", tokens.truncated), ("unreadable", len(tokens.unreadable))):
            self.log(f"train/{name}_captions", float(count), reduce_fx="sum", sync_dist=True, batch_size=size)
        self.log("loss", loss, prog_bar=True, logger=False, batch_size=size)
        return loss

    def _warn_unreadable(self, captions: Sequence[str], tokens: Tokens) -> None:
        """Say once that the text tower cannot read some captions (they train on unknown tokens)."""
        if tokens.unreadable and not self._warned_unreadable:
            self._warned_unreadable = True
            examples = [captions[i] for i in tokens.unreadable[:3]]
            rank_zero_warn(
                f"{len(tokens.unreadable)} of {len(captions)} captions of a step are at least half unknown "
                f"tokens to the text tower's tokenizer (e.g. {examples}): it cannot read their language, "
                "so those pairs teach little; use a tower that reads it or leave the language out "
                "(PickCaption languages). train/unreadable_captions counts them."
            )

    def on_validation_epoch_start(self) -> None:
        self._val = {"image": [], "text": [], "group": [], "record": [], "label": []}

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Embed the held-out pairs (metrics at the end of the epoch) and log their loss."""
        captions = self.captions(batch)
        image_emb = self.encode_images(batch)
        text_emb, _ = self.encode_texts(captions)
        self.log("val/loss", self.loss(image_emb, text_emb), sync_dist=True, batch_size=len(captions))
        self._val["image"].append(image_emb)
        self._val["text"].append(text_emb)
        # pairs that share a caption match each other, and so do two draws of one held-out record
        # (captions in two languages); stable ids are comparable across ranks
        self._val["group"].append(self._ids(captions))
        if "source" in batch and "source_index" in batch:
            records = [f"{s}:{int(i)}" for s, i in zip(batch["source"], batch["source_index"], strict=True)]
            self._val["record"].append(self._ids(records))
        if "label" in batch:
            self._val["label"].append(torch.as_tensor(batch["label"], device=self.device))

    def on_validation_epoch_end(self) -> None:
        """Retrieval R@K both ways (and zero-shot accuracy) over all ranks' held-out pairs."""
        if not self._val.get("image"):
            return
        gathered = {k: self._gather(torch.cat(v)) for k, v in self._val.items() if v}
        groups = [gathered[k] for k in ("group", "record") if k in gathered]
        metrics = retrieval_metrics(gathered["image"], gathered["text"], self.retrieval_ks, groups)
        if self.class_names and "label" in gathered:
            logits = zero_shot_classify(
                gathered["image"], self.class_names, self._encode_prompts, self.class_templates
            )
            metrics["zero_shot/top1"] = zero_shot_accuracy(logits, gathered["label"])
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, rank_zero_only=True)
        self._val = {}

    def _ids(self, names: Sequence[str]) -> Tensor:
        """Stable ids of strings (crc32), the same on every rank."""
        return torch.tensor([zlib.crc32(n.encode()) for n in names], device=self.device)

    def _encode_prompts(self, prompts: list[str]) -> Tensor:
        return self.encode_texts(prompts)[0]

    def _gather(self, x: Tensor) -> Tensor:
        if self.trainer.world_size == 1:
            return x
        return self.all_gather(x).flatten(0, 1)  # W, N, ... -> W*N, ...

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Normalised image (and, with captions, text) embeddings of a batch."""
        out = {"index": batch["index"], "image_emb": self.encode_images(batch)}
        if self.caption_key in batch:
            out["text_emb"] = self.encode_texts(self.captions(batch))[0]
        return out


def load_tower(directory: str | Path) -> nn.Module:
    """An exported tower (``ImageTower``, ``HFTextTower``, ...) from its directory alone: the class
    named by its ``config.json`` rebuilds itself with ``from_pretrained``."""
    from glmkit.models.zoo import import_class, read_config

    config = read_config(directory)
    cls = import_class(config["class_path"], Path(directory) / "config.json")
    if not callable(getattr(cls, "from_pretrained", None)):
        raise TypeError(f"{Path(directory) / 'config.json'}: {config['class_path']} has no from_pretrained")
    return cls.from_pretrained(directory)


class PairsInOrder(IterableDataset):
    """Every record of a source once, in order, as padded NaFlex batches (``glmkit eval-retrieval --data``).

    Unlike a :class:`~glmkit.data.mixture.Mixture` (seeded draws with replacement), record ``i`` is
    read once, as the ``i``-th pair of the evaluation. A record that cannot be read (an undecodable
    image, a missing or empty caption: :class:`~glmkit.data.decode.BadImageError` or
    :class:`~glmkit.data.sources.BadSampleError`) is skipped; after an iteration :attr:`pairs`
    counts the pairs served and :attr:`skipped` names each skipped record (``path:line: why``).

    A batch is what the NaFlex validation loader gives the stage (``pad`` mode): ``patches``,
    ``coords``, ``patches_valid`` padded to ``naflex.max_num_patches``, ``grid``, the records'
    other fields one entry per pair, and ``index`` (the record's position in the source).

    Args:
        source: records with the image field ``naflex`` reads (e.g. a
            :class:`~glmkit.data.captions.CaptionedSource` over a ``JsonlManifest``).
        naflex: the resize, at the evaluation budget.
        transform: record transform before the resize (e.g. ``PickCaption``); its ``rng`` for
            record ``i`` is seeded from ``(seed, i)``, so a record with several captions always
            gives the same one.
        batch_size: pairs per batch (the last batch may be smaller).
        limit: read only the first ``limit`` records (``None``: all).
        seed: seed of the transform's draws.
    """

    def __init__(
        self,
        source: Source,
        naflex: NaFlexResize,
        transform: Transform | None = None,
        batch_size: int = 16,
        limit: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None (every record), got {limit}")
        self.source = source
        self.naflex = naflex
        self.transform = transform
        self.batch_size = int(batch_size)
        self.limit = None if limit is None else int(limit)
        self.seed = int(seed)
        self.pairs = 0
        self.skipped: list[str] = []

    @property
    def num_records(self) -> int:
        """The records an iteration reads: the source's, or the first ``limit`` of them."""
        return len(self.source) if self.limit is None else min(self.limit, len(self.source))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.pairs, self.skipped = 0, []
        collate = PadCollate(("patches", "coords"), multiple=self.naflex.max_num_patches)
        pending: list[dict[str, Any]] = []
        for index in range(self.num_records):
            rng = np.random.default_rng([self.seed, index])
            try:
                record = self.source.read(index)
                if self.transform is not None:
                    record = self.transform(record, rng)
                sample = self.naflex(record, rng)
            except (BadImageError, BadSampleError) as exc:
                self.skipped.append(str(exc))
                continue
            pending.append({**sample, "index": index})
            if len(pending) == self.batch_size:
                self.pairs += len(pending)
                yield collate(pending)
                pending = []
        if pending:
            self.pairs += len(pending)
            yield collate(pending)

    def __repr__(self) -> str:
        return (
            f"PairsInOrder({self.source!r}, records={self.num_records}, batch_size={self.batch_size}, "
            f"max_num_patches={self.naflex.max_num_patches})"
        )


def evaluate_towers(
    image_tower: str | Path,
    text_tower: str | Path,
    data: pl.LightningDataModule | Iterable[Mapping[str, Any]],
    caption_key: str = "caption",
    class_names: list[str] | None = None,
    class_templates: Sequence[str] = ("{}",),
    retrieval_ks: Sequence[int] = (1, 5),
    accelerator: str = "auto",
    loss: str | Path | None = None,
) -> dict[str, float]:
    """Zero-shot evaluation of an exported pair of towers: the stage's own validation (retrieval
    R@K both ways and, with ``class_names``, zero-shot accuracy) over ``data``: a datamodule's
    validation pairs, or the batches of a loader (a ``DataLoader`` over :class:`PairsInOrder`),
    whose captions are in the field ``caption_key``. Returns ``{"i2t/R@1": ..., ...}``, and the
    sigmoid loss (``loss``) when ``loss`` names the pair's exported loss (its trained temperature and
    bias, :meth:`~glmkit.losses.siglip.SigLIPLoss.save_pretrained`)."""
    stage = Contrastive(
        load_tower(image_tower),
        load_tower(text_tower),
        **({"loss": load_tower(loss)} if loss is not None else {}),
        caption_key=caption_key,
        class_names=class_names,
        class_templates=list(class_templates),
        retrieval_ks=retrieval_ks,
    )
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    if isinstance(data, pl.LightningDataModule):
        trainer.validate(stage, datamodule=data, verbose=False)
    else:
        trainer.validate(stage, dataloaders=data, verbose=False)
    prefix = "val/"
    return {
        k[len(prefix) :]: float(v)
        for k, v in trainer.callback_metrics.items()
        if k.startswith(prefix) and (k != "val/loss" or loss is not None)
    }


__all__ = ["Contrastive", "PairsInOrder", "evaluate_towers", "load_tower"]
