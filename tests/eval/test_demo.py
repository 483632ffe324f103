"""Every demo benchmark end to end: the oracle scores 100%, the baselines score lower."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glmkit.eval.adapters import ConstantAdapter, OracleAdapter, RandomAdapter
from glmkit.eval.definition import get_benchmark
from glmkit.eval.demo import make_demo, serial_code
from glmkit.eval.render import chromium_unavailable_reason
from glmkit.eval.runner import run_benchmark

SIZES = {"demo-grounding": 8, "demo-pointing": 8, "demo-ocr": 6, "demo-vqa": 6, "demo-imagemining": 6}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_demo_oracle_perfect_and_baselines_lower(tmp_path: Path, name: str) -> None:
    data = make_demo(name, tmp_path / "data", n=SIZES[name])
    bench = get_benchmark(name)
    key = bench.build_metrics()[0].key
    oracle = run_benchmark(bench, OracleAdapter(), tmp_path / "oracle", data=data)
    random = run_benchmark(bench, RandomAdapter(seed=1), tmp_path / "random", data=data)
    constant = run_benchmark(bench, ConstantAdapter("unknown"), tmp_path / "constant", data=data)
    assert oracle.summary["overall"]["n"] == SIZES[name] and oracle.summary["overall"]["errors"] == 0
    assert oracle.summary["overall"]["scores"][key] == pytest.approx(1.0)
    for cat in oracle.summary["categories"].values():
        assert cat["scores"][key] == pytest.approx(1.0)
    assert random.summary["overall"]["scores"][key] < 0.5
    assert constant.summary["overall"]["scores"][key] < 0.5


def test_generation_is_deterministic_and_valid(tmp_path: Path) -> None:
    a = make_demo("demo-vqa", tmp_path / "a", n=6, seed=3)
    b = make_demo("demo-vqa", tmp_path / "b", n=6, seed=3)
    assert a.read_text() == b.read_text()
    rows = [json.loads(line) for line in a.read_text().splitlines()]
    assert {r["category"] for r in rows} == {"count", "color", "chart"}
    for row in rows:
        with Image.open(a.parent / row["images"][0]) as img:
            assert list(img.size) == row["metadata"]["image_size"]
    assert make_demo("demo-vqa", tmp_path / "c", n=6, seed=4).read_text() != a.read_text()
    with pytest.raises(KeyError, match="unknown demo"):
        make_demo("demo-nope", tmp_path)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_every_demo_writes_its_images_and_rows_alike(tmp_path: Path, name: str) -> None:
    data = make_demo(name, tmp_path, n=4)
    assert data == tmp_path / f"{name}.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(rows) == 4 and len({r["id"] for r in rows}) == 4
    for row in rows:
        assert set(row) == {"id", "question", "images", "answer", "category", "metadata"}
        (image,) = row["images"]
        assert image == f"images/{row['id'].replace('-', '_')}.png"
        with Image.open(tmp_path / image) as img:
            assert list(img.size) == row["metadata"]["image_size"]


def test_serial_codes_have_no_vowels_and_are_deterministic(tmp_path: Path) -> None:
    codes = [serial_code(np.random.default_rng(seed)) for seed in range(2000)]
    assert codes == [serial_code(np.random.default_rng(seed)) for seed in range(2000)]
    assert all(re.fullmatch(r"[A-Z0-9]{3}-[A-Z0-9]{3}", code) for code in codes)
    used = set("".join(codes).replace("-", ""))
    assert not used & set("AEIOUY")  # cannot spell a word
    assert not used & set("0134")  # no O/I look-alikes, no leetspeak vowels
    # The demos' codes come from it: OCR's "code" rows and ImageMining's "crop" rows.
    ocr = make_demo("demo-ocr", tmp_path / "ocr", n=30)
    mining = make_demo("demo-imagemining", tmp_path / "mining", n=30)
    rows = [json.loads(line) for path in (ocr, mining) for line in path.read_text().splitlines()]
    answers = [r["answer"] for r in rows if r["category"] in ("code", "crop")]
    assert len(answers) == 20 and not set("".join(answers)) & set("AEIOUY0134")
    assert make_demo("demo-imagemining", tmp_path / "again", n=30).read_text() == mining.read_text()


def test_imagemining_demo_ships_a_search_index_with_the_facts(tmp_path: Path) -> None:
    from glmkit.tools.search import LocalSearchProvider

    data = make_demo("demo-imagemining", tmp_path, n=3)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    provider = LocalSearchProvider(tmp_path / "search_index")
    for row in rows:
        hits = provider.search_text(row["metadata"]["entity"], k=1)
        assert hits and hits[0].title == row["metadata"]["entity"]
    search_row = next(r for r in rows if r["category"] == "search")
    assert (
        f"completed in {search_row['answer']}"
        in provider.search_text(search_row["metadata"]["entity"], 1)[0].snippet
    )


@pytest.mark.chromium
@pytest.mark.skipif(
    chromium_unavailable_reason() is not None, reason=f"needs Chromium: {chromium_unavailable_reason()}"
)
def test_ui2code_demo(tmp_path: Path) -> None:
    data = make_demo("demo-ui2code", tmp_path / "data", n=2)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert all(r["metadata"]["screenshot"] == "chromium" for r in rows)
    bench = get_benchmark("demo-ui2code")
    oracle = run_benchmark(bench, OracleAdapter(), tmp_path / "oracle", data=data)
    constant = run_benchmark(
        bench, ConstantAdapter("<html><body><p>Hello</p></body></html>"), tmp_path / "c", data=data
    )
    assert oracle.summary["overall"]["scores"]["design2code"] == pytest.approx(1.0, abs=1e-6)
    assert constant.summary["overall"]["scores"]["design2code"] < 0.5
