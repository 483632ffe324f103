"""Search: BM25 text ranking, image similarity, index building, the three tools and provider choice."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from glmkit.tools.base import ToolContext, ToolError
from glmkit.tools.search import (
    BM25,
    INDEX_ENV,
    SEARCH_PROVIDERS,
    LocalSearchProvider,
    SearchHit,
    SearchImagesTool,
    SearchProvider,
    SearchWebByImageTool,
    SearchWebTextTool,
    build_index,
    image_embedding,
    load_documents,
    tokenize,
)


def scene(color, shape="circle", size=(64, 48)) -> Image.Image:
    img = Image.new("RGB", size, (240, 240, 240))
    draw = ImageDraw.Draw(img)
    if shape == "circle":
        draw.ellipse([16, 8, 48, 40], fill=color)
    else:
        draw.rectangle([4, 4, 30, 44], fill=color)
    return img


@pytest.fixture
def index(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    scene((200, 30, 30)).save(src / "red_balloon.png")
    (src / "red_balloon.txt").write_text(
        "A red balloon floating over the Eiffel Tower in Paris.", encoding="utf-8"
    )
    scene((30, 60, 200), "rect").save(src / "blue_door.png")
    (src / "mount.md").write_text(
        "# Mount Everest\nThe highest mountain on Earth, 8849 m, in the Himalaya.", encoding="utf-8"
    )
    (src / "page.html").write_text(
        "<html><head><title>Paris travel guide</title></head><body><h1>Paris</h1>"
        "<p>The Eiffel Tower and the Louvre.</p></body></html>",
        encoding="utf-8",
    )
    green = src / "green.png"
    scene((30, 180, 60)).save(green)
    docs = [
        {
            "title": "Tokyo Tower",
            "url": "https://example.org/tokyo",
            "text": "A red and white tower in Tokyo, 333 m.",
        },
        {"title": "长城", "url": "https://example.org/greatwall", "text": "长城是中国古代的军事防御工程。"},
        {
            "title": "Green lawn",
            "url": "https://example.org/lawn",
            "text": "A green circle of grass.",
            "image": str(green),
        },
    ]
    files = [src / "red_balloon.png", src / "blue_door.png", src / "mount.md", src / "page.html"]
    return build_index(tmp_path / "index", files=files, documents=docs)


def test_tokenize_splits_words_and_cjk_characters():
    assert tokenize("Hello, World! 8849m") == ["hello", "world", "8849m"]
    assert tokenize("长城 Great") == ["长", "城", "great"]


def test_bm25_matches_a_hand_computed_score():
    docs = [["a", "b"], ["a", "a", "c"], ["d"]]
    bm = BM25(docs, k1=1.5, b=0.75)
    n, df, avgdl = 3, 2, 2.0
    idf = np.log((n - df + 0.5) / (df + 0.5) + 1)
    expected_doc1 = idf * 2 * 2.5 / (2 + 1.5 * (1 - 0.75 + 0.75 * 3 / avgdl))
    assert bm.scores(["a"])[1] == pytest.approx(expected_doc1)
    assert bm.scores(["a"])[2] == 0
    assert bm.scores(["zzz"]).tolist() == [0, 0, 0]


def test_build_index_writes_jsonl_and_images(index):
    lines = (index / "documents.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["title"] for r in rows] == [
        "red balloon", "blue door", "Mount Everest", "Paris travel guide", "Tokyo Tower", "长城", "Green lawn",
    ]  # fmt: skip
    assert rows[0]["text"].startswith("A red balloon") and rows[0]["image"].startswith("images/")
    assert all((index / r["image"]).is_file() for r in rows if "image" in r)
    assert "Eiffel Tower" in rows[3]["text"]


def test_text_search_ranks_by_bm25(index):
    provider = LocalSearchProvider(index)
    hits = provider.search_text("Eiffel Tower Paris", k=3)
    assert {h.title for h in hits[:2]} == {"red balloon", "Paris travel guide"}
    assert hits[0].score >= hits[1].score > 0
    assert "Eiffel" in hits[0].snippet
    assert provider.search_text("长城", k=2)[0].url == "https://example.org/greatwall"
    assert provider.search_text("quantum chromodynamics") == []


def test_image_search_returns_only_documents_with_images(index):
    hits = LocalSearchProvider(index).search_images("red", k=5)
    assert hits[0].title == "red balloon" and all(h.image for h in hits)
    assert "Tokyo Tower" not in {h.title for h in hits}


def test_reverse_image_search_finds_the_similar_image(index):
    provider = LocalSearchProvider(index)
    query = scene((210, 40, 35)).resize((128, 96))  # same layout, slightly different red, other size
    hits = provider.search_by_image(query, k=3)
    assert hits[0].title == "red balloon" and hits[0].score > hits[1].score
    assert provider.search_by_image(scene((30, 60, 200), "rect"), k=1)[0].title == "blue door"


def test_image_embedding_is_deterministic_unit_length():
    a = image_embedding(scene((10, 20, 30)))
    assert a.shape == (128,) and np.linalg.norm(a) == pytest.approx(1.0)
    assert np.array_equal(a, image_embedding(scene((10, 20, 30))))
    assert image_embedding(Image.new("RGB", (5, 5), "white")).shape == (128,)  # flat image: no NaN
    assert np.all(np.isfinite(image_embedding(Image.new("RGB", (5, 5), "white"))))


def test_tools_delegate_to_the_local_provider(index):
    ctx = ToolContext()
    text = SearchWebTextTool(index_path=index)({"query": "highest mountain", "k": 2}, ctx)
    assert text.ok and "1. Mount Everest" in text.text and text.data["hits"][0]["title"] == "Mount Everest"
    images = SearchImagesTool(index_path=index)({"query": "green grass circle"}, ctx)
    assert images.ok and images.data["hits"][0]["title"] == "Green lawn"
    assert images.image_ids and max(ctx.images[images.image_ids[0]].size) <= 512
    by_image = SearchWebByImageTool(index_path=index)({"image": images.image_ids[-1], "k": 1}, ctx)
    assert by_image.ok and "Green lawn" in by_image.text and "similarity" in by_image.text


def test_index_path_from_the_environment(index, monkeypatch):
    monkeypatch.setenv(INDEX_ENV, str(index))
    result = SearchWebTextTool()({"query": "Tokyo"}, ToolContext())
    assert result.ok and "Tokyo Tower" in result.text


def test_missing_index_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(INDEX_ENV, raising=False)
    result = SearchWebTextTool()({"query": "x"}, ToolContext())
    assert not result.ok and INDEX_ENV in result.error
    result = SearchWebTextTool(index_path=tmp_path / "none")({"query": "x"}, ToolContext())
    assert not result.ok and "does not exist" in result.error


def test_bad_index_lines_name_the_file_line_and_key(tmp_path):
    (tmp_path / "documents.jsonl").write_text('{"title": "a", "url": "u", "text": "t"}\n{"title": 3}\n')
    with pytest.raises(ToolError, match=r"documents.jsonl:2: key 'title' must be a string"):
        load_documents(tmp_path)
    (tmp_path / "documents.jsonl").write_text(
        '{"title": "a", "url": "u", "text": "t", "image": "../../etc/passwd"}\n'
    )
    with pytest.raises(ToolError, match="outside the index directory"):
        load_documents(tmp_path)


def test_provider_is_chosen_by_name_from_the_registry():
    @SEARCH_PROVIDERS.register("canned-test", override=True)
    class CannedProvider(SearchProvider):
        def __init__(self, answer: str = "canned") -> None:
            self.answer = answer

        def search_text(self, query, k=5):
            return [SearchHit(title=self.answer, url="https://canned.example/" + query)]

        def search_by_image(self, image, k=5):
            return []

        def search_images(self, query, k=5):
            return []

    assert "local" in SEARCH_PROVIDERS.names()
    tool = SearchWebTextTool(provider="canned-test", provider_args={"answer": "hello"})
    result = tool({"query": "q"}, ToolContext())
    assert "1. hello" in result.text and "https://canned.example/q" in result.text
    direct = SearchWebTextTool(provider=CannedProvider("direct"))({"query": "q"}, ToolContext())
    assert "1. direct" in direct.text
    unknown = SearchWebTextTool(provider="lokal")({"query": "q"}, ToolContext())
    assert not unknown.ok and "local" in unknown.error


def test_empty_queries_are_refused(index):
    result = SearchWebTextTool(index_path=index)({"query": "!!!"}, ToolContext())
    assert not result.ok and "no searchable words" in result.error
    result = SearchWebTextTool(index_path=index)({"query": ""}, ToolContext())
    assert not result.ok and "query" in result.error


def test_hit_counts_read_in_singular_and_plural(index):
    ctx = ToolContext()
    one = SearchWebTextTool(index_path=index)({"query": "highest mountain", "k": 1}, ctx)
    assert one.text.startswith("1 result for 'highest mountain':")
    two = SearchWebTextTool(index_path=index)({"query": "tower", "k": 2}, ctx)
    assert two.text.startswith("2 results for 'tower':")
    image = SearchImagesTool(index_path=index)({"query": "green grass circle", "k": 1}, ctx)
    assert image.text.startswith("1 image for 'green grass circle':")
    page = SearchWebByImageTool(index_path=index)({"image": image.image_ids[0], "k": 1}, ctx)
    assert page.text.startswith(f"1 page with similar images for {image.image_ids[0]}:")
    none = SearchWebTextTool(index_path=index)({"query": "zebra"}, ctx)
    assert none.text == "No results found for 'zebra'."
