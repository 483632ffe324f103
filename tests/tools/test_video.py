"""draw_video_objects_tracking: per-second sampling, consistent colours, GIF output."""

from __future__ import annotations

import pytest
from PIL import Image

from glmkit.tools.video import DrawVideoTrackingTool, frames_at_seconds

WHITE = (255, 255, 255)


def make_gif(path, n_frames: int, frame_ms: int, size=(80, 60)) -> None:
    frames = [Image.new("RGB", size, (255, 255, 255)) for _ in range(n_frames)]
    for i, frame in enumerate(frames):
        frame.putpixel((0, size[1] - 1), (i * 10 % 256, 0, 0))  # make frames differ so none are merged
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)


def tracks():
    return [
        {"label": "car", "boxes": [{"second": 0, "bbox": [100, 200, 400, 600]}, {"second": 2, "bbox": [500, 200, 800, 600]}]},
        {"label": "dog", "boxes": [{"second": 1, "bbox": [100, 100, 300, 900]}, {"second": 2, "bbox": [100, 100, 300, 900]}]},
    ]  # fmt: skip


def test_frames_at_seconds():
    assert frames_at_seconds([0, 0.5, 1.0, 1.5, 2.0, 2.5], 3.0) == [0, 2, 4]
    assert frames_at_seconds([0, 0.4, 0.8, 1.2], 1.6) == [
        0,
        2,
    ]  # frame 2 starts at 0.8 and is on screen at 1 s
    assert frames_at_seconds([0], 0.1) == [0]


def test_frame_id_list_with_consistent_colours_and_a_gif(context):
    for _ in range(6):
        context.add_image(Image.new("RGB", (100, 100), WHITE), prefix="frame")
    frame_ids = [f"frame_{i}" for i in range(2, 8)]
    args = {"video": frame_ids, "fps": 2, "tracks": tracks(), "line_width": 1}
    result = DrawVideoTrackingTool()(args, context)
    assert result.ok, result.error
    assert result.data["frame_indices"] == [0, 2, 4]  # 6 frames at 2 fps -> seconds 0, 1, 2
    assert result.data["seconds"] == [0, 1, 2]
    f0, f1, f2 = result.images
    car, dog = (tuple(result.data["colors"][k]) for k in ("car", "dog"))
    assert car != dog
    # car: second 0 at x = 10 (left edge), second 2 at x = 50; dog at x = 10 in seconds 1 and 2
    assert f0.getpixel((10, 40)) == car and f2.getpixel((50, 40)) == car
    assert f1.getpixel((10, 50)) == dog and f2.getpixel((10, 50)) == dog
    assert f1.getpixel((40, 40)) == WHITE  # no car box at second 1
    gif = result.files[0]
    assert gif.parent == context.scratch_dir() and gif.suffix == ".gif"
    with Image.open(gif) as anim:
        assert anim.n_frames == 3 and anim.info["duration"] == 1000
    assert len(result.image_ids) == 3


def test_gif_file_in_the_scratch_dir(context):
    make_gif(context.scratch_dir() / "clip.gif", n_frames=10, frame_ms=250)  # 2.5 s -> seconds 0, 1, 2
    result = DrawVideoTrackingTool()({"video": "clip.gif", "tracks": tracks(), "max_images": 2}, context)
    assert result.ok, result.error
    assert result.data["frame_indices"] == [0, 4, 8]
    assert len(result.images) == 2 and result.data["seconds"] == [0, 2]
    assert "2.50 s video" in result.text


def test_animated_image_id(context):
    path = context.scratch_dir() / "anim.gif"
    make_gif(path, n_frames=6, frame_ms=500)
    context.images["vid"] = Image.open(path)
    result = DrawVideoTrackingTool()({"video": "vid", "tracks": tracks()[:1]}, context)
    assert result.ok, result.error
    assert result.data["frame_indices"] == [0, 2, 4]


def test_paths_outside_the_allowed_directories_are_refused(context, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    make_gif(outside / "clip.gif", 6, 500)
    result = DrawVideoTrackingTool()({"video": str(outside / "clip.gif"), "tracks": tracks()[:1]}, context)
    assert not result.ok and "allowed directories" in result.error
    result = DrawVideoTrackingTool()({"video": "../elsewhere/clip.gif", "tracks": tracks()[:1]}, context)
    assert not result.ok and "allowed directories" in result.error
    allowed = DrawVideoTrackingTool(video_dirs=[outside])(
        {"video": str(outside / "clip.gif"), "tracks": tracks()[:1]}, context
    )
    assert allowed.ok, allowed.error
    # a relative name is looked up in every allowed directory, not only the scratch folder
    relative = DrawVideoTrackingTool(video_dirs=[outside])(
        {"video": "clip.gif", "tracks": tracks()[:1]}, context
    )
    assert relative.ok, relative.error
    missing = DrawVideoTrackingTool(video_dirs=[outside])(
        {"video": "nope.gif", "tracks": tracks()[:1]}, context
    )
    assert not missing.ok and "does not exist" in missing.error


@pytest.mark.parametrize(
    ("tracks_arg", "match"),
    [
        ([{"label": "a", "boxes": [{"second": 5, "bbox": [0, 0, 10, 10]}]}], "past the end"),
        ([{"label": "a", "boxes": [{"second": 0, "bbox": [0, 0, 10, 10]}, {"second": 0, "bbox": [0, 0, 9, 9]}]}], "twice"),
        ([{"label": "a", "boxes": [{"second": 0, "bbox": [0, 0, 10, 10]}]},
          {"label": "a", "boxes": [{"second": 1, "bbox": [0, 0, 10, 10]}]}], "unique"),
        ([{"label": "a", "boxes": [{"second": 0, "bbox": [10, 0, 5, 10]}]}], "x1"),
    ],
)  # fmt: skip
def test_track_errors(context, tracks_arg, match):
    args = {"video": ["img_1", "img_1", "img_1"], "tracks": tracks_arg}
    result = DrawVideoTrackingTool()(args, context)
    assert not result.ok and match in result.error


def test_missing_file_names_the_image_ids(context):
    result = DrawVideoTrackingTool()({"video": "nope.gif", "tracks": tracks()[:1]}, context)
    assert not result.ok and "does not exist" in result.error and "img_0" in result.error


def test_length_and_frame_size_limits(context):
    three = ["img_1", "img_1", "img_1"]
    track = [{"label": "a", "boxes": [{"second": 0, "bbox": [0, 0, 10, 10]}]}]
    result = DrawVideoTrackingTool(max_seconds=2)({"video": three, "tracks": track}, context)
    assert not result.ok and "above the limit of 2 s" in result.error
    mixed = DrawVideoTrackingTool()({"video": ["img_1", "img_0"], "tracks": track}, context)
    assert not mixed.ok and "not 100x100" in mixed.error
