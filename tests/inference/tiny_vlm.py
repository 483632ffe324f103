"""A tiny random VLM with MTP heads exported the way training exports it (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

from glmkit.stages.vlm_pretrain import VLMPretrain
from tests.models.test_processor import tiny_processor
from tests.models.test_vlm import make_vlm


def export_tiny_vlm(directory: Path, depths: int = 1, seed: int = 0) -> Path:
    """Write a random tiny Llama VLM with ``depths`` MTP layers and its processor to ``directory``.

    Written by :meth:`VLMPretrain.export`, the code the quickstart's ``ExportVLM`` runs, so loading
    it takes the path a user takes with a real export.
    """
    processor = tiny_processor()
    stage = VLMPretrain(make_vlm(processor, seed=seed), mtp_depths=depths)
    return stage.export(directory, processor=processor)
