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


def test_shape_captions_rejects_sizes_it_cannot_draw() -> None:
    with pytest.raises(ValueError, match=r"36 <= min_size <= max_size, got min_size=35"):
        ShapeCaptions(10, min_size=35, max_size=40)
    source = ShapeCaptions(300, seed=0, min_size=36, max_size=40)  # the smallest accepted size draws
    assert all(min(source.read(i)["image"].size) >= 36 for i in range(len(source)))


def test_pick_caption_draws_a_language_uniformly_then_a_caption() -> None:
    record = {"caption": {"en": ["a", "b", "c", "d", "e"], "zh": "一"}}
    for pick in (PickCaption(), PickCaption(languages=["en", "zh"])):
        zh = sum(pick(record, s)["caption"] == "一" for s in range(2000))
        assert 900 < zh < 1100  # half, not the one caption in six of a uniform draw over captions


def test_pick_caption_weights_are_checked_and_zero_weights_never_drawn() -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(
            ValueError, match=rf"weight of language 'zh' must be a finite number >= 0, got {bad}"
        ):
            PickCaption(languages=["en", "zh"], weights=[1.0, bad])
    with pytest.raises(ValueError, match="all language weights are 0"):
        PickCaption(languages=["en", "zh"], weights=[0, 0])
    pick = PickCaption(languages=["en", "zh"], weights=[1.0, 0.0])
    assert {pick({"caption": {"en": "a", "zh": "一"}}, s)["caption"] for s in range(20)} == {"a"}
    with pytest.raises(BadSampleError, match=r"no non-empty caption in languages \['en'\]"):
        pick({"caption": {"zh": "一"}}, 0)  # only a weight-0 language: skipped, not a crash


def _manifest(tmp_path: Path, captions: list) -> str:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"image": "a.png", "caption": c}) + "\n" for c in captions))
    return str(path)


def test_captioned_source_keeps_only_its_languages(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, [{"en": "a cat", "zh": "一只猫", "de": "eine Katze"}])
    source = CaptionedSource(JsonlManifest(manifest, fields=["caption"]), languages=["zh", "en"])
    assert source.read(0)["caption"] == {"zh": "一只猫", "en": "a cat"}
    zh = CaptionedSource(JsonlManifest(manifest, fields=["caption"]), languages=["zh"])
    mixture = Mixture({"pairs": zh}, transform=PickCaption(), num_samples=20)
    assert {mixture[i]["caption"] for i in range(20)} == {"一只猫"}
