"""The VLM processor: interleaved text, images and videos -> token ids and NaFlex patches (GLM-4.5V layout).

GLM-4.5V and GLM-5V-Turbo (arXiv 2604.26752, sections 2.1-2.2) read images at their native aspect
ratio and video as frames sampled at a fixed rate. :class:`VLMProcessor` follows the transformers
processor convention (``processor(text=..., images=..., videos=...)``, ``apply_chat_template``,
``batch_decode``, ``save_pretrained`` / ``from_pretrained``) with GLM-V's conventions:

* **Special tokens** (added to the tokenizer when missing): ``<|begin_of_image|>``, ``<|image|>``,
  ``<|end_of_image|>``, ``<|begin_of_video|>``, ``<|video|>``, ``<|end_of_video|>``,
  ``<|begin_of_box|>``, ``<|end_of_box|>`` and the role tokens ``<|system|>``, ``<|user|>``,
  ``<|assistant|>``, ``<|observation|>``.
* **Images**: the text holds one ``<|image|>`` marker per image (the chat template writes
  ``<|begin_of_image|><|image|><|end_of_image|>``). Each image is resized keeping its aspect ratio
  to a grid of ``h x w`` patches with ``h * w <= max_num_patches`` and ``h``, ``w`` multiples of
  ``merge_size`` (the NaFlex rule of :func:`glmkit.data.naflex.naflex_grid` on ``merge_size``
  blocks), and its marker becomes ``h * w / merge_size**2`` ``<|image|>`` placeholders: one per
  merged visual token of the projector (:mod:`glmkit.models.projectors`).
* **Videos**: frames sampled at ``video_fps`` (at most ``max_video_frames``, evenly spread if the
  video is longer; an odd count is padded by repeating the last frame, as GLM-4.xV does), all
  resized to one grid under ``video_max_num_patches`` per frame. Consecutive frame pairs are fused
  into one token grid by the projector (``temporal_patch_size = 2``), so ``<|video|>`` expands, as
  in GLM-4.1V's processor, to one ``<|begin_of_image|>`` + placeholders + ``<|end_of_image|>`` +
  time marker per pair (the time of the pair's first frame, in seconds).
* **Boxes and points** are integers in ``0..1000`` of the image width and height
  (:func:`box_to_norm1000`, :func:`box_from_norm1000`, :func:`point_to_norm1000`,
  :func:`point_from_norm1000`, from :mod:`glmkit.coords`), answers written as
  ``<|begin_of_box|>[[x1,y1,x2,y2]]<|end_of_box|>`` (:func:`format_boxes`).

The output (a transformers ``BatchFeature``; :meth:`VLMProcessor.__call__`) is what
:meth:`glmkit.models.vlm.VisionLanguageModel.forward` takes.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from glmkit.coords import box_from_norm1000, box_to_norm1000, point_from_norm1000, point_to_norm1000
from glmkit.data.decode import decode_image
from glmkit.data.naflex import naflex_grid
from glmkit.data.transforms import to_tensor
from glmkit.models.teachers.base import IMAGENET_MEAN, IMAGENET_STD
from glmkit.nn.patch_embed import patchify

BEGIN_IMAGE, IMAGE_TOKEN, END_IMAGE = "<|begin_of_image|>", "<|image|>", "<|end_of_image|>"
BEGIN_VIDEO, VIDEO_TOKEN, END_VIDEO = "<|begin_of_video|>", "<|video|>", "<|end_of_video|>"
BEGIN_BOX, END_BOX = "<|begin_of_box|>", "<|end_of_box|>"
ROLE_TOKENS: tuple[str, ...] = ("<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")
SPECIAL_TOKENS: tuple[str, ...] = (
    BEGIN_IMAGE,
    IMAGE_TOKEN,
    END_IMAGE,
    BEGIN_VIDEO,
    VIDEO_TOKEN,
    END_VIDEO,
    BEGIN_BOX,
    END_BOX,
    *ROLE_TOKENS,
)
CONFIG_NAME = "vlm_processor_config.json"

# GLM-4.5V's chat layout (``<|role|>\ncontent``, media as begin/placeholder/end, tool results as
# ``<|observation|>`` turns), without GLM's ``[gMASK]<sop>`` prefix, which only its tokenizer has.
GLMV_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set role = 'observation' if message['role'] == 'tool' else message['role'] -%}"
    "{{- '<|' ~ role ~ '|>\\n' -}}"
    "{%- if role == 'observation' -%}{{- '<tool_response>\\n' -}}{%- endif -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- elif message['content'] is not none -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- elif part['type'] in ('image', 'image_url') -%}{{- '<|begin_of_image|><|image|><|end_of_image|>' -}}"
    "{%- elif part['type'] == 'video' -%}{{- '<|begin_of_video|><|video|><|end_of_video|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- if role == 'observation' -%}{{- '\\n</tool_response>' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)

_MARKER = re.compile(f"({re.escape(IMAGE_TOKEN)}|{re.escape(VIDEO_TOKEN)})")


# ---------------------------------------------------------------------------------------- boxes
def format_boxes(boxes: Sequence[Sequence[float]]) -> str:
    """GLM-V's answer form of 0-1000 boxes: ``<|begin_of_box|>[[x1,y1,x2,y2],...]<|end_of_box|>``."""
    body = ",".join("[" + ",".join(str(int(round(v))) for v in box) + "]" for box in boxes)
    return f"{BEGIN_BOX}[{body}]{END_BOX}"


