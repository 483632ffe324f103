"""Model adapters: OpenAI endpoint, local protocol, agent loop with tools, baselines, specs."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from glmkit.eval.adapters import (
    AgentAdapter,
    ConstantAdapter,
    LocalVLMAdapter,
    OpenAIAdapter,
    RandomAdapter,
    Request,
    as_prediction,
    build_adapter,
    trajectory_file_name,
)
from glmkit.eval.definition import Benchmark, get_benchmark
from glmkit.eval.demo import make_imagemining
from glmkit.eval.metrics.vqa import NormalizedMatchScorer
from glmkit.eval.runner import run_benchmark
from glmkit.scoring import Sample
from tests.helpers.openai_server import ScriptedOpenAIServer, reply, tool_call


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    Image.new("RGB", (64, 48), (255, 0, 0)).save(tmp_path / "red.png")
    return Sample("s1", "What colour?", "red", images=[tmp_path / "red.png"], root=tmp_path)


def test_openai_adapter_sends_image_data_url(sample: Sample) -> None:
    with ScriptedOpenAIServer([reply(content="<|begin_of_box|>red<|end_of_box|>")]) as srv:
        adapter = build_adapter(f"openai:{srv.base_url}@glm-test", temperature=0.3, max_tokens=64)
        pred = adapter.predict(Request(sample, "What colour? Answer briefly.", system_prompt="Be brief."))
        body = srv.requests[0]
    assert isinstance(adapter, OpenAIAdapter)
    assert pred.text == "<|begin_of_box|>red<|end_of_box|>" and pred.usage["total_tokens"] == 15
    assert body["model"] == "glm-test" and body["temperature"] == 0.3 and body["max_tokens"] == 64
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    image_part, text_part = body["messages"][1]["content"]
    url = image_part["image_url"]["url"]
    assert image_part["type"] == "image_url" and url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (64, 48) and decoded.convert("RGB").getpixel((3, 3)) == (255, 0, 0)
    assert text_part == {"type": "text", "text": "What colour? Answer briefly."}


def test_openai_adapter_failure_is_a_sample_error(tmp_path: Path, sample: Sample) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "a", "question": "q", "images": ["red.png"], "answer": "red"}) + "\n")
    with ScriptedOpenAIServer([400]) as srv:
        result = run_benchmark(
            Benchmark("t", ["exact_match"]),
            OpenAIAdapter(srv.base_url, max_retries=0),
            tmp_path / "o",
            data=data,
        )
    assert "HTTP 400" in result.records[0]["error"]


class StubVLM:
    """A stand-in for the glmkit VLM: the local protocol's generate(question, images)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []

    def generate(self, question: str, images: list[Image.Image]) -> str:
        self.calls.append((question, images))
        r, g, b = images[0].getpixel((0, 0))
        return "red" if r > 200 and g < 50 else "not red"


def test_local_adapter_with_stub_object_and_callable(sample: Sample) -> None:
    stub = StubVLM()
    adapter = LocalVLMAdapter(stub)
    assert adapter.predict(Request(sample, "prompt text")).text == "red"
    question, images = stub.calls[0]
    assert question == "prompt text" and images[0].size == (64, 48)
    bare = LocalVLMAdapter(stub, use_prompt=False)
    bare.predict(Request(sample, "prompt text"))
    assert stub.calls[-1][0] == "What colour?"
    fn = LocalVLMAdapter(lambda q, imgs: {"text": "x", "tool_calls": 2, "turns": 3})
    pred = fn.predict(Request(sample, "p"))
    assert (pred.text, pred.tool_calls, pred.turns) == ("x", 2, 3)
    with pytest.raises(TypeError, match="generate"):
        LocalVLMAdapter(object())
    with pytest.raises(TypeError, match="must return a str"):
        as_prediction(42)


