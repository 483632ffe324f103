"""VLM pretraining / SFT with multimodal multi-token prediction (MMTP; GLM-5V-Turbo section 2.2).

The VLM (CogViT -> patch merger -> causal LM, :class:`~glmkit.models.vlm.VisionLanguageModel`)
reads a mixture of text-only, image-text and video-text conversations. On top of the next-token
head, D sequential DeepSeek-V3 MTP modules (:class:`~glmkit.models.mtp.MTPHeads`) predict
``t_{i+k+1}`` from the main model's output and the embedding of ``t_{i+k}``; at image positions
they read the ``mtp_image_input`` strategy (option 3, one shared learnable ``<|image|>`` vector,
by default). The loss is :class:`~glmkit.losses.mtp.MTPLoss`: next-token CE + ``lambda / D`` times
the sum of the MTP CEs, visual targets masked (DeepSeek-V3 eq. 25).

What trains is the VLM's business (its ``freeze`` / ``unfreeze`` / LoRA arguments: encoder frozen,
partly or fully trained); the MTP heads always train. :class:`ExportVLM` writes the trained VLM in
the transformers layout with the MTP layers under their published names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonargparse import lazy_instance
from torch import Tensor

from glmkit.losses.mtp import MTPLoss, TokenLoss, TokenLossOutput, sequence_ids
from glmkit.models.mtp import MTPCausalLM, MTPHeads
from glmkit.models.vlm import VisionLanguageModel
from glmkit.optim import MuonAdamW, OptimizerBuilder
from glmkit.stages.base import STAGES, Stage
from glmkit.stages.export import ExportVLM  # its home is stages/export.py; recipes name it here too

#: Batch keys the VLM reads (the processor's output); the collate's bookkeeping keys are left out.
VLM_KEYS = (
    "input_ids",
    "attention_mask",
    "patches",
    "coords",
    "grid_thw",
    "visual_batch_index",
    "sample_ids",
)


@STAGES.register("vlm_pretrain")
class VLMPretrain(Stage):
    """Pretraining / SFT of a VLM with D MTP depths.

    Args:
        vlm: the VLM; its ``freeze`` / ``unfreeze`` / LoRA arguments choose what trains.
        mtp_depths: ``D``, the number of MTP modules (0: next-token loss only, no heads).
        mtp_image_input: what the MTP heads read at image positions: ``image_token`` (option 3,
            the report's choice), ``visual`` (option 1) or ``mask`` (option 2).
        loss: the token-level loss (``MTPLoss(mtp_weight=lambda)``).
        optimization: optimizer and schedule over the trainable parameters.
        seed: seed of every random draw of a step (see :class:`~glmkit.stages.Stage`).

    A batch is :class:`~glmkit.data.vlm_samples.VLMChatCollate`'s output: the processor's fields
    and ``labels [B, T]`` (unshifted targets, -100 elsewhere).
    """

    def __init__(
        self,
        vlm: VisionLanguageModel,
        mtp_depths: int = 1,
        mtp_image_input: str = "image_token",
        loss: TokenLoss = lazy_instance(MTPLoss, mtp_weight=0.3),
        optimization: OptimizerBuilder = lazy_instance(MuonAdamW),
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(mtp_depths, int) or mtp_depths < 0:
            raise ValueError(f"mtp_depths (D) must be an int >= 0 (0 = no MTP), got {mtp_depths!r}")
        self.save_component_hparams(["vlm", "loss", "optimization"])
        self.vlm = vlm
        self.mtp = (
            MTPHeads(vlm.language_model, depths=mtp_depths, image_input=mtp_image_input)
            if mtp_depths > 0
            else None
        )
        self.loss = loss
        self.optimization = optimization
        self.seed = seed

    # ----------------------------------------------------------------------------------- pieces
    def mtp_model(self) -> MTPCausalLM:
        """The LLM and the MTP heads as one :class:`MTPCausalLM` (shared modules, nothing copied),
        for speculative decoding (:func:`glmkit.inference.generate`) and checkpoint export."""
        if self.mtp is None:
            raise ValueError("this stage has no MTP heads (mtp_depths=0)")
        return MTPCausalLM(self.vlm.language_model, heads=self.mtp)

    def compute_loss(self, batch: Mapping[str, Any]) -> TokenLossOutput:
        """Encode the media, run the LLM and the MTP heads, and take main + MTP losses."""
        inputs = self.vlm.llm_inputs(
            **{k: batch[k] for k in VLM_KEYS if k in batch}
        )  # visual embeddings placed
        out = self.vlm.language_model(**inputs.llm_kwargs(), use_cache=False, output_hidden_states=True)
        hidden = out.hidden_states[-1]  # B, T, D after the final norm (h^0)
        batch_size, length = inputs.input_ids.shape
        seq_ids = sequence_ids(
            batch_size, length, attention_mask=inputs.attention_mask, device=inputs.input_ids.device
        )
        mtp_logits: list[Tensor] = []
        if self.mtp is not None:
            mtp_hidden = self.mtp(
                hidden,
                inputs.inputs_embeds,
                image_mask=inputs.image_mask,
                position_ids=inputs.position_ids,
                attention_mask=inputs.attention_mask,
                sequence_ids=seq_ids,
            )
            mtp_logits = [self.vlm.lm_head(h) for h in mtp_hidden]  # D x [B, T, V]
        labels = batch["labels"]
        return self.loss(out.logits, mtp_logits, labels, image_mask=inputs.image_mask, sequence_ids=seq_ids)

    def _log_metrics(self, result: TokenLossOutput, prefix: str, size: int, **kwargs: Any) -> None:
        metrics = {f"{prefix}/{k}": v.float() for k, v in result.metrics.items() if not k.endswith("_tokens")}
        metrics[f"{prefix}/loss"] = result.loss.detach().float()
        self.log_dict(metrics, batch_size=size, **kwargs)

    # ------------------------------------------------------------------------------- lightning
    def on_fit_start(self) -> None:
        """Check that the data's processor and the VLM agree on the ``<|image|>`` id and the vocabulary."""
        datamodule = getattr(self.trainer, "datamodule", None)
        processor = getattr(getattr(datamodule, "collate", None), "processor", None)
        if processor is None:
            return
        kwargs = processor.model_kwargs()
        vocab = self.vlm.language_model.get_input_embeddings().num_embeddings
        if kwargs["image_token_id"] != self.vlm.image_token_id or kwargs["vocab_size"] > vocab:
            raise ValueError(
                f"the processor's tokenizer has image_token_id={kwargs['image_token_id']} and "
                f"{kwargs['vocab_size']} tokens, the VLM image_token_id={self.vlm.image_token_id} and {vocab} "
                f"embeddings; set model.init_args.vlm.init_args.image_token_id: {kwargs['image_token_id']} and "
                f"vocab_size: {kwargs['vocab_size']} in the recipe"
            )

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """Main + MTP loss; logs main loss, per-depth MTP loss and top-1 agreement."""
        result = self.compute_loss(batch)
        size = batch["input_ids"].shape[0]
        self._log_metrics(result, "train", size)
        self.log("loss", result.loss, prog_bar=True, logger=False, batch_size=size)
        return result.loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """The same losses on the validation draw."""
        self._log_metrics(self.compute_loss(batch), "val", batch["input_ids"].shape[0], sync_dist=True)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Validation's losses, logged under ``test/``."""
        self._log_metrics(self.compute_loss(batch), "test", batch["input_ids"].shape[0], sync_dist=True)

    def export(self, directory: str | Path, processor: Any = None) -> Path:
        """Write the VLM (transformers layout) with its MTP layers and, if given, the processor.

        Load it back with ``MTPCausalLM.from_pretrained(d)`` and
        ``VisionLanguageModel.from_pretrained(d, language_model=that.llm)``.
        """
        directory = Path(directory)
        self.vlm.save_pretrained(directory, processor=processor, save_language_model=self.mtp is None)
        if self.mtp is not None:
            self.mtp_model().save_pretrained(directory)
        return directory


__all__ = ["ExportVLM", "VLMPretrain"]
