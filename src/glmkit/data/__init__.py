"""Data: image sources, the weighted stage-1 mixture, transforms, masking, resumable loading.

Everything here imports without Lightning (the tool chain and eval use the decoders, fonts and
procedural scenes); the Lightning DataModules are imported on first access.

Importing this package registers the image sources (``registry("datasets")``) and the mask
generators (``registry("maskings")``).
"""

from glmkit.data.decode import BadImageError, decode_image
from glmkit.data.loader import ResumableDataLoader, ResumableSampler, collate_images
from glmkit.data.masking import MASKINGS, BlockMask, MaskGenerator, RandomMask
from glmkit.data.mixture import ImageMixture, normalize_weights
from glmkit.data.procedural import ProceduralImages
from glmkit.data.shard_paths import expand_urls
from glmkit.data.sources import DATASETS, ImageFolder, ImageSource, JsonlManifest, TarShards
from glmkit.data.transforms import EvalTransform, TrainTransform, to_tensor

__all__ = [
    "DATASETS",
    "MASKINGS",
    "BadImageError",
    "BlockMask",
    "EvalTransform",
    "ImageDataModule",
    "ImageFolder",
    "ImageMixture",
    "ImageSource",
    "JsonlManifest",
    "MaskGenerator",
    "ProceduralImages",
    "RandomMask",
    "ResumableDataLoader",
    "ResumableSampler",
    "TarShards",
    "TrainTransform",
    "collate_images",
    "decode_image",
    "expand_urls",
    "normalize_weights",
    "to_tensor",
]


_LIGHTNING_EXPORTS = {"ImageDataModule": "glmkit.data.datamodule"}


def __getattr__(name: str) -> object:
    # PEP 562: the DataModules need Lightning, so they are imported only when asked for.
    if name in _LIGHTNING_EXPORTS:
        import importlib

        return getattr(importlib.import_module(_LIGHTNING_EXPORTS[name]), name)
    raise AttributeError(f"module 'glmkit.data' has no attribute {name!r}")
