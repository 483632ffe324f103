"""Data: record sources, the weighted mixture, transforms, collates, masking, resumable loading.

Everything here imports without Lightning (the tool chain and eval use the decoders, fonts and
procedural scenes); the Lightning DataModules are imported on first access.

Sources yield records (dicts), transforms map (record, rng) -> record, a collate batches them, and
the weighted mixture with its resumable, rank-sharded loader serves any record.
"""

from glmkit.data.collate import COLLATES, Collate, PackCollate, PadCollate, StackCollate
from glmkit.data.decode import BadImageError, decode_image
from glmkit.data.loader import ResumableDataLoader, ResumableSampler
from glmkit.data.masking import MASKINGS, BlockMask, MaskGenerator, RandomMask
from glmkit.data.mixture import Mixture, normalize_weights
from glmkit.data.procedural import ProceduralImages
from glmkit.data.shard_paths import expand_urls
from glmkit.data.sources import (
    DATASETS,
    BadSampleError,
    ImageFolder,
    ImageSource,
    JsonlManifest,
    Source,
    TarShards,
)
from glmkit.data.transforms import (
    TRANSFORMS,
    Compose,
    EvalTransform,
    ImageTransform,
    ToTensor,
    TrainTransform,
    Transform,
    to_tensor,
)

__all__ = [
    "DATASETS",
    "MASKINGS",
    "BadImageError",
    "BlockMask",
    "EvalTransform",
    "COLLATES",
    "BadSampleError",
    "Collate",
    "Compose",
    "ImageTransform",
    "MixtureDataModule",
    "PackCollate",
    "PadCollate",
    "Source",
    "StackCollate",
    "ToTensor",
    "ImageFolder",
    "Mixture",
    "ImageSource",
    "JsonlManifest",
    "MaskGenerator",
    "ProceduralImages",
    "RandomMask",
    "ResumableDataLoader",
    "ResumableSampler",
    "TarShards",
    "TRANSFORMS",
    "TrainTransform",
    "Transform",
    "decode_image",
    "expand_urls",
    "normalize_weights",
    "to_tensor",
]


_LIGHTNING_EXPORTS = {"MixtureDataModule": "glmkit.data.datamodule", "DATAMODULES": "glmkit.data.datamodule"}


def __getattr__(name: str) -> object:
    # PEP 562: the DataModules need Lightning, so they are imported only when asked for.
    if name in _LIGHTNING_EXPORTS:
        import importlib

        return getattr(importlib.import_module(_LIGHTNING_EXPORTS[name]), name)
    raise AttributeError(f"module 'glmkit.data' has no attribute {name!r}")
