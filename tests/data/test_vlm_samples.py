"""Procedural and JSONL conversations and the collate that runs the VLM processor on them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from glmkit.data.decode import BadImageError
from glmkit.data.mixture import Mixture
from glmkit.data.sources import BadSampleError
from glmkit.data.vlm_samples import (
    IGNORE_INDEX,
    TASKS,
    JsonlConversations,
    ProceduralConversations,
    VLMChatCollate,
)
from tests.models.test_processor import tiny_processor


@pytest.fixture(scope="module")
def collate() -> VLMChatCollate:
    return VLMChatCollate(tiny_processor(), max_length=512)


def _sample(record: dict, source: str, index: int) -> dict:
    return {**record, "source": source, "index": index, "skipped": []}


@pytest.mark.parametrize("task", list(TASKS))
def test_each_task_draws_a_deterministic_conversation_of_its_modality(task: str) -> None:
    source = ProceduralConversations(task, size=50, seed=3)
    first, again = source.read(7)["messages"], source.read(7)["messages"]
    assert [m["role"] for m in first] == ["user", "assistant"]
    assert isinstance(first[1]["content"], str) and first[1]["content"]
    assert first[1]["content"] == again[1]["content"]
    parts = first[0]["content"]
    kinds = [p["type"] for p in parts] if isinstance(parts, list) else []
    modality = TASKS[task]
    assert ("image" in kinds) == (modality == "image")
    assert ("video" in kinds) == (modality == "video")
    if modality == "video":
        assert len(parts[0]["video"]) == 4
    if task == "grounding":
        box = re.fullmatch(
            r"<\|begin_of_box\|>\[\[(\d+),(\d+),(\d+),(\d+)\]\]<\|end_of_box\|>", first[1]["content"]
        )
        assert box and all(0 <= int(v) <= 1000 for v in box.groups())


def test_unknown_task_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid: caption"):
        ProceduralConversations("captions")


def test_collate_targets_only_the_assistant_turn_and_its_end(collate: VLMChatCollate) -> None:
    samples = [
        _sample(ProceduralConversations(task).read(i), task, i)
        for i, task in enumerate(("text", "counting", "video"))
    ]
    batch = collate(samples)
    processor = collate.processor
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["visual_batch_index"].tolist() == [1, 2]  # the text sample has no media
    assert batch["sample_ids"] == ["text#0", "counting#1", "video#2"]
    for b, sample in enumerate(samples):
        ids = batch["input_ids"][b][batch["labels"][b] != IGNORE_INDEX]
        decoded = processor.tokenizer.decode(ids[:-1]).replace(" ", "").strip()
        assert decoded == sample["messages"][1]["content"].replace(" ", "")
        assert int(ids[-1]) == processor.token_id("<|user|>")  # the model learns to stop
    image_positions = batch["input_ids"] == processor.image_token_id
    assert bool((batch["labels"][image_positions] == IGNORE_INDEX).all())


def test_a_too_long_sample_is_skipped_and_named(collate: VLMChatCollate) -> None:
    short = VLMChatCollate(collate.processor, max_length=100)
    long_text = {
        "messages": [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "ok"}]
    }
    batch = short(
        [_sample(ProceduralConversations("text").read(0), "text", 0), _sample(long_text, "chat", 5)]
    )
    assert batch["input_ids"].shape[0] == 1 and batch["sample_ids"] == ["text#0"]
    assert len(batch["skipped"]) == 1 and batch["skipped"][0].startswith("chat#5:")


def _manifest(tmp_path: Path) -> Path:
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "red.png")
    rows = [
        {
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]},
                {"role": "assistant", "content": "red"},
            ],
            "images": ["red.png"],
        },
        "not json",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "path": "missing.png"}, {"type": "text", "text": "?"}],
                },
                {"role": "assistant", "content": "x"},
            ]
        },
    ]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_conversations_read_images_and_name_bad_lines(tmp_path: Path, collate: VLMChatCollate) -> None:
    source = JsonlConversations(str(_manifest(tmp_path)))
    assert len(source) == 3
    record = source.read(0)
    assert isinstance(record["messages"][0]["content"][0]["image"], Image.Image)
    with pytest.raises(BadSampleError, match=r"chat.jsonl:2: not valid JSON"):
        source.read(1)
    with pytest.raises(BadImageError, match="missing.png"):
        source.read(2)
    batch = collate([_sample(record, "jsonl", 0)])
    assert batch["grid_thw"].shape == (1, 3)


def test_the_mixture_skips_counts_and_names_bad_jsonl_samples(
    tmp_path: Path, collate: VLMChatCollate
) -> None:
    mixture = Mixture({"jsonl": JsonlConversations(str(_manifest(tmp_path)))}, num_samples=12, seed=0)
    samples = [mixture[i] for i in range(12)]
    batch = collate(samples)
    assert batch["input_ids"].shape[0] == 12
    assert batch["skipped"] and all("chat.jsonl:" in s for s in batch["skipped"])
    assert torch.equal(batch["index"], torch.arange(12))
