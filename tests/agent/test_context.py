"""Image-history policies on a long multimodal trajectory."""

from __future__ import annotations

import pytest
from PIL import Image

from glmkit.agent.context import (
    CONTEXT_POLICIES,
    ImageWindowPolicy,
    KeepAllImages,
    get_context_policy,
    image_ref,
    image_tokens,
    iter_image_refs,
)


def trajectory(turns: int, size: tuple[int, int] = (56, 56)) -> list[dict]:
    """system, question with img_0, then per turn: assistant call, tool result, user message with img_<turn>."""
    messages = [
        {"role": "system", "content": "You look closely."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "img_0:"},
                image_ref("img_0", Image.new("RGB", size)),
                {"type": "text", "text": "What is it?"},
            ],
        },
    ]
    for t in range(1, turns + 1):
        call = {"id": f"c{t}", "type": "function", "function": {"name": "crop_image", "arguments": "{}"}}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{t}", "content": f"Cropped. New images: img_{t}"})
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"img_{t}:"},
                    image_ref(f"img_{t}", Image.new("RGB", size)),
                ],
            }
        )
    return messages


def kept_ids(messages):
    return [part["image_id"] for _, _, part in iter_image_refs(messages)]


def test_window_on_a_20_turn_trajectory_keeps_question_and_last_images():
    messages = trajectory(20)
    out = ImageWindowPolicy(keep_last=3).apply(messages)
    assert kept_ids(out) == ["img_0", "img_18", "img_19", "img_20"]
    # every omitted image keeps its slot and its id
    for t in range(1, 18):
        part = out[1 + 3 * t]["content"][1]
        assert part == {"type": "text", "text": f"[image img_{t} omitted]"}
    assert len(out) == len(messages)
    assert [len(m["content"]) if isinstance(m["content"], list) else 0 for m in out] == [
        len(m["content"]) if isinstance(m["content"], list) else 0 for m in messages
    ]
    # the history itself is untouched
    assert len(kept_ids(messages)) == 21
    assert out[1] is messages[1] and out[-1] is messages[-1]


def test_window_grows_then_slides_turn_by_turn():
    policy = ImageWindowPolicy(keep_last=4)
    for turns in range(0, 21):
        kept = kept_ids(policy.apply(trajectory(turns)))
        expected = ["img_0"] + [f"img_{t}" for t in range(max(1, turns - 3), turns + 1)]
        assert kept == expected


def test_chunked_removal_changes_the_prefix_only_every_chunk_images():
    policy = ImageWindowPolicy(keep_last=3, chunk=5)
    previous: list[str] = []
    for turns in range(1, 21):
        messages = trajectory(turns)
        omitted = [p["image_id"] for _, _, p in policy.omitted(messages)]
        assert len(omitted) % 5 == 0 or len(omitted) == turns
        assert omitted[: len(previous)] == previous  # an omitted image never comes back
        assert len(omitted) - len(previous) in (0, 5) or len(omitted) == turns
        assert turns - len(omitted) <= 3
        previous = omitted


def test_token_budget_drops_more_old_images():
    # 280x280 px -> 10x10 cells of 28 px -> 100 tokens each
    messages = trajectory(20, size=(280, 280))
    policy = ImageWindowPolicy(keep_last=10, max_image_tokens=350)
    out = policy.apply(messages)
    assert kept_ids(out) == ["img_0", "img_19", "img_20"]
    assert sum(image_tokens(p["image"]) for _, _, p in iter_image_refs(out)) <= 350


def test_question_images_can_be_dropped_too():
    out = ImageWindowPolicy(keep_last=2, keep_question_images=False).apply(trajectory(5))
    assert kept_ids(out) == ["img_4", "img_5"]


def test_placeholder_template_and_keep_all():
    out = ImageWindowPolicy(keep_last=0, placeholder="<{image_id}: {width}x{height} hidden>").apply(
        trajectory(1)
    )
    assert out[-1]["content"][1]["text"] == "<img_1: 56x56 hidden>"
    messages = trajectory(3)
    assert kept_ids(KeepAllImages().apply(messages)) == kept_ids(messages)


def test_image_tokens_match_glm4v_arithmetic():
    assert image_tokens(Image.new("RGB", (1120, 1120))) == 1600
    assert image_tokens(Image.new("RGB", (29, 28))) == 2


def test_registry_and_bad_arguments():
    assert {"image_window", "keep_all"} <= set(CONTEXT_POLICIES.names())
    assert isinstance(get_context_policy("image_window", keep_last=2), ImageWindowPolicy)
    assert isinstance(get_context_policy(None), KeepAllImages)
    with pytest.raises(ValueError, match="keep_last"):
        ImageWindowPolicy(keep_last=-1)
    with pytest.raises(ValueError, match="chunk"):
        ImageWindowPolicy(chunk=0)
