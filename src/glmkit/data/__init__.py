"""Data: image sources, the weighted stage-1 mixture, transforms, masking, resumable loading.

Importing this package registers the image sources (``registry("datasets")``) and the mask
generators (``registry("maskings")``).
"""

from glmkit.data.datamodule import ImageDataModule
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
