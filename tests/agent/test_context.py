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


@pytest.mark.parametrize(("keep_last", "chunk"), [(3, 5), (1, 4), (0, 3), (4, 1)])
def test_chunked_removal_changes_the_prefix_only_every_chunk_images(keep_last, chunk):
    policy = ImageWindowPolicy(keep_last=keep_last, chunk=chunk)
    previous: list[str] = []
    for turns in range(1, 21):
        messages = trajectory(turns)
        omitted = [p["image_id"] for _, _, p in policy.omitted(messages)]
        kept = kept_ids(policy.apply(messages))
        assert len(omitted) % chunk == 0
        assert omitted[: len(previous)] == previous  # an omitted image never comes back
        assert len(omitted) - len(previous) in (0, chunk)
        # between keep_last and keep_last + chunk - 1 tool images stay (all of them while fewer)
        assert min(turns, keep_last) <= turns - len(omitted) <= keep_last + chunk - 1
        if keep_last:
            assert kept[-1] == f"img_{turns}"  # the newest tool image is never hidden
        previous = omitted


def test_chunk_rounding_never_hides_the_newest_images():
    # two tool images, keep_last=1, chunk=4: dropping one would break the chunk, so none goes
    assert kept_ids(ImageWindowPolicy(keep_last=1, chunk=4).apply(trajectory(2))) == [
        "img_0",
        "img_1",
        "img_2",
    ]
    assert kept_ids(ImageWindowPolicy(keep_last=1, chunk=4).apply(trajectory(5))) == ["img_0", "img_5"]


def test_token_budget_in_chunks_goes_below_keep_last_only_as_far_as_needed():
    # 100 tokens per image; the question image costs 100, so 350 leaves room for two tool images
    policy = ImageWindowPolicy(keep_last=3, chunk=5, max_image_tokens=350)
    # 7 tool images: the window alone drops none (4 < 5); the budget needs 5 gone, a whole chunk
    assert kept_ids(policy.apply(trajectory(7, size=(280, 280)))) == ["img_0", "img_6", "img_7"]
    # 4 tool images: the budget needs 2 gone; rounding up to 5 would hide all, so only 2 go
    assert kept_ids(policy.apply(trajectory(4, size=(280, 280)))) == ["img_0", "img_3", "img_4"]
    # keep_last=1 and a budget needing one drop: rounding stops at keep_last (3 of 4 dropped)
    policy = ImageWindowPolicy(keep_last=1, chunk=5, max_image_tokens=450)
    assert kept_ids(policy.apply(trajectory(4, size=(280, 280)))) == ["img_0", "img_4"]


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


def test_a_follow_up_questions_image_is_kept_and_the_old_questions_image_ages():
    """A continued conversation: the current question is the last user turn that is not a tool
    observation, so its image stays and the first question's image is windowed like a tool image."""
    messages = trajectory(3)
    messages.append({"role": "assistant", "content": "It is a crop."})
    follow_up = image_ref("img_9", Image.new("RGB", (56, 56)))
    messages.append({"role": "user", "content": [{"type": "text", "text": "img_9:"}, follow_up]})
    assert kept_ids(ImageWindowPolicy(keep_last=2).apply(messages)) == ["img_2", "img_3", "img_9"]
    assert kept_ids(ImageWindowPolicy(keep_last=0).apply(messages)) == ["img_9"]


def test_token_budget_never_hides_the_newest_tool_image():
    # the question (100 tokens) plus one tool image (400 tokens) exceed the 300-token budget
    messages = trajectory(3, size=(280, 280))
    messages[-1]["content"][1] = image_ref("img_3", Image.new("RGB", (560, 560)))
    out = ImageWindowPolicy(keep_last=2, max_image_tokens=300).apply(messages)
    assert kept_ids(out) == ["img_0", "img_3"]
