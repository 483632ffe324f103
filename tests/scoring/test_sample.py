"""Samples and their JSONL files: tags, the round trip, and errors that name the file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from glmkit.scoring import DataError, Sample, load_samples


def _write(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "img" / "a.png")
    return tmp_path


def test_loads_and_resolves_relative_images(data_dir: Path) -> None:
    path = _write(
        data_dir / "b.jsonl",
        [
            {
                "id": 7,
                "question": "q?",
                "images": ["img/a.png"],
                "answer": "x",
                "category": "c",
                "metadata": {"k": 1},
            },
            "",
            {"id": "b", "question": "q2", "answer": [1, 2]},
        ],
    )
    samples = load_samples(path)
    assert [s.id for s in samples] == ["7", "b"]
    assert samples[0].images == [data_dir / "img" / "a.png"]
    assert samples[0].image_size() == (40, 30)
    assert samples[1].category == "default" and samples[1].metadata == {}
    assert samples[1].source == "default"  # untagged
    assert samples[0].resolve("masks/m.png") == data_dir / "masks" / "m.png"
    assert samples[0].load_images()[0].mode == "RGB"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (['{"id": 1, "question": "q", "answer": "a"}', "{not json"], r"b\.jsonl:2: invalid JSON"),
        ([{"id": 1, "answer": "a"}], r"b\.jsonl:1: missing field 'question'"),
        ([{"id": 1, "question": "q"}], r"b\.jsonl:1: missing field 'answer'"),
        ([{"id": None, "question": "q", "answer": 1}], r"b\.jsonl:1: field 'id'"),
        ([{"id": 1, "question": 5, "answer": 1}], r"b\.jsonl:1: field 'question' must be a string"),
        (
            [{"id": 1, "question": "q", "answer": 1, "images": ["img/zz.png"]}],
            r"b\.jsonl:1: field 'images': image not found: .*zz\.png",
        ),
        ([{"id": 1, "question": "q", "answer": 1, "images": [3]}], r"field 'images' must be a list of paths"),
        ([{"id": 1, "question": "q", "answer": 1, "metadata": []}], r"field 'metadata' must be an object"),
        ([{"id": 1, "question": "q", "answer": 1, "category": ""}], r"field 'category'"),
        (
            [{"id": 1, "question": "q", "answer": 1, "source": ""}],
            r"b\.jsonl:1: field 'source' must be a non-empty",
        ),
        (
            [{"id": 1, "question": "q", "answer": 1, "source": 3}],
            r"field 'source' must be a non-empty string, got 3",
        ),
        (
            [{"id": 1, "question": "q", "answer": 1}, {"id": "1", "question": "q", "answer": 1}],
            r"b\.jsonl:2: duplicate id '1' \(first on line 1\)",
        ),
        (["[1, 2]"], r"b\.jsonl:1: expected a JSON object, got list"),
        ([""], r"no samples"),
    ],
)
def test_bad_input_names_file_line_field(data_dir: Path, rows: list, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_samples(_write(data_dir / "b.jsonl", rows))


def test_missing_file_and_answer_check(data_dir: Path) -> None:
    with pytest.raises(DataError, match=r"sample file not found: .*nope\.jsonl"):
        load_samples(data_dir / "nope.jsonl")

    def check(sample: Sample) -> None:
        if not isinstance(sample.answer, list):
            raise ValueError("expected a box [x1, y1, x2, y2]")

    path = _write(
        data_dir / "b.jsonl",
        [{"id": 1, "question": "q", "answer": [1]}, {"id": 2, "question": "q", "answer": "x"}],
    )
    with pytest.raises(DataError, match=r"b\.jsonl:2: field 'answer': expected a box"):
        load_samples(path, check_answer=check)


def test_image_size_needs_an_image() -> None:
    with pytest.raises(DataError, match="needs an image"):
        Sample("s", "q", "a").image_size()


def test_the_source_tag_and_every_field_survive_a_jsonl_round_trip(data_dir: Path) -> None:
    rows = [
        {
            "id": "a",
            "question": "What colour?",
            "answer": {"box": [1, 2, 3, 4]},
            "images": ["img/a.png"],
            "category": "grounding",
            "source": "synthetic-v2",
            "metadata": {"image_size": [40, 30], "answer_zh": "红"},
        },
        {"id": "b", "question": "q", "answer": ["x", "y"], "source": "web"},
    ]
    first = load_samples(_write(data_dir / "a.jsonl", rows))
    assert [s.source for s in first] == ["synthetic-v2", "web"]
    # Written back with to_row() and read again: equal samples, images still found.
    again = load_samples(_write(data_dir / "b.jsonl", [s.to_row() for s in first]))
    assert again == first
    assert again[0].to_row() == {**rows[0]}
