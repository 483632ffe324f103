"""End to end from an export directory: a VLM written the way training writes it answers
``glmkit eval --benchmark demo-vqa`` through eval's ``LocalVLMAdapter`` and runs the agent loop with
tools through the ``ChatModel`` protocol, drafting with its MTP heads (lossless). Tiny, random and
built here; the quickstart-trained VLM takes the same path (``glmkit.inference.load_chat``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from glmkit.inference import SpeculativeVLM, load_chat, load_vlm
from glmkit.models.vlm import VisionLanguageChat
from tests.inference.tiny_vlm import export_tiny_vlm


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_vlm(tmp_path_factory.mktemp("export") / "vlm", depths=1)


def test_glmkit_eval_demo_vqa_through_the_local_adapter(
    export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from glmkit.eval.cli import main

    # `--model local:module:attribute` is how the eval CLI takes an in-process model
    (tmp_path / "exported_vlm.py").write_text(
        "from glmkit.inference import load_chat\n"
        f"model = load_chat({str(export)!r}, num_draft_tokens=2, max_new_tokens=6)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "exported_vlm", raising=False)
    out = tmp_path / "eval"
    argv = [
        "--benchmark",
        "demo-vqa",
        "--model",
        "local:exported_vlm:model",
        "--limit",
        "3",
        "--out",
        str(out),
    ]
    assert main([*argv, "--quiet"]) == 0
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert all(not r.get("error") for r in records), records
    assert (out / "summary.json").is_file()


def test_glmkit_eval_takes_the_export_directory(export: Path, tmp_path: Path) -> None:
    """`--model local:<exported VLM directory>`: what a user runs on the quickstart's export."""
    from glmkit.eval.adapters import LocalVLMAdapter
    from glmkit.eval.cli import main

    assert isinstance(LocalVLMAdapter.from_spec(str(export)).model, VisionLanguageChat)
    out = tmp_path / "eval"
    argv = ["--benchmark", "demo-vqa", "--model", f"local:{export}", "--limit", "2", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(not r.get("error") for r in records), records


def test_speculative_chat_answers_as_plain_greedy(export: Path) -> None:
    from glmkit.models.vlm import VisionLanguageChat

    vlm, mtp, processor = load_vlm(export)
    image = Image.linear_gradient("L").resize((40, 24)).convert("RGB")
    plain = VisionLanguageChat(vlm, processor, max_new_tokens=8)
    drafted = load_chat(export, num_draft_tokens=3, max_new_tokens=8)
    assert isinstance(drafted.model, SpeculativeVLM)
    for question in ("What is in the image?", "Count the shapes."):
        assert drafted.generate(question, [image]) == plain.generate(question, [image])
    stats = drafted.model.last_stats
    assert stats.new_tokens >= 1 and stats.main_forwards <= stats.new_tokens
    assert not any(m.training for m in drafted.model.modules())  # generating leaves the model in eval mode


def test_a_left_padded_batch_equals_each_sample_alone(export: Path) -> None:
    vlm, mtp, processor = load_vlm(export)
    model = SpeculativeVLM(vlm, mtp, num_draft_tokens=2)
    image = Image.new("RGB", (32, 16), (200, 30, 30))
    texts = ["<|begin_of_image|><|image|><|end_of_image|>What?", "Only text, a bit longer than the other."]
    batch = processor(texts, images=[[image], []], padding_side="left")
    pad = processor.tokenizer.pad_token_id or 0
    together = model.generate(**batch, max_new_tokens=5, pad_token_id=pad)
    width = batch["input_ids"].shape[1]
    for b, (text, images) in enumerate(zip(texts, [[image], []], strict=True)):
        alone = processor([text], images=[images])
        ids = model.generate(**alone, max_new_tokens=5, pad_token_id=pad)[0, alone["input_ids"].shape[1] :]
        assert torch.equal(together[b, width : width + ids.numel()], ids)
    with pytest.raises(TypeError, match="min_new_tokens"):
        model.generate(**batch, max_new_tokens=2, min_new_tokens=2)


def test_drives_the_agent_loop_with_tools(export: Path, tmp_path: Path) -> None:
    from glmkit.agent.loop import AgentLoop
    from glmkit.agent.models import ChatModel
    from glmkit.eval import get_benchmark, run_benchmark
    from glmkit.eval.adapters import AgentAdapter
    from tests.agent.toy_tools import EchoTool

    chat = load_chat(export, num_draft_tokens=1, max_new_tokens=6)
    assert isinstance(chat, ChatModel)
    image = Image.new("RGB", (24, 40), (30, 30, 200))
    result = AgentLoop(chat, [EchoTool()], max_turns=2).run("What is in the image?", [image])
    assert result.stop_reason != "model_error", result.error
    assert result.usage["completion_tokens"] >= 1
    assert "echo" in chat.render_prompt([{"role": "user", "content": "hi"}], [EchoTool().schema()])
    # eval's agent adapter runs the same loop with the benchmark's tools (crop, search)
    adapter = AgentAdapter(chat, max_turns=2)
    run = run_benchmark(get_benchmark("demo-imagemining"), adapter, tmp_path / "agent", limit=1)
    records = [json.loads(line) for line in (tmp_path / "agent" / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 1 and not records[0].get("error"), records
    assert run is not None
