"""Image-caption sources: procedural pairs, caption checks, the seeded language pick."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from glmkit.data.captions import CaptionedSource, PickCaption, ShapeCaptions
from glmkit.data.mixture import Mixture
from glmkit.data.sources import BadSampleError, JsonlManifest


def test_shape_captions_deterministic_bilingual() -> None:
    source = ShapeCaptions(20, seed=3)
    a, b = source.read(5), source.read(5)
    assert a["caption"] == b["caption"] and a["image"].tobytes() == b["image"].tobytes()
    assert set(a["caption"]) == {"en", "zh"}
    colour = source.class_names[a["label"]]
    assert colour in a["caption"]["en"]
    assert any(w in a["caption"]["en"] for w in ("left", "middle", "right"))


def test_pick_caption_is_seeded_and_covers_languages() -> None:
    record = {"caption": {"en": "red circle", "zh": "红色圆形", "de": ""}}
    pick = PickCaption(languages=["en", "zh"])
    assert pick(record, 7)["caption"] == pick(record, 7)["caption"]
    assert {pick(record, s)["caption"] for s in range(30)} == {"red circle", "红色圆形"}
    with pytest.raises(BadSampleError):
        pick({"caption": {"en": " "}}, 0)


def test_missing_or_empty_caption_is_skipped_counted_named(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    lines = [
        {"image": "a.png", "caption": {"en": "a black square", "zh": "黑色正方形"}},
        {"image": "a.png", "caption": {"en": "", "zh": ""}},
        {"image": "a.png"},
    ]
    manifest = tmp_path / "pairs.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    source = CaptionedSource(JsonlManifest(str(manifest), fields=["caption"]))
    assert source.read(0)["caption"]["en"] == "a black square"
    with pytest.raises(BadSampleError, match="pairs.jsonl:2"):
        source.read(1)
    with pytest.raises(BadSampleError, match="pairs.jsonl:3"):
        source.read(2)
    mixture = Mixture({"pairs": source}, transform=PickCaption(), num_samples=30, seed=0)
    skipped = [s for i in range(30) for s in mixture[i]["skipped"]]
    assert skipped and all("pairs.jsonl:" in s for s in skipped)
    assert all(mixture[i]["caption"] in ("a black square", "黑色正方形") for i in range(30))