def test_local_adapter_from_spec(sample: Sample) -> None:
    adapter = build_adapter("local:tests.eval.test_adapters:StubVLM")
    assert adapter.predict(Request(sample, "p")).text == "red"
    assert adapter.describe()["spec"] == "local:tests.eval.test_adapters:StubVLM"
    with pytest.raises(ValueError, match="local:package.module:attribute"):
        build_adapter("local:nomodule")
    with pytest.raises(ValueError, match="cannot load local model"):
        build_adapter("local:tests.eval.test_adapters:Missing")


def test_build_adapter_specs() -> None:
    assert isinstance(build_adapter("constant:hello world", temperature=0.5), ConstantAdapter)
    assert build_adapter("constant:a:b").predict(Request(Sample("s", "q", "a"), "p")).text == "a:b"
    assert isinstance(build_adapter("http://127.0.0.1:1/v1@m"), OpenAIAdapter)
    assert build_adapter("random:7").seed == 7  # type: ignore[attr-defined]
    with pytest.raises(KeyError, match="Did you mean 'oracle'"):
        build_adapter("oracel")
    with pytest.raises(ValueError, match="integer seed"):
        build_adapter("random:x")
    with pytest.raises(ValueError, match="takes no argument"):
        build_adapter("oracle:x")


def test_random_adapter_is_deterministic_and_never_picks_the_sample_itself() -> None:
    samples = [Sample(f"s{i}", "q", f"a{i}") for i in range(5)]
    metric = NormalizedMatchScorer()
    first, second = RandomAdapter(seed=3), RandomAdapter(seed=3)
    for adapter in (first, second):
        adapter.prepare(Benchmark("t", ["normalized_match"]), samples, [metric])
    answers = [first.predict(Request(s, "q")).text for s in samples]
    assert answers == [second.predict(Request(s, "q")).text for s in reversed(samples)][::-1]
    assert all(a != s.answer for a, s in zip(answers, samples, strict=True))


