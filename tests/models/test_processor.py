"""VLMProcessor: special tokens, NaFlex grids and placeholders, video sampling and time markers, chat
template, 0-1000 boxes, save/load (everything offline: a tokenizer trained here on a few strings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from glmkit.models.vlm_processor import (
    BEGIN_IMAGE,
    END_IMAGE,
    IMAGE_TOKEN,
    SPECIAL_TOKENS,
    Video,
    VLMProcessor,
    box_from_norm1000,
    box_to_norm1000,
    format_boxes,
    point_from_norm1000,
    point_to_norm1000,
    sample_frame_indices,
)
from tests.helpers.tokenizers import byte_level_bpe

CORPUS = [
    "What is in the image? A red square on a blue background.",
    "Where is the circle? It moves to the right. Answer with a box.",
    "<tool_call>crop_image\n<arg_key>bbox</arg_key>\n<arg_value>[1, 2, 3, 4]</arg_value>\n</tool_call>",
]


def tiny_tokenizer():
    """A byte-level BPE tokenizer trained here on a few strings (no download)."""
    return byte_level_bpe(CORPUS * 10, vocab_size=320, eos_token="<|endoftext|>")


def tiny_processor(**kwargs) -> VLMProcessor:
    """Patch 8, 64 patches per image, 16 per video frame, 2 fps."""
    args = {"patch_size": 8, "max_num_patches": 64, "video_max_num_patches": 16, "video_fps": 2.0}
    return VLMProcessor(tiny_tokenizer(), **{**args, **kwargs})


def moving_square_video(num_frames: int = 16, fps: float = 8.0, size: tuple[int, int] = (48, 32)) -> Video:
    """A procedural clip: a red square crossing a blue background left to right."""
    frames = []
    for i in range(num_frames):
        frame = Image.new("RGB", size, (20, 40, 200))
        x = int(i * (size[0] - 10) / max(num_frames - 1, 1))
        ImageDraw.Draw(frame).rectangle([x, 10, x + 9, 19], fill=(230, 20, 20))
        frames.append(frame)
    return Video(frames, fps=fps)


@pytest.fixture(scope="module")
def processor() -> VLMProcessor:
    return tiny_processor()


def test_special_tokens_are_single_tokens_and_model_kwargs(processor):
    vocab = processor.tokenizer.get_vocab()
    assert all(token in vocab for token in SPECIAL_TOKENS)
    assert processor.tokenizer.pad_token is not None
    kwargs = processor.model_kwargs()
    assert kwargs["image_token_id"] == vocab[IMAGE_TOKEN]
    assert kwargs["vocab_size"] == len(processor.tokenizer)
    # adding them again is a no-op
    again = VLMProcessor(processor.tokenizer, patch_size=8)
    assert len(again.tokenizer) == kwargs["vocab_size"]


@pytest.mark.parametrize("size", [(64, 32), (20, 50), (8, 8), (300, 40), (33, 77)])
def test_image_grid_keeps_aspect_under_budget_with_even_sides(processor, size):
    h, w = processor.image_grid(*size)
    assert h % 2 == 0 and w % 2 == 0 and 4 <= h * w <= processor.max_num_patches
    width, height = size
    if min(width, height) * 4 >= max(width, height):  # not extreme: the aspect is roughly kept
        assert abs((w / h) / (width / height) - 1) < 0.6


def test_placeholders_follow_each_image_grid_and_text_only_samples_mix(processor):
    wide, tall = Image.new("RGB", (64, 32), "red"), Image.new("RGB", (20, 50), "blue")
    texts = [
        f"{BEGIN_IMAGE}{IMAGE_TOKEN}{END_IMAGE} What is in the image?",
        "A text-only sample.",
        f"Two: {IMAGE_TOKEN} and {IMAGE_TOKEN}",
    ]
    batch = processor(texts, images=[wide, tall, wide])  # flat list, consumed in order
    grids = batch["grid_thw"].tolist()
    assert grids[0] == [1, *processor.image_grid(64, 32)] and grids[1] == [1, *processor.image_grid(20, 50)]
    assert grids[0] != grids[1]  # NaFlex: each image its own grid
    assert batch["visual_batch_index"].tolist() == [0, 2, 2]
    counts = (batch["input_ids"] == processor.image_token_id).sum(1).tolist()
    per_item = [t * h * w // 4 for t, h, w in grids]
    assert counts == [per_item[0], 0, per_item[1] + per_item[2]]
    n = sum(t * h * w for t, h, w in grids)
    assert batch["patches"].shape == (n, 8 * 8 * 3) and batch["coords"].shape == (n, 2)
    # patches are row-major over each grid
    h, w = grids[0][1:]
    assert batch["coords"][: h * w].tolist() == [[y, x] for y in range(h) for x in range(w)]
    # per-sample lists give the same result
    nested = processor(texts, images=[[wide], [], [tall, wide]])
    assert torch.equal(nested["input_ids"], batch["input_ids"]) and torch.equal(
        nested["patches"], batch["patches"]
    )
    # padding: right by default, attention mask marks it
    assert batch["attention_mask"][1].sum() < batch["attention_mask"].shape[1]
    assert batch["attention_mask"][1, 0] == 1


def test_text_only_batch_has_no_visual_keys(processor):
    batch = processor(["hello", "world, hello"])
    assert set(batch) == {"input_ids", "attention_mask"}


def test_marker_and_image_count_mismatch_names_the_sample(processor):
    image = Image.new("RGB", (16, 16))
    with pytest.raises(ValueError, match=r"sample 1: its text has 2 <\|image\|> marker\(s\) but 1 images"):
        processor(["no image", f"{IMAGE_TOKEN}{IMAGE_TOKEN}"], images=[[], [image]])
    with pytest.raises(ValueError, match=r"per sample: \[1, 0\]\) but 2 images"):
        processor([f"{IMAGE_TOKEN}", "none"], images=[image, image])


def test_frame_sampling_at_a_set_rate():
    indices, times = sample_frame_indices(16, fps=8.0, sample_fps=2.0, max_frames=32)
    assert indices == [0, 4, 8, 12] and times == [0.0, 0.5, 1.0, 1.5]
    # an odd count is padded with the last frame (temporal patch of 2)
    indices, times = sample_frame_indices(12, fps=8.0, sample_fps=2.0, max_frames=32)
    assert indices == [0, 4, 8, 8] and times == [0.0, 0.5, 1.0, 1.0]
    # a long video gets max_frames evenly spread frames
    indices, _ = sample_frame_indices(800, fps=10.0, sample_fps=2.0, max_frames=4)
    assert indices == [0, 200, 400, 600]


def test_video_expands_to_frame_pairs_with_time_markers(processor):
    video = moving_square_video(num_frames=16, fps=8.0)  # 2 s -> 4 frames at 2 fps -> 2 pairs
    batch = processor(["Watch <|begin_of_video|><|video|><|end_of_video|> Where does it go?"], videos=[video])
    t, h, w = batch["grid_thw"][0].tolist()
    assert t == 4 and h * w <= processor.video_max_num_patches and h % 2 == 0 and w % 2 == 0
    assert batch["patches"].shape[0] == t * h * w
    text = processor.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=False)
    group = IMAGE_TOKEN * (h * w // 4)
    assert (
        f"<|begin_of_video|>{BEGIN_IMAGE}{group}{END_IMAGE}0{BEGIN_IMAGE}{group}{END_IMAGE}1<|end_of_video|>"
        in text
    )
    # the frames differ (the square moves), so their patches do too
    frame = h * w
    assert not torch.equal(batch["patches"][:frame], batch["patches"][frame : 2 * frame])
    # frames as a plain list are taken as already sampled at video_fps; decimals in the markers
    fine = tiny_processor(time_decimals=1)
    listed = fine(["<|video|>"], videos=[list(video.frames[:4])])
    assert "0.0" in fine.tokenizer.decode(listed["input_ids"][0]) and "1.0" in fine.tokenizer.decode(
        listed["input_ids"][0]
    )


def test_video_frames_from_a_uint8_array(processor):
    video = moving_square_video(num_frames=8, fps=4.0)
    array = torch.from_numpy(np.stack([np.asarray(f) for f in video.frames]))  # F, H, W, C uint8
    from_array = processor(["<|video|>"], videos=[Video(array, fps=4.0)])
    from_pil = processor(["<|video|>"], videos=[video])
    assert torch.allclose(from_array["patches"], from_pil["patches"])


def test_chat_template_renders_glm_layout_and_tokenizes_with_media(processor):
    image = Image.new("RGB", (32, 32), "green")
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Colour?"}]},
        {"role": "assistant", "content": "Green."},
        {"role": "tool", "content": "done"},
    ]
    text = processor.apply_chat_template(messages)
    assert text == (
        "<|system|>\nBe brief.<|user|>\n<|begin_of_image|><|image|><|end_of_image|>Colour?"
        "<|assistant|>\nGreen.<|observation|>\n<tool_response>\ndone\n</tool_response><|assistant|>\n"
    )
    batch = processor.apply_chat_template(messages, tokenize=True)
    assert batch["grid_thw"].tolist() == [[1, *processor.image_grid(32, 32)]]
    # a batch of conversations, one of them text-only
    both = processor.apply_chat_template([messages, [{"role": "user", "content": "hi"}]], tokenize=True)
    assert both["input_ids"].shape[0] == 2 and both["visual_batch_index"].tolist() == [0]


def test_chat_images_from_data_urls_and_canonical_refs(processor):
    from glmkit.agent.client import image_part
    from glmkit.agent.context import image_ref

    image = Image.new("RGB", (24, 40), "red")
    messages = [{"role": "user", "content": [image_part(image), image_ref("img_0", image)]}]
    images, videos = processor.extract_media(messages)
    assert len(images) == 2 and images[0].size == (24, 40) and videos == []
    with pytest.raises(ValueError, match="message 0, part 0"):
        processor.extract_media([{"role": "user", "content": [{"type": "image", "image": 3}]}])


def test_boxes_and_points_in_0_1000():
    size = (640, 480)
    assert box_to_norm1000((64, 48, 320, 480), size) == [100, 100, 500, 1000]
    assert box_from_norm1000([100, 100, 500, 1000], size) == (64.0, 48.0, 320.0, 480.0)
    assert point_to_norm1000((0.5, 479.9), size) == [1, 1000]  # half up, clamped
    assert point_from_norm1000([500, 500], size) == (320.0, 240.0)
    for box in [(10, 20, 30, 40), (0, 0, 640, 480), (101.3, 7.7, 600.2, 400.9)]:
        back = box_from_norm1000(box_to_norm1000(box, size), size)
        assert all(abs(a - b) <= 0.5 * 640 / 1000 + 1e-9 for a, b in zip(back, box, strict=True))
    assert format_boxes([[100, 100, 500, 1000]]) == "<|begin_of_box|>[[100,100,500,1000]]<|end_of_box|>"
    with pytest.raises(ValueError, match="x1 <= x2"):
        box_to_norm1000((30, 0, 10, 5), size)
    with pytest.raises(ValueError, match="outside 0..1000"):
        point_from_norm1000([1001, 0], size)


def test_save_and_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = VLMProcessor.from_pretrained(tmp_path)
    assert loaded.config() == processor.config()
    image = Image.new("RGB", (40, 24), "red")
    a = processor([f"{IMAGE_TOKEN} hi"], images=[image])
    b = loaded([f"{IMAGE_TOKEN} hi"], images=[image])
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["patches"], b["patches"])


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="interpolation"):
        tiny_processor(interpolation="cubic")
    with pytest.raises(ValueError, match="max_num_patches=2"):
        tiny_processor(max_num_patches=2)
