"""WebDataset caption shards: the caption layouts, bad samples skipped, counted and named."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from glmkit.data.captions import CaptionedSource, PickCaption
from glmkit.data.decode import BadImageError
from glmkit.data.mixture import Mixture
from glmkit.data.sources import BadSampleError
from glmkit.data.webdataset import PLAIN_LANGUAGE, CaptionShards, write_caption_shard


def _image(fmt: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format=fmt)
    return buffer.getvalue()


GOOD = {
    "s/a": ({"jpg": _image("JPEG", (40, 30)), "txt": b"a red circle\n"}, "a red circle"),
    "s/b": (
        {"png": _image("PNG", (20, 50)), "en.txt": b"two squares", "zh.txt": "两个正方形".encode()},
        {"en": "two squares", "zh": "两个正方形"},
    ),
    "s/c": (
        {
            "webp": _image("WEBP", (32, 32)),
            "json": json.dumps({"caption": {"en": "one", "zh": "一"}}).encode(),
        },
        {"en": "one", "zh": "一"},
    ),
}
BAD = {  # key: (members, what the message says)
    "s/d": ({"jpg": _image("JPEG", (8, 8))}, "no caption member"),
    "s/e": ({"jpg": _image("JPEG", (8, 8)), "txt": b"   \n"}, "the caption is empty"),
    "s/f": ({"jpg": _image("JPEG", (8, 8)), "txt": b"\xff\xfe\xfa"}, "not UTF-8"),
    "s/g": ({"jpg": _image("JPEG", (8, 8)), "json": b"{caption:"}, "not valid JSON"),
    "s/h": (
        {"jpg": _image("JPEG", (8, 8)), "json": b'{"text": "x"}'},
        "no string or {language: string} field",
    ),
    "s/i": ({"jpg": b"not a jpeg", "txt": b"fine caption"}, ""),  # an undecodable image
}


@pytest.fixture
def shards(tmp_path: Path) -> str:
    samples = [(k, m) for k, (m, _) in {**GOOD, **BAD}.items()]
    write_caption_shard(str(tmp_path / "pairs-000000.tar"), samples[:5])
    write_caption_shard(str(tmp_path / "pairs-000001.tar"), [*samples[5:], ("s/j", {"txt": b"no image"})])
    return str(tmp_path / "pairs-{000000..000001}.tar")


def test_every_caption_layout_reads_back(shards: str) -> None:
    with pytest.warns(UserWarning, match=r"left out 1 sample.*pairs-000001\.tar: 1 \(s/j\)"):
        source = CaptionShards(shards)
    assert len(source) == len(GOOD) + len(BAD)  # s/j has no image: not a sample, but counted and named
    by_key = {source.images.keys[i]: i for i in range(len(source))}
    for key, (members, caption) in GOOD.items():
        record = source.read(by_key[key])
        assert record["caption"] == caption
        size = Image.open(
            io.BytesIO(next(v for e, v in members.items() if "txt" not in e and e != "json"))
        ).size
        assert record["image"].size == size


def test_bad_samples_raise_naming_shard_key_and_reason(shards: str) -> None:
    source = CaptionShards(shards)
    by_key = {source.images.keys[i]: i for i in range(len(source))}
    for key, (_, reason) in BAD.items():
        error = BadImageError if key == "s/i" else BadSampleError
        with pytest.raises(error, match=rf"pairs-00000\d\.tar:{key}.*{re.escape(reason)}"):
            source.read(by_key[key])


def test_the_mixture_skips_counts_and_names_bad_pairs(shards: str) -> None:
    mixture = Mixture(
        {"web": CaptionedSource(CaptionShards(shards))}, transform=PickCaption(), num_samples=60
    )
    records = [mixture[i] for i in range(len(mixture))]
    good_captions = {"a red circle", "two squares", "两个正方形", "one", "一"}
    assert {r["caption"] for r in records} <= good_captions
    skipped = [message for r in records for message in r["skipped"]]
    named = {re.search(r":(s/\w)", m).group(1) for m in skipped}
    assert named == set(BAD)  # every bad pair was met, skipped and named; no good one was
    assert len(skipped) > len(BAD)  # and counted each time it was drawn


def test_not_a_tar_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"\x1f\x8b gzip, not tar" * 64)
    with pytest.raises(ValueError, match="x.tar"):
        CaptionShards(str(tmp_path / "x.tar"), index_cache=False)


def test_text_members_merge_into_one_caption_and_empty_languages_drop(tmp_path: Path) -> None:
    png = _image("PNG", (8, 8))
    path = write_caption_shard(
        str(tmp_path / "s.tar"),
        [
            ("a", {"png": png, "txt": b"a cat", "zh.txt": "一只猫".encode()}),
            ("b", {"png": png, "txt": b"", "en.txt": b"a dog", "zh.txt": "一只狗".encode()}),
            ("c", {"png": png, "json": json.dumps({"caption": {"en": "a bird", "zh": None}}).encode()}),
            ("d", {"png": png, "txt": b"plain only", "en.txt": b" "}),
            ("e", {"png": png, "json": json.dumps({"caption": {"en": None, "zh": ""}}).encode()}),
        ],
    )
    source = CaptionShards(path, index_cache=False)
    captions = [source.caption(i) for i in range(4)]
    assert captions == [
        {PLAIN_LANGUAGE: "a cat", "zh": "一只猫"},  # the plain text no longer hides the languages
        {"en": "a dog", "zh": "一只狗"},  # an empty plain text does not make the sample bad
        {"en": "a bird"},  # a null language is dropped, not the sample
        "plain only",
    ]
    with pytest.raises(BadSampleError, match=r"s\.tar:e: the caption is empty"):
        source.caption(4)
    zh = CaptionedSource(source, languages=["zh"])  # the plain (English) text does not pass as zh
    assert zh.read(0)["caption"] == {"zh": "一只猫"}
    assert {PickCaption(languages=["zh"])(source.read(0), s)["caption"] for s in range(20)} == {"一只猫"}