# ---------------------------------------------------------------------------------------- video
@dataclass
class Video:
    """A video as decoded frames and their rate.

    Attributes:
        frames: PIL images, or an array / tensor ``[F, H, W, C]`` (uint8) or ``[F, C, H, W]``
            (float in ``[0, 1]`` or uint8).
        fps: frames per second of ``frames``; None means they are already sampled at the
            processor's ``video_fps``.
    """

    frames: Sequence[Image.Image] | np.ndarray | Tensor
    fps: float | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def frame(self, index: int) -> Image.Image:
        """Frame ``index`` as an RGB PIL image."""
        frame = self.frames[index]
        if isinstance(frame, Image.Image):
            return frame.convert("RGB") if frame.mode != "RGB" else frame
        array = frame.detach().cpu().numpy() if isinstance(frame, Tensor) else np.asarray(frame)
        if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
            array = array.transpose(1, 2, 0)  # C H W -> H W C
        if array.dtype != np.uint8:
            array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if array.ndim != 3 or array.shape[-1] not in (1, 3):
            raise ValueError(
                f"video frame {index} has shape {list(array.shape)}; expected H, W, C with C 1 or 3"
            )
        return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).convert("RGB")


def sample_frame_indices(
    num_frames: int, fps: float, sample_fps: float, max_frames: int, temporal_patch_size: int = 2
) -> tuple[list[int], list[float]]:
    """Frames to keep from a video of ``num_frames`` at ``fps``, and their times in seconds.

    One frame every ``1 / sample_fps`` seconds from 0 (the frame shown at that time); a video
    longer than ``max_frames / sample_fps`` gets ``max_frames`` evenly spread frames instead. The
    count is padded to a multiple of ``temporal_patch_size`` by repeating the last frame
    (GLM-4.xV's temporal patch fuses frame pairs).
    """
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    if not (fps > 0 and sample_fps > 0 and max_frames >= 1):
        raise ValueError(
            f"need fps > 0, sample_fps > 0, max_frames >= 1; got {fps}, {sample_fps}, {max_frames}"
        )
    duration = num_frames / fps
    count = max(1, math.ceil(duration * sample_fps - 1e-9))
    if count > max_frames:
        times = [i * duration / max_frames for i in range(max_frames)]
    else:
        times = [i / sample_fps for i in range(count)]
    indices = [min(int(t * fps + 1e-6), num_frames - 1) for t in times]
    while len(indices) % temporal_patch_size:
        indices.append(indices[-1])
        times.append(times[-1])
    return indices, times


