"""What the multi-step episode tests share: a tokenizer trained on the episode's text, its processor,
scripted tool calls, a forcing ``prefix_allowed_tokens_fn``, and a runner for rollout requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import torch

from glmkit.models.vlm_processor import VLMProcessor
from glmkit.rl.gym.categories import SmallText
from glmkit.rl.rollout import Completion, RolloutEngine, RolloutRequest
from tests.helpers.tokenizers import byte_level_bpe

CORNER_BOXES = {  # norm1000 crops of each corner, large enough to hold the label
    "top-left": [0, 0, 250, 100],
    "top-right": [750, 0, 1000, 100],
    "bottom-left": [0, 900, 250, 1000],
    "bottom-right": [750, 900, 1000, 1000],
}


def crop_call(corner: str) -> str:
    """The Hermes-format ``crop_image`` call a reading policy writes for ``corner``."""
    arguments = {"image": "img_0", "bbox": CORNER_BOXES[corner], "zoom": 4}
    return (
        f"Zoom in.\n<tool_call>\n{json.dumps({'name': 'crop_image', 'arguments': arguments})}\n</tool_call>"
    )


def episode_tokenizer() -> Any:
    """A byte-level BPE tokenizer trained here on the small-text episode's text (no download): it
    decodes what it encodes exactly, so a tool call written as token ids parses after decoding."""
    cat = SmallText(size=8)
    env_text = [cat.draw(cat.rng(i), i).question for i in range(2)]
    corpus = [
        *env_text,
        *(crop_call(c) for c in CORNER_BOXES),
        TOOLS_TEXT,
        "X5C-9XW SN 0123456789 ABCDEFGHJKLMNPQRSTUVWXYZ",
    ]
    return byte_level_bpe(corpus * 5, vocab_size=700, eos_token="<|endoftext|>")


def _tools_text() -> str:
    from glmkit.agent.formats import get_tool_call_format
    from glmkit.tools import get_tool

    return get_tool_call_format("hermes").render_tools([get_tool("crop_image").schema()])


TOOLS_TEXT = _tools_text()


def episode_processor() -> VLMProcessor:
    """The test tokenizer with 8-pixel patches, at most 16 per image (a 4x4 grid)."""
    return VLMProcessor(episode_tokenizer(), patch_size=8, merge_size=2, max_num_patches=16)


def forcing(processor: VLMProcessor, scripts: Sequence[Sequence[int]], only_with_tools: bool = False) -> Any:
    """A ``prefix_allowed_tokens_fn`` that makes ``generate`` write ``scripts[k]`` in turn ``k`` (the
    model's own logits still give the log-probabilities); later turns are free. With
    ``only_with_tools``, prompts without a system message (single-step samples) are free."""
    assistant, system = processor.token_id("<|assistant|>"), processor.token_id("<|system|>")
    everything = list(range(len(processor.tokenizer)))

    def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        row = input_ids.tolist()
        if only_with_tools and system not in row:
            return everything
        turn = row.count(assistant) - 1
        start = len(row) - row[::-1].index(assistant) + 1  # after "<|assistant|>\n"
        if turn >= len(scripts):
            return everything
        done = len(row) - start
        return [scripts[turn][done]] if done < len(scripts[turn]) else everything

    return allowed


def run_requests(engine: RolloutEngine, requests: Sequence[RolloutRequest]) -> list[Completion]:
    """Submit every request, check each completion's callback ran, close the engine."""

    async def run() -> list[Completion]:
        done: list[Completion] = []
        out = await asyncio.gather(*(engine.submit(r, done.append) for r in requests))
        assert len(done) == len(requests)  # every completion's callback ran
        await engine.close()
        return list(out)

    return asyncio.run(run())
