"""Data: record sources, the weighted mixture, transforms, collates, masking, resumable loading.

Sources yield records (dicts), transforms map (record, rng) -> record, a collate batches them, and
the weighted mixture with its resumable, rank-sharded loader serves any record.

Every name here is imported on first access (PEP 562), so ``glmkit.data.decode`` and
``glmkit.data.fonts`` serve the tool chain and eval without loading torch or Lightning, while
``glmkit.data.MixtureDataModule`` (Lightning) and the torch-based pieces load when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "COLLATES": "glmkit.data.collate",
    "Collate": "glmkit.data.collate",
    "PackCollate": "glmkit.data.collate",
    "PadCollate": "glmkit.data.collate",
    "StackCollate": "glmkit.data.collate",
    "BadImageError": "glmkit.data.decode",
    "decode_image": "glmkit.data.decode",
    "ResumableDataLoader": "glmkit.data.loader",
    "ResumableSampler": "glmkit.data.loader",
    "MASKINGS": "glmkit.data.masking",
    "BlockMask": "glmkit.data.masking",
    "DrawMask": "glmkit.data.masking",
    "MaskGenerator": "glmkit.data.masking",
    "RandomMask": "glmkit.data.masking",
    "Mixture": "glmkit.data.mixture",
    "normalize_weights": "glmkit.data.mixture",
    "ProceduralImages": "glmkit.data.procedural",
    "expand_urls": "glmkit.data.shard_paths",
    "DATASETS": "glmkit.data.sources",
    "BadSampleError": "glmkit.data.sources",
    "ImageFolder": "glmkit.data.sources",
    "ImageSource": "glmkit.data.sources",
    "JsonlManifest": "glmkit.data.sources",
    "Source": "glmkit.data.sources",
    "TarShards": "glmkit.data.sources",
    "TRANSFORMS": "glmkit.data.transforms",
    "Compose": "glmkit.data.transforms",
    "EvalTransform": "glmkit.data.transforms",
    "ImageTransform": "glmkit.data.transforms",
    "ToTensor": "glmkit.data.transforms",
    "TrainTransform": "glmkit.data.transforms",
    "Transform": "glmkit.data.transforms",
    "to_tensor": "glmkit.data.transforms",
    "DATAMODULES": "glmkit.data.datamodule",
    "MixtureDataModule": "glmkit.data.datamodule",
    "ShardedDataModule": "glmkit.data.datamodule",
    "NaFlexBatches": "glmkit.data.naflex",
    "NaFlexRandomResizedCrop": "glmkit.data.naflex",
    "NaFlexResize": "glmkit.data.naflex",
    "NaFlexSchedule": "glmkit.data.naflex",
    "NaFlexStep": "glmkit.data.naflex",
    "encoder_inputs": "glmkit.data.naflex",
    "naflex_grid": "glmkit.data.naflex",
    "naflex_loader": "glmkit.data.naflex",
    "naflex_size": "glmkit.data.naflex",
    "unwrap_batch": "glmkit.data.naflex",
    "CostModel": "glmkit.data.packing",
    "PackItem": "glmkit.data.packing",
    "PackingPlan": "glmkit.data.packing",
    "microbatch_balance": "glmkit.data.packing",
    "plan_microbatches": "glmkit.data.packing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'glmkit.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
