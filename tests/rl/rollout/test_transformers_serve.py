"""The server rollout engine against a real OpenAI-compatible server: ``transformers serve``.

A tiny random Llama with a character-level tokenizer and a chat template is saved to a temporary
directory and served on loopback by ``transformers serve`` (CPU). The same weights also run in
process, so the server's greedy answers can be checked token for token against
:class:`~glmkit.rl.rollout.inprocess.InProcessEngine`, whose prompt rendering
(:class:`~glmkit.rl.rollout.inprocess.ChatPrompts`) is the trainer's: equal answers mean the
server saw the prompt the trainer will score.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from glmkit.rl.rollout import RolloutRequest, SamplingParams
from glmkit.rl.rollout.inprocess import InProcessEngine
from glmkit.rl.rollout.server import OpenAIServerEngine
from glmkit.scoring import Sample

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("fastapi") is None or shutil.which("transformers") is None,
    reason="transformers serve needs fastapi and uvicorn (pip install 'transformers[serving]')",
)

CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for part in m['content'] %}{{ part['text'] }}{% endfor %}{% endif %}\n"
    "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)


def _save_tiny_chat_model(folder: Path) -> Path:
    """A 1-layer Llama over printable ASCII characters, with a chat template (random weights)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate([*specials, *(chr(c) for c in range(32, 127)), "\n"])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``(base_url, model_dir)`` of a running ``transformers serve``; stopped after the module."""
    model_dir = _save_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"))
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [shutil.which("transformers") or "transformers", "serve", str(model_dir)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"transformers serve exited with {server.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not start in 120 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1", model_dir
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


QUESTIONS = ["What is 2 + 3?", "Name a colour.", "Count the circles: o o o", "hello"]


async def _answers(engine, params: SamplingParams) -> list:
    futures = [
        engine.submit(RolloutRequest(f"q{i}", 0, Sample(id=f"q{i}", question=q, answer=""), params))
        for i, q in enumerate(QUESTIONS)
    ]
    try:
        return list(await asyncio.gather(*futures))
    finally:
        await engine.close()


def test_server_greedy_answers_equal_the_in_process_engine_on_the_same_weights(
    served: tuple[str, Path],
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_url, model_dir = served
    params = SamplingParams(max_new_tokens=12, temperature=0.0)
    server = OpenAIServerEngine(base_url, model=str(model_dir), flavour="generic", logprobs=False)
    heard: list[str] = []

    async def run_server() -> list:
        futures = [
            server.submit(
                RolloutRequest(f"q{i}", 0, Sample(id=f"q{i}", question=q, answer=""), params),
                on_complete=lambda c: heard.append(c.request.prompt_id),
            )
            for i, q in enumerate(QUESTIONS)
        ]
        try:
            return list(await asyncio.gather(*futures))
        finally:
            await server.close()

    remote = asyncio.run(run_server())
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    local = asyncio.run(
        _answers(InProcessEngine(model, AutoTokenizer.from_pretrained(model_dir), in_thread=False), params)
    )
    assert sorted(heard) == [f"q{i}" for i in range(len(QUESTIONS))]  # every completion callback fired
    for mine, theirs in zip(local, remote, strict=True):
        assert theirs.error is None and theirs.finish_reason in ("stop", "length")
        assert theirs.finish_reason == mine.finish_reason, mine.request.sample.question
        assert theirs.response == mine.response, mine.request.sample.question
        assert theirs.response_tokens == mine.response_tokens
    assert any(c.response for c in remote)  # a random model still says something


def test_an_unreachable_or_refusing_server_finishes_requests_with_an_error(served: tuple[str, Path]) -> None:
    base_url, _ = served
    params = SamplingParams(max_new_tokens=4, temperature=0.0)
    wrong_model = OpenAIServerEngine(base_url, model="no-such-model", flavour="generic", logprobs=False)
    done = asyncio.run(_answers(wrong_model, params))
    assert all(c.finish_reason == "error" and c.error for c in done)
    nobody = OpenAIServerEngine(f"http://127.0.0.1:{_free_port()}/v1", flavour="generic", timeout_s=5.0)
    done = asyncio.run(_answers(nobody, params))
    assert all(c.finish_reason == "error" and c.error for c in done)


if __name__ == "__main__":  # pragma: no cover - serve the tiny model by hand
    folder = _save_tiny_chat_model(Path(sys.argv[1]))
    print(f"transformers serve {folder}")
