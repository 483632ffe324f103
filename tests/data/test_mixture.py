import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from glmkit.data.mixture import Mixture, normalize_weights
from glmkit.data.procedural import ProceduralImages
from glmkit.data.sources import BadSampleError, ImageFolder, ImageSource, JsonlManifest, TarShards
from glmkit.data.transforms import ToTensor, TrainTransform
from tests.data._files import random_bytes, truncated_jpeg, write_image, write_shard


class Solid(ImageSource):
    """n tiny images whose pixel values encode (tag, index): cheap and easy to check."""

    def __init__(self, n: int, tag: int) -> None:
        self.n, self.tag = n, tag

    def __len__(self) -> int:
        return self.n

    def describe(self, index: int) -> str:
        return f"solid{self.tag}:{index}"

    def load(self, index: int) -> Image.Image:
        return Image.new("RGB", (4, 4), (self.tag, index % 256, index // 256))


def three_sources():
    return {"natural": Solid(1000, 1), "instruct": Solid(50, 2), "science": Solid(70, 3)}


GLM_WEIGHTS = {"natural": 0.8, "instruct": 0.1, "science": 0.1}


def test_quality_aware_proportions():
    mix = Mixture(three_sources(), {"natural": 8, "instruct": 1, "science": 1}, num_samples=4000)
    assert mix.weights == pytest.approx(GLM_WEIGHTS)
    counts = dict.fromkeys(GLM_WEIGHTS, 0)
    for i in range(len(mix)):
        counts[mix.choose(i)[0]] += 1
    # binomial std at n=4000: 0.0063 for p=0.8, 0.0047 for p=0.1; allow ~4 sigma
    assert {k: v / len(mix) for k, v in counts.items()} == pytest.approx(GLM_WEIGHTS, abs=0.025)


def test_samples_agree_with_choose_and_carry_their_source():
    mix = Mixture(three_sources(), GLM_WEIGHTS, ToTensor(), num_samples=300)
    seen = set()
    for i in range(300):
        sample = mix[i]
        name, index = mix.choose(i)
        assert sample["source"] == name and sample["index"] == i and sample["skipped"] == []
        assert sample["source_index"] == index  # the record's own index: two draws of it share it
        tag = {"natural": 1, "instruct": 2, "science": 3}[name]
        pixel = (sample["image"][:, 0, 0] * 255).round().long().tolist()
        assert pixel == [tag, index % 256, index // 256]
        seen.add(name)
    assert seen == set(GLM_WEIGHTS)


def test_pure_function_of_seed_epoch_index():
    sources = {
        "a": ProceduralImages(num_images=500, image_size=48),
        "b": ProceduralImages(50, seed=1, image_size=48),
    }
    make = lambda seed: Mixture(sources, {"a": 1, "b": 1}, TrainTransform(32), seed=seed, num_samples=50)  # noqa: E731
    mix, twin = make(0), make(0)
    forward = [mix[i]["image"] for i in range(20)]
    backward = [twin[i]["image"] for i in reversed(range(20))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward, strict=True))
    assert not torch.equal(forward[0], forward[1])
    assert not torch.equal(make(1)[0]["image"], forward[0])
    # the epoch changes the draw; an explicit (epoch, index) key equals set_epoch + index
    twin.set_epoch(3)
    assert torch.equal(twin[4]["image"], mix[(3, 4)]["image"])
    assert not torch.equal(twin[4]["image"], forward[4])
    # another stream with the same seed is independent
    other = Mixture(sources, {"a": 1, "b": 1}, TrainTransform(32), seed=0, num_samples=50, stream=1)
    assert not torch.equal(other[0]["image"], forward[0])


def test_none_weights_follow_source_sizes():
    weights = normalize_weights({"big": Solid(300, 1), "small": Solid(100, 2)}, None)
    assert weights == pytest.approx({"big": 0.75, "small": 0.25})


def test_zero_weight_source_is_never_drawn():
    mix = Mixture({"a": Solid(10, 1), "b": Solid(10, 2)}, {"a": 1.0, "b": 0.0}, num_samples=2000)
    assert {mix.choose(i)[0] for i in range(2000)} == {"a"}


@pytest.mark.parametrize(
    "weights, message",
    [
        (
            {"natural": 0.8, "science": 0.1, "web": 0.1},
            r"sources without a weight: \['instruct'\]; weights without a source: \['web'\]",
        ),
        (
            {"natural": 0.8, "instruct": -0.1, "science": 0.1},
            r"weight of source 'instruct' must be a finite number >= 0, got -0.1",
        ),
        ({"natural": float("nan"), "instruct": 1, "science": 1}, r"weight of source 'natural'"),
        ({"natural": 0, "instruct": 0, "science": 0}, "mixture weights sum to zero"),
    ],
)
def test_weight_errors(weights, message):
    with pytest.raises(ValueError, match=message):
        Mixture(three_sources(), weights)


def test_other_errors():
    with pytest.raises(ValueError, match="at least one source"):
        Mixture({}, None)
    with pytest.raises(ValueError, match="source 'e' .* is empty"):
        Mixture({"e": Solid(0, 1)}, None)
    with pytest.raises(IndexError, match=r"index 10 out of range \[0, 10\)"):
        Mixture({"a": Solid(5, 1)}, None, num_samples=10)[10]


@pytest.fixture
def corrupt_sources(tmp_path):
    """Three file-backed sources, each with readable and unreadable images."""
    folder = tmp_path / "folder"
    write_image(folder / "good.jpg", (200, 0, 0))
    (folder / "truncated.jpg").write_bytes(truncated_jpeg())
    (folder / "noise.png").write_bytes(random_bytes())
    manifest = tmp_path / "m.jsonl"
    write_image(tmp_path / "ok.jpg", (0, 200, 0))
    manifest.write_text('{"image": "ok.jpg"}\n{"image": "missing.jpg"}\n')
    write_shard(
        tmp_path / "s.tar", {"fine.jpg": (folder / "good.jpg").read_bytes(), "broken.jpg": truncated_jpeg()}
    )
    return {
        "folder": ImageFolder(str(folder)),
        "manifest": JsonlManifest(str(manifest)),
        "shards": TarShards(str(tmp_path / "s.tar")),
    }


def test_corrupt_images_are_skipped_counted_and_named(corrupt_sources):
    mix = Mixture(corrupt_sources, None, TrainTransform(16), num_samples=400)
    skipped = []
    for i in range(len(mix)):
        sample = mix[i]
        assert sample["image"].shape == (3, 16, 16)
        skipped += sample["skipped"]
    names = " ".join(skipped)
    for bad in ("truncated.jpg", "noise.png", "missing.jpg", "s.tar:broken"):
        assert bad in names
    for good in ("good.jpg", "ok.jpg", "s.tar:fine"):
        assert good not in names
    # 4 of the 7 images are bad, so many samples skip something; replay is exact
    assert len(skipped) > 100
    again = Mixture(corrupt_sources, None, TrainTransform(16), num_samples=400)
    assert [again[i]["skipped"] for i in range(50)] == [mix[i]["skipped"] for i in range(50)]
    assert all(torch.equal(again[i]["image"], mix[i]["image"]) for i in range(50))


def test_only_broken_images_fail_with_the_files_tried(tmp_path):
    (tmp_path / "a.jpg").write_bytes(random_bytes(seed=1))
    (tmp_path / "b.jpg").write_bytes(truncated_jpeg())
    mix = Mixture({"bad": ImageFolder(str(tmp_path))}, None, max_retries=3)
    with pytest.raises(
        RuntimeError, match=r"sample 0 \(epoch 0\): 4 draws in a row could not be read"
    ) as info:
        mix[0]
    assert "a.jpg" in str(info.value) or "b.jpg" in str(info.value)
    tried = str(info.value).split("Tried:\n")[1].splitlines()
    assert len(tried) == 4 and all(line.strip().startswith(str(tmp_path)) for line in tried)


def test_transform_receives_the_sample_generator():
    calls = []

    def transform(record, rng):
        calls.append(rng.random())
        return {"image": torch.zeros(3, 2, 2)}

    mix = Mixture({"a": Solid(10, 1)}, None, transform, num_samples=5)
    mix[2]
    mix[2]
    assert calls[0] == calls[1] and isinstance(calls[0], float)
    rng = mix.generator(2)
    mix._draw(rng)
    assert rng.random() == calls[0]  # the transform continues the sample's own stream
    assert isinstance(np.random.default_rng(), np.random.Generator)


def test_records_carry_their_fields_and_a_line_without_one_is_skipped_and_named(tmp_path):
    write_image(tmp_path / "a.png", fmt="PNG")
    lines = [
        {"image": "a.png", "caption": "a red square", "lang": "en"},
        {"image": "a.png", "caption": ""},  # empty caption: a bad sample, not a crash
        {"image": "a.png", "caption": "红色方块", "lang": "zh"},
    ]
    manifest = tmp_path / "pairs.jsonl"
    manifest.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n")
    source = JsonlManifest(str(manifest), fields=["caption"])
    assert source.read(2)["caption"] == "红色方块" and "lang" not in source.read(2)
    with pytest.raises(BadSampleError, match=r"pairs.jsonl:2: field 'caption' is missing or empty"):
        source.read(1)
    mix = Mixture({"pairs": source}, None, ToTensor(), num_samples=60)
    samples = [mix[i] for i in range(60)]
    assert all(s["caption"] in ("a red square", "红色方块") and s["source"] == "pairs" for s in samples)
    skipped = [item for s in samples for item in s["skipped"]]
    assert skipped and all("pairs.jsonl:2: field 'caption'" in item for item in skipped)


def test_a_record_that_sets_a_reserved_key_is_refused():
    class Tagged(Solid):
        def read(self, index):
            return {"image": self.load(index), "source": "mine"}

    with pytest.raises(KeyError, match=r"produced the keys \['source'\], which the mixture sets itself"):
        Mixture({"a": Tagged(3, 1)}, None, num_samples=2)[0]


def test_transform_skips_are_named_by_the_mixture():
    def odd_is_bad(record, rng):
        if record["image"].getpixel((0, 0))[1] % 2:
            raise BadSampleError("no usable caption")  # a transform does not know where a record came from
        return record

    mix = Mixture({"s": Solid(10, 1)}, transform=odd_is_bad, num_samples=40)
    skipped = [s for i in range(40) for s in mix[i]["skipped"]]
    assert skipped and all(re.fullmatch(r"solid1:[13579]: no usable caption", s) for s in skipped)