def _scripted_agent(truth: dict[str, dict[str, Any]], seen_search: list[str]):
    """A scripted policy: crop the corner, search the entity, answer; reads what the tools returned."""

    def policy(body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        first_user = next(m for m in messages if m["role"] == "user")
        question = next(
            p["text"] for p in first_user["content"] if p.get("type") == "text" and "?" in p["text"]
        )
        row = truth[question]
        tools_done = [m for m in messages if m["role"] == "tool"]
        if row["category"] != "search" and not tools_done:
            return reply(
                tool_calls=[
                    tool_call("crop_image", {"image": "img_0", "bbox": [0, 0, 1000, 1000], "zoom": 2})
                ]
            )
        if row["category"] != "crop" and len(tools_done) < (1 if row["category"] == "search" else 2):
            return reply(tool_calls=[tool_call("search_web_text", {"query": row["metadata"]["entity"]})])
        if tools_done and row["category"] != "crop":
            seen_search.append(tools_done[-1]["content"])
        return reply(content=f"<|begin_of_box|>{row['answer']}<|end_of_box|>")

    return policy


def test_agent_adapter_runs_tools_and_records_counts(tmp_path: Path) -> None:
    data = make_imagemining(tmp_path / "data", n=3)
    truth = {}
    for line in data.read_text().splitlines():
        row = json.loads(line)
        truth[row["question"]] = row
    seen_search: list[str] = []
    with ScriptedOpenAIServer([_scripted_agent(truth, seen_search)]) as srv:
        adapter = build_adapter(f"agent:{srv.base_url}@agent-model", max_turns=5)
        result = run_benchmark(get_benchmark("demo-imagemining"), adapter, tmp_path / "out", data=data)
        requests = list(srv.requests)
    recs = {r["category"]: r for r in result.records}
    assert {c: (r["tool_calls"], r["turns"]) for c, r in recs.items()} == {
        "crop": (1, 2),
        "search": (1, 2),
        "crop+search": (2, 3),
    }
    assert recs["crop+search"]["tools_used"] == ["crop_image", "search_web_text"]
    assert all(r["scores"]["imagemining"] == 1.0 for r in result.records)
    # The search tool really ran over the demo's local index and found the fact.
    assert len(seen_search) == 2 and all("completed in" in text for text in seen_search)
    # The crop came back to the model as an image in a user message, never inside role "tool".
    followup = next(b for b in requests if any(m["role"] == "tool" for m in b["messages"]))
    tool_msg = next(m for m in followup["messages"] if m["role"] == "tool")
    assert isinstance(tool_msg["content"], str)
    image_msgs = [m for m in followup["messages"][2:] if m["role"] == "user"]
    assert any(
        p.get("type") == "image_url" and p["image_url"]["url"].startswith("data:image/")
        for m in image_msgs
        for p in m["content"]
    )
    assert requests[0]["tools"] and {t["function"]["name"] for t in requests[0]["tools"]} == {
        "crop_image",
        "search_web_text",
    }
    overall = result.summary["overall"]
    assert overall["tool_calls"] == pytest.approx(4 / 3) and overall["turns"] == pytest.approx(7 / 3)
    assert overall["tool_use_rate"] == 1.0
    extra = result.summary["extra"]
    assert extra["calls_per_tool"] == {"crop_image": 2, "search_web_text": 2}
    assert extra["accuracy_with_tools"] == 1.0
    assert (tmp_path / "out" / "trajectories" / trajectory_file_name("mine-000")).is_file()


class _AnswerAtOnce:
    """A chat model that answers 'cat' without calling a tool."""

    def __init__(self) -> None:
        from glmkit.agent.formats import get_tool_call_format

        self.tool_format = get_tool_call_format("openai")

    def chat(self, messages: list[dict[str, Any]], tools: Any = None) -> Any:
        from glmkit.agent.client import ChatCompletion

        return ChatCompletion(message={"role": "assistant", "content": "cat"}, finish_reason="stop", usage={})


@pytest.mark.parametrize("workers", [1, 2])
def test_agent_trajectories_keep_every_attempt_of_every_sample(tmp_path: Path, workers: int) -> None:
    # Old code unlinked "<safe id>.jsonl" on every attempt (only the last of k survived), and the
    # ids "a/b" and "a_b" both became "a_b.jsonl", clobbering each other.
    from glmkit.agent.trajectory import read_trajectory

    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    rows = [
        {"id": sid, "question": f"q {sid}", "images": ["x.png"], "answer": "cat"} for sid in ("a/b", "a_b")
    ]
    data = tmp_path / "b.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = Benchmark("t", ["exact_match"], tools=[("crop_image", {})])
    out = tmp_path / "out"
    adapter = AgentAdapter(_AnswerAtOnce())
    run_benchmark(bench, adapter, out, data=data, num_samples=3, workers=workers)
    # A second run over the same directory starts each sample's file afresh (once, not per attempt).
    run_benchmark(bench, adapter, out, data=data, num_samples=3, workers=workers, overwrite=True)
    names = {sid: trajectory_file_name(sid) for sid in ("a/b", "a_b")}
    assert len(set(names.values())) == 2 and all(n.startswith("a_b-") for n in names.values())
    assert sorted(p.name for p in (out / "trajectories").glob("*.jsonl")) == sorted(names.values())
    for sid, name in names.items():
        events = read_trajectory(out / "trajectories" / name)
        assert len({e["run"] for e in events}) == 3
        questions = [e["messages"][-1]["content"][-1]["text"] for e in events if e["event"] == "request"]
        assert questions == [f"q {sid}"] * 3
    assert trajectory_file_name("A") != trajectory_file_name("a")  # case-insensitive file systems


def test_agent_model_error_is_a_sample_error(tmp_path: Path) -> None:
    data = make_imagemining(tmp_path / "data", n=1)
    with ScriptedOpenAIServer([500]) as srv:
        from glmkit.agent.client import OpenAIChatClient
        from glmkit.agent.models import OpenAIChatModel

        model = OpenAIChatModel(OpenAIChatClient(srv.base_url, max_retries=0))
        result = run_benchmark(
            get_benchmark("demo-imagemining"), AgentAdapter(model), tmp_path / "o", data=data
        )
    assert "agent model failed" in result.records[0]["error"] and "500" in result.records[0]["error"]