# ------------------------------------------------------------------------------------ processor
@dataclass
class _Item:
    """One image or video of a sample, preprocessed."""

    patches: Tensor  # t*h*w, P*P*C
    coords: Tensor  # t*h*w, 2
    grid: tuple[int, int, int]  # t, h, w
    times: list[float] | None  # per frame, videos only


class VLMProcessor:
    """Tokenizer plus image and video preprocessing for :class:`~glmkit.models.vlm.VisionLanguageModel`.

    Args:
        tokenizer: a transformers tokenizer or a hub id / directory to load one from; the special
            tokens (:data:`SPECIAL_TOKENS`) are added when missing, and a pad token (the EOS token,
            else ``<|endoftext|>``) when there is none. The LLM's embeddings must then cover
            ``len(tokenizer)`` (:meth:`model_kwargs`).
        patch_size: the encoder's patch side ``P`` in pixels.
        merge_size: the projector's spatial merge ``m``.
        temporal_patch_size: the projector's temporal patch ``T``.
        max_num_patches: patch budget of an image (GLM-4.5V allows large images; 1024 patches of
            16 px is about 512x512).
        video_max_num_patches: patch budget of each video frame.
        max_upscale: largest scale applied to an image (1.0 keeps small images small); None lets
            every image fill its budget.
        video_fps: rate at which video frames are sampled (GLM-4.xV samples at 2 fps).
        max_video_frames: most frames kept from one video.
        image_mean, image_std: per-channel normalisation of pixels in ``[0, 1]`` (CogViT's stage 1
            uses ImageNet's).
        interpolation: ``bicubic``, ``bilinear``, ``lanczos`` or ``nearest``.
        chat_template: Jinja template of :meth:`apply_chat_template` (GLM-V layout by default).
        time_decimals: decimals of video time markers (0: whole seconds, as GLM-4.1V writes them).
        padding_side: ``right`` (training) or ``left`` (batched generation).
    """

    def __init__(
        self,
        tokenizer: Any,
        patch_size: int = 16,
        merge_size: int = 2,
        temporal_patch_size: int = 2,
        max_num_patches: int = 1024,
        video_max_num_patches: int = 256,
        max_upscale: float | None = None,
        video_fps: float = 2.0,
        max_video_frames: int = 32,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        interpolation: str = "bicubic",
        chat_template: str = GLMV_CHAT_TEMPLATE,
        time_decimals: int = 0,
        padding_side: str = "right",
    ) -> None:
        if isinstance(tokenizer, str | Path):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        for name, value in (("patch_size", patch_size), ("merge_size", merge_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if temporal_patch_size < 1:
            raise ValueError(f"temporal_patch_size must be >= 1, got {temporal_patch_size}")
        for name, budget in (
            ("max_num_patches", max_num_patches),
            ("video_max_num_patches", video_max_num_patches),
        ):
            if budget < merge_size**2:
                raise ValueError(
                    f"{name}={budget} is below one merged token ({merge_size}x{merge_size} = {merge_size**2} patches)"
                )
        if len(image_mean) != 3 or len(image_std) != 3 or any(s <= 0 for s in image_std):
            raise ValueError(
                f"image_mean and image_std need 3 values (std > 0), got {image_mean}, {image_std}"
            )
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        try:
            self._resample = Image.Resampling[interpolation.upper()]
        except KeyError:
            raise ValueError(
                f"unknown interpolation {interpolation!r}; valid: bicubic, bilinear, lanczos, nearest"
            ) from None
        self.tokenizer = tokenizer
        self.patch_size = patch_size
        self.merge_size = merge_size
        self.temporal_patch_size = temporal_patch_size
        self.max_num_patches = max_num_patches
        self.video_max_num_patches = video_max_num_patches
        self.max_upscale = max_upscale
        self.video_fps = float(video_fps)
        self.max_video_frames = max_video_frames
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.interpolation = interpolation
        self.chat_template = chat_template
        self.time_decimals = time_decimals
        self.padding_side = padding_side
        self._add_special_tokens()

    # ------------------------------------------------------------------ tokenizer
    def _add_special_tokens(self) -> None:
        vocab = self.tokenizer.get_vocab()
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            self.tokenizer.add_tokens(missing, special_tokens=True)
        if self.tokenizer.pad_token is None:
            pad = self.tokenizer.eos_token or "<|endoftext|>"
            self.tokenizer.add_special_tokens({"pad_token": pad})
        for token in SPECIAL_TOKENS:
            ids = self.tokenizer.encode(token, add_special_tokens=False)
            if len(ids) != 1:
                raise ValueError(f"the tokenizer splits {token!r} into {ids}; it must be a single token")

    def token_id(self, token: str) -> int:
        """The id of one special token."""
        return int(self.tokenizer.convert_tokens_to_ids(token))

    @property
    def image_token_id(self) -> int:
        """Id of ``<|image|>``, the placeholder the visual embeddings replace."""
        return self.token_id(IMAGE_TOKEN)

    def model_kwargs(self) -> dict[str, int]:
        """What :class:`~glmkit.models.vlm.VisionLanguageModel` needs from the tokenizer: ``image_token_id``, ``vocab_size``."""
        return {"image_token_id": self.image_token_id, "vocab_size": len(self.tokenizer)}

    def stop_token_ids(self) -> list[int]:
        """Ids that end an assistant turn: EOS and GLM's ``<|user|>`` and ``<|observation|>``."""
        ids = {self.token_id("<|user|>"), self.token_id("<|observation|>")}
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return sorted(ids)

    # ------------------------------------------------------------------ images and videos
    def image_grid(self, width: int, height: int, max_num_patches: int | None = None) -> tuple[int, int]:
        """Patch grid ``(h, w)`` of an image of ``width x height`` pixels: multiples of ``merge_size``, aspect kept.

        The NaFlex rule (:func:`glmkit.data.naflex.naflex_grid`) applied to ``merge_size x
        merge_size`` blocks of patches with a budget of ``max_num_patches / merge_size**2`` blocks.
        """
        budget = self.max_num_patches if max_num_patches is None else max_num_patches
        m = self.merge_size
        rows, cols = naflex_grid(height, width, self.patch_size * m, budget // (m * m), self.max_upscale)
        return rows * m, cols * m

    def num_image_tokens(self, width: int, height: int) -> int:
        """Placeholders (merged visual tokens) of an image of ``width x height`` pixels."""
        h, w = self.image_grid(width, height)
        return h * w // self.merge_size**2

    def _patches(self, image: Image.Image, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
        h, w = grid
        image = image.convert("RGB") if image.mode != "RGB" else image
        resized = image.resize((w * self.patch_size, h * self.patch_size), self._resample)
        pixels = to_tensor(resized)  # 3, H, W in [0, 1]
        mean = torch.tensor(self.image_mean).view(3, 1, 1)
        std = torch.tensor(self.image_std).view(3, 1, 1)
        cut = patchify(((pixels - mean) / std)[None], self.patch_size)
        return cut.patches[0], cut.coords[0].clone()  # h*w, P*P*C ; h*w, 2 (y, x) row-major

    def preprocess_image(self, image: Image.Image) -> _Item:
        """Resize an image to its grid and cut it into normalised patches."""
        if not isinstance(image, Image.Image):
            raise TypeError(f"images must be PIL images, got {type(image).__name__}")
        grid = self.image_grid(image.width, image.height)
        patches, coords = self._patches(image, grid)
        return _Item(patches, coords, (1, *grid), None)

    def preprocess_video(self, video: Video | Sequence[Image.Image]) -> _Item:
        """Sample a video's frames, resize them to one grid and cut them into patches."""
        if not isinstance(video, Video):
            video = Video(list(video), None)
        fps = video.fps if video.fps is not None else self.video_fps
        indices, times = sample_frame_indices(
            len(video), fps, self.video_fps, self.max_video_frames, self.temporal_patch_size
        )
        first = video.frame(indices[0])
        grid = self.image_grid(first.width, first.height, self.video_max_num_patches)
        cut = [self._patches(video.frame(i), grid) for i in indices]
        patches = torch.cat([p for p, _ in cut])
        coords = torch.cat([c for _, c in cut])
        return _Item(patches, coords, (len(indices), *grid), times)

    def _time_marker(self, seconds: float) -> str:
        if self.time_decimals <= 0:
            return str(int(seconds))
        return f"{seconds:.{self.time_decimals}f}"

    def expand_image(self, grid: tuple[int, int, int]) -> str:
        """The placeholders of one image (its ``<|image|>`` marker is replaced by this)."""
        _, h, w = grid
        return IMAGE_TOKEN * (h * w // self.merge_size**2)

    def expand_video(self, grid: tuple[int, int, int], times: Sequence[float]) -> str:
        """One ``<|begin_of_image|>placeholders<|end_of_image|>time`` group per fused frame pair."""
        t, h, w = grid
        per_group = IMAGE_TOKEN * (h * w // self.merge_size**2)
        return "".join(
            f"{BEGIN_IMAGE}{per_group}{END_IMAGE}{self._time_marker(times[g])}"
            for g in range(0, t, self.temporal_patch_size)
        )

    # ------------------------------------------------------------------ call
    def __call__(
        self,
        text: str | Sequence[str],
        images: Sequence[Any] | None = None,
        videos: Sequence[Any] | None = None,
        *,
        padding: bool | str = True,
        padding_side: str | None = None,
        return_tensors: str = "pt",
        add_special_tokens: bool = False,
        **tokenizer_kwargs: Any,
    ) -> Any:
        """Tokenize a batch with its images and videos.

        Args:
            text: one string or one per sample; each ``<|image|>`` / ``<|video|>`` marker takes the
                sample's next image / video.
            images: a flat list consumed by the markers in order (the transformers convention), or
                one list per sample (``[]`` for a text-only sample).
            videos: as ``images``; each a :class:`Video` or a list of frames already sampled at
                ``video_fps``.
            padding: tokenizer padding (True pads to the longest sample).
            padding_side: ``left`` or ``right`` (default: the processor's).
            return_tensors: only ``"pt"``.
            add_special_tokens: let the tokenizer add its BOS/EOS (the chat template writes what it needs).
            tokenizer_kwargs: passed to the tokenizer (truncation would cut placeholders: the
                model then reports the sample).

        Returns:
            a ``BatchFeature`` with ``input_ids [B, L]``, ``attention_mask [B, L]`` and, when any
            image or video is present, ``patches [N, P*P*C]`` (normalised, (ph, pw, C) order),
            ``coords [N, 2]`` (y, x), ``grid_thw [I, 3]`` (frames, rows, columns of each item in
            order of appearance) and ``visual_batch_index [I]`` (the sample of each item).
        """
        from transformers import BatchFeature

        if return_tensors != "pt":
            raise ValueError(
                f"VLMProcessor returns PyTorch tensors only (return_tensors='pt'), got {return_tensors!r}"
            )
        texts = [text] if isinstance(text, str) else list(text)
        per_sample_images = self._per_sample(images, texts, IMAGE_TOKEN, "images")
        per_sample_videos = self._per_sample(videos, texts, VIDEO_TOKEN, "videos")
        expanded: list[str] = []
        items: list[_Item] = []
        owners: list[int] = []
        expected: list[int] = []
        for b, sample_text in enumerate(texts):
            image_queue = list(per_sample_images[b])
            video_queue = list(per_sample_videos[b])
            pieces: list[str] = []
            placeholders = 0
            for piece in _MARKER.split(sample_text):
                if piece == IMAGE_TOKEN:
                    item = self.preprocess_image(image_queue.pop(0))
                    pieces.append(self.expand_image(item.grid))
                elif piece == VIDEO_TOKEN:
                    item = self.preprocess_video(video_queue.pop(0))
                    pieces.append(self.expand_video(item.grid, item.times or []))
                else:
                    pieces.append(piece)
                    continue
                items.append(item)
                owners.append(b)
                t, h, w = item.grid
                placeholders += -(-t // self.temporal_patch_size) * h * w // self.merge_size**2
            expanded.append("".join(pieces))
            expected.append(placeholders)
        encoded = self.tokenizer(
            expanded,
            padding=padding,
            padding_side=padding_side or self.padding_side,
            return_tensors="pt",
            add_special_tokens=add_special_tokens,
            **tokenizer_kwargs,
        )
        data: dict[str, Any] = {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
        }
        counts = (data["input_ids"] == self.image_token_id).sum(dim=1).tolist()
        for b, (got, want) in enumerate(zip(counts, expected, strict=True)):
            if got != want:
                raise ValueError(
                    f"sample {b}: {got} <|image|> placeholders after tokenization, expected {want} for its "
                    "images and videos (was the text truncated, or does it contain literal <|image|> tokens?)"
                )
        if items:
            data["patches"] = torch.cat([it.patches for it in items])
            data["coords"] = torch.cat([it.coords for it in items])
            data["grid_thw"] = torch.tensor([it.grid for it in items], dtype=torch.long)
            data["visual_batch_index"] = torch.tensor(owners, dtype=torch.long)
        return BatchFeature(data=data)

    def _per_sample(
        self, media: Sequence[Any] | None, texts: list[str], marker: str, name: str
    ) -> list[list[Any]]:
        """Split ``media`` by sample following the markers; a count that does not match names the sample."""
        wanted = [t.count(marker) for t in texts]
        media = [] if media is None else list(media)
        # Per-sample lists hold the sample's items; a video may itself be a list of frames.
        nested = bool(media) and all(
            isinstance(m, list | tuple) and (marker == IMAGE_TOKEN or not _is_video(m)) for m in media
        )
        if nested:
            if len(media) != len(texts):
                raise ValueError(f"{name}: got {len(media)} per-sample lists for {len(texts)} texts")
            for b, (items, want) in enumerate(zip(media, wanted, strict=True)):
                if len(items) != want:
                    raise ValueError(
                        f"sample {b}: its text has {want} {marker} marker(s) but {len(items)} {name} were given"
                    )
            return [list(m) for m in media]
        if len(media) != sum(wanted):
            raise ValueError(
                f"the texts have {sum(wanted)} {marker} marker(s) (per sample: {wanted}) but {len(media)} "
                f"{name} were given"
            )
        out, start = [], 0
        for want in wanted:
            out.append(media[start : start + want])
            start += want
        return out

    # ------------------------------------------------------------------ chat
    def render_chat(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt text of one conversation (media as begin/marker/end tokens)."""
        return _compiled_template(self.chat_template).render(
            messages=list(messages), add_generation_prompt=add_generation_prompt
        )

    def extract_media(self, messages: Sequence[Mapping[str, Any]]) -> tuple[list[Image.Image], list[Any]]:
        """The images and videos of a conversation, in order of appearance.

        Image parts: ``{"type": "image", "image": PIL}`` (glmkit's canonical refs too),
        ``{"type": "image", "path": ...}`` or ``{"type": "image_url", "image_url": {"url": ...}}``
        with a data URL or a local path. Video parts: ``{"type": "video", "video": Video | frames}``.
        """
        images: list[Image.Image] = []
        videos: list[Any] = []
        for m, message in enumerate(messages):
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for p, part in enumerate(content):
                kind = part.get("type") if isinstance(part, Mapping) else None
                where = f"message {m}, part {p}"
                if kind == "image":
                    images.append(_load_image(part.get("image", part.get("path", part.get("url"))), where))
                elif kind == "image_url":
                    url = part.get("image_url")
                    images.append(_load_image(url.get("url") if isinstance(url, Mapping) else url, where))
                elif kind == "video":
                    if part.get("video") is None:
                        raise ValueError(f"{where}: a video part needs 'video' (a Video or a list of frames)")
                    videos.append(part["video"])
        return images, videos

    def apply_chat_template(
        self,
        conversation: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]],
        *,
        add_generation_prompt: bool = True,
        tokenize: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Render one conversation (or a batch) with :attr:`chat_template`.

        With ``tokenize=False`` returns the prompt string(s); with ``tokenize=True`` the
        processor's output for them, images and videos taken from the messages (``kwargs`` go to
        :meth:`__call__`).
        """
        batch = bool(conversation) and isinstance(conversation[0], list | tuple)
        conversations = list(conversation) if batch else [conversation]
        texts = [self.render_chat(c, add_generation_prompt) for c in conversations]
        if not tokenize:
            return texts if batch else texts[0]
        media = [self.extract_media(c) for c in conversations]
        return self(texts, images=[i for i, _ in media], videos=[v for _, v in media], **kwargs)

    def batch_decode(self, ids: Any, skip_special_tokens: bool = True, **kwargs: Any) -> list[str]:
        """The tokenizer's ``batch_decode``."""
        return self.tokenizer.batch_decode(ids, skip_special_tokens=skip_special_tokens, **kwargs)

    def decode(self, ids: Any, skip_special_tokens: bool = True, **kwargs: Any) -> str:
        """The tokenizer's ``decode``."""
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens, **kwargs)

    # ------------------------------------------------------------------ save / load
    def config(self) -> dict[str, Any]:
        """Every constructor argument but the tokenizer, JSON-serialisable."""
        return {
            "patch_size": self.patch_size,
            "merge_size": self.merge_size,
            "temporal_patch_size": self.temporal_patch_size,
            "max_num_patches": self.max_num_patches,
            "video_max_num_patches": self.video_max_num_patches,
            "max_upscale": self.max_upscale,
            "video_fps": self.video_fps,
            "max_video_frames": self.max_video_frames,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "interpolation": self.interpolation,
            "chat_template": self.chat_template,
            "time_decimals": self.time_decimals,
            "padding_side": self.padding_side,
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the tokenizer files and ``vlm_processor_config.json`` to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(directory))
        (directory / CONFIG_NAME).write_text(json.dumps(self.config(), indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides: Any) -> VLMProcessor:
        """Load what :meth:`save_pretrained` wrote (``overrides`` replace recorded settings)."""
        from transformers import AutoTokenizer

        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; save the processor with VLMProcessor.save_pretrained")
        config = {**json.loads(path.read_text()), **overrides}
        return cls(AutoTokenizer.from_pretrained(str(directory)), **config)


def _is_video(obj: Any) -> bool:
    """True for a :class:`Video`, a 4-D array or tensor, or a non-empty list of frames."""
    if isinstance(obj, Video):
        return True
    if isinstance(obj, np.ndarray | Tensor):
        return obj.ndim == 4
    return (
        isinstance(obj, list | tuple)
        and bool(obj)
        and all(
            isinstance(f, Image.Image) or (isinstance(f, np.ndarray | Tensor) and f.ndim == 3) for f in obj
        )
    )


@functools.lru_cache(maxsize=16)
def _compiled_template(template: str) -> Any:
    """``template`` compiled once, in a sandbox: compiling is nearly all of a render's cost (11 ms
    against 0.05 ms here), and every rollout, collate and teacher-forced batch renders one."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(template)


def _load_image(source: Any, where: str) -> Image.Image:
    """A PIL image from a PIL image, a path or a ``data:`` URL."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, str) and source.startswith("data:"):
        _, _, payload = source.partition(",")
        return decode_image(base64.b64decode(payload), where)
    if isinstance(source, str | Path):
        return decode_image(str(source), where)
    raise ValueError(
        f"{where}: cannot read an image from {type(source).__name__}; give a PIL image, a path or a data URL"
    )


__all__ = [
    "BEGIN_BOX",
    "BEGIN_IMAGE",
    "BEGIN_VIDEO",
    "END_BOX",
    "END_IMAGE",
    "END_VIDEO",
    "GLMV_CHAT_TEMPLATE",
    "IMAGE_TOKEN",
    "SPECIAL_TOKENS",
    "VIDEO_TOKEN",
    "VLMProcessor",
    "Video",
    "box_from_norm1000",
    "box_to_norm1000",
    "format_boxes",
    "point_from_norm1000",
    "point_to_norm1000",
    "sample_frame_indices",
]
