"""Design2Code's visual score: CLIP ViT-B/32 similarity of the two screenshots with their text
painted out and squashed to squares.

Reference: Design2Code (NoviScl/Design2Code) ``metrics/visual_score.py``,
``calculate_clip_similarity_with_blocks`` with ``rescale_and_mask`` and
``mask_bounding_boxes_with_inpainting``:

1. when a page has text blocks, each block's box (x, y, w, h as fractions of the screenshot) is
   painted white in a mask at ``int(fraction * size)`` pixels and the screenshot is inpainted there
   with OpenCV's Telea method, radius 3 (``cv2.inpaint(..., 3, cv2.INPAINT_TELEA)``);
2. the image is resized, **not** cropped, to a square of its shorter side (PIL ``LANCZOS``);
3. CLIP's preprocessing and image encoder (OpenAI ViT-B/32) embed it; the score is the cosine of
   the two normalised embeddings.

The model is loaded with open_clip (``pip install open_clip_torch``; inpainting needs
``opencv-python-headless``) from a hub id (default ``hf-hub:timm/vit_base_patch32_clip_224.openai``,
the OpenAI weights) or a local directory holding ``open_clip_config.json`` and the weights.
Precision: Design2Code runs OpenAI's ``clip`` package, whose ``clip.load`` keeps the weights in
float16 on a GPU (layer norms in float32) and in float32 on a CPU. glmkit runs float32 by default;
``precision="fp16"`` builds the model as the GPU run does (open_clip's ``precision="fp16"``: weights
in float16, layer norms in float32). Measured on 45 pairs of real page screenshots with a full-size
ViT-B/32 (random weights: the trained ones cannot be fetched offline) the two precisions differ by
2.4e-4 in the cosine on average and 6.6e-4 at most (``docs/eval.md``, "CLIP precision"), below the
third decimal that Design2Code reports; trained weights, with their larger activations, may differ
more, which was not measured.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

DEFAULT_CLIP_MODEL = "hf-hub:timm/vit_base_patch32_clip_224.openai"
_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

Box = Sequence[float]
Precision = Literal["fp32", "fp16"]


def open_clip_name(model: str) -> str:
    """open_clip's model name for ``model``: a local directory becomes ``local-dir:<path>``."""
    if model.startswith(("hf-hub:", "local-dir:")):
        return model
    if Path(model).is_dir():
        return f"local-dir:{model}"
    return model


def clip_unavailable_reason(model: str = DEFAULT_CLIP_MODEL, need_inpainting: bool = True) -> str | None:
    """Why the CLIP visual score cannot run offline now (None when it can): a missing package, or
    weights neither in a local directory nor in the Hugging Face cache (nothing is downloaded)."""
    if importlib.util.find_spec("open_clip") is None:
        return "open_clip is not installed (pip install open_clip_torch)"
    if need_inpainting and importlib.util.find_spec("cv2") is None:
        return "OpenCV is not installed, needed for the text inpainting (pip install opencv-python-headless)"
    name = open_clip_name(model)
    if name.startswith("local-dir:"):
        folder = Path(name.removeprefix("local-dir:"))
        if not (folder / "open_clip_config.json").is_file():
            return f"{folder} holds no open_clip_config.json"
        if not any((folder / f).is_file() for f in _WEIGHT_FILES):
            return f"{folder} holds none of {', '.join(_WEIGHT_FILES)}"
        return None
    if name.startswith("hf-hub:"):
        from huggingface_hub import try_to_load_from_cache

        repo = name.removeprefix("hf-hub:")
        config = try_to_load_from_cache(repo, "open_clip_config.json")
        weights = [try_to_load_from_cache(repo, f) for f in _WEIGHT_FILES]
        if not isinstance(config, str) or not any(isinstance(w, str) for w in weights):
            return f"the weights of {repo} are not in the Hugging Face cache"
        return None
    return f"{model!r} is neither a hub id (hf-hub:org/name) nor a local directory"


def inpaint_boxes(image: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """Step 1: paint out ``boxes`` (fractions x, y, w, h) of an (H, W, 3) RGB image with Telea, radius 3."""
    import cv2

    height, width = image.shape[:2]
    mask = np.zeros((height, width), dtype=np.uint8)
    for x_ratio, y_ratio, w_ratio, h_ratio in boxes:
        x, y = int(x_ratio * width), int(y_ratio * height)
        w, h = int(w_ratio * width), int(h_ratio * height)
        mask[y : y + h, x : x + w] = 255
    bgr = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2BGR)
    return cv2.cvtColor(cv2.inpaint(bgr, mask, 3, cv2.INPAINT_TELEA), cv2.COLOR_BGR2RGB)


def rescale_and_mask(image: np.ndarray, boxes: Sequence[Box]) -> Any:
    """Steps 1-2: the inpainted (when there are boxes) screenshot squashed to a square PIL image."""
    from PIL import Image

    array = inpaint_boxes(image, boxes) if len(boxes) > 0 else np.asarray(image)[..., :3]
    img = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8))
    side = min(img.size)
    return img.resize((side, side), Image.LANCZOS)


class ClipVisualScore:
    """CLIP similarity of two screenshots after Design2Code's masking (see the module docstring).

    Args:
        model: open_clip hub id (``hf-hub:org/name``) or a local directory.
        device: where the encoder runs.
        precision: ``"fp32"`` or ``"fp16"`` (the reference's precision on a GPU; see the module docstring).
    """

    def __init__(
        self, model: str = DEFAULT_CLIP_MODEL, device: str = "cpu", precision: Precision = "fp32"
    ) -> None:
        import open_clip
        import torch

        if precision not in ("fp32", "fp16"):
            raise ValueError(f"CLIP precision={precision!r}; valid: fp32, fp16")
        self.model_name = model
        self.precision = precision
        self.device = torch.device(device)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            open_clip_name(model), device=self.device, precision=precision
        )
        self.model.eval()
        self.dtype = torch.float16 if precision == "fp16" else torch.float32

    def embed(self, image: np.ndarray, boxes: Sequence[Box]) -> Any:
        """The normalised CLIP embedding of one masked, squared screenshot."""
        import torch

        pixels = self.preprocess(rescale_and_mask(image, boxes)).unsqueeze(0).to(self.device, self.dtype)
        with torch.no_grad():
            features = self.model.encode_image(pixels)
        return features / features.norm(dim=-1, keepdim=True)  # in the model's precision, as the reference

    def __call__(
        self, image1: np.ndarray, image2: np.ndarray, boxes1: Sequence[Box], boxes2: Sequence[Box]
    ) -> float:
        """Cosine similarity of the two masked screenshots' embeddings."""
        return float((self.embed(image1, boxes1) @ self.embed(image2, boxes2).T).item())
