"""``draw_video_objects_tracking``: draw per-second object tracks on a video (GLM-5V report section 3.1).

A video is a list of frame image ids (with their frame rate), one animated image already in the
conversation, or an animated image file (GIF, WebP, APNG: whatever Pillow reads) in the context's
scratch directory or a directory the tool was given. Nothing beyond Pillow is needed.

The video is sampled at one frame per second (the frame shown at ``t = 0, 1, 2, ... s``); a track
gives an object's box at some of those seconds. Each track's label keeps one colour in every
frame, so the same object is recognisable across the sequence. The result is a few annotated
sampled frames as images and an animated GIF of all sampled frames in the scratch directory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageSequence

from glmkit.tools.base import TOOLS, Tool, ToolContext, ToolError, ToolResult, object_schema
from glmkit.tools.coords import BOX_SCHEMA, COORD_SPACE_SCHEMA, CoordSpace, box_to_pixels
from glmkit.tools.drawing import (
    COLOR_SCHEMA,
    LINE_WIDTH_SCHEMA,
    RGB,
    assign_colors,
    default_line_width,
    draw_label,
    font_for,
    rgb_canvas,
)

# GIF frames with (near) zero delay are shown for 100 ms by browsers; do the same.
_MIN_FRAME_MS = 20
_DEFAULT_FRAME_MS = 100


def frames_at_seconds(timestamps: Sequence[float], duration: float) -> list[int]:
    """Index of the frame on screen at each whole second ``0 <= s < duration``.

    ``timestamps`` are the (increasing) start times of the frames in seconds.
    """
    seconds = max(1, math.ceil(duration - 1e-9))
    picks, k = [], 0
    for s in range(seconds):
        while k + 1 < len(timestamps) and timestamps[k + 1] <= s + 1e-9:
            k += 1
        picks.append(k)
    return picks


@dataclass
class SampledVideo:
    """A video sampled at 1 fps: the frame on screen at each whole second."""

    frames: list[Image.Image]  # one per second
    indices: list[int]  # index of each sampled frame in the source
    duration: float  # seconds


def sample_frames(
    frames: Sequence[Image.Image], starts: Sequence[float], duration: float, max_seconds: int
) -> SampledVideo:
    """Pick the frame on screen at each whole second (RGB copies of the picked frames only)."""
    picks = frames_at_seconds(starts, duration)
    if len(picks) > max_seconds:
        raise ToolError(f"video lasts {len(picks)} s, above the limit of {max_seconds} s")
    return SampledVideo([frames[i].convert("RGB") for i in picks], picks, duration)


def read_animation(image: Image.Image, max_pixels: int, max_seconds: int = 3600) -> SampledVideo:
    """Sample an animated (or still) image at 1 fps; only the sampled frames are kept in memory.

    Every frame is still decoded once (GIF frames build on their predecessors), so the total
    pixel count of all frames is bounded by ``max_pixels``.
    """
    n_frames = getattr(image, "n_frames", 1)
    if image.width * image.height * n_frames > max_pixels:
        raise ToolError(
            f"video has {n_frames} frames of {image.width}x{image.height}, above the limit of "
            f"{max_pixels} pixels in total"
        )
    starts, t = [], 0.0
    for frame in ImageSequence.Iterator(image):
        starts.append(t)
        ms = frame.info.get("duration") or _DEFAULT_FRAME_MS
        t += (ms if ms >= _MIN_FRAME_MS else _DEFAULT_FRAME_MS) / 1000.0
    picks = frames_at_seconds(starts, t)
    if len(picks) > max_seconds:
        raise ToolError(f"video lasts {len(picks)} s, above the limit of {max_seconds} s")
    kept: dict[int, Image.Image] = {}
    for index in sorted(set(picks)):
        image.seek(index)
        kept[index] = image.convert("RGB")
    image.seek(0)
    return SampledVideo([kept[i] for i in picks], picks, t)


def _track_schema() -> dict[str, Any]:
    entry = object_schema(
        {"second": {"type": "integer", "minimum": 0}, "bbox": BOX_SCHEMA}, required=("second", "bbox")
    )
    return object_schema(
        {
            "label": {"type": "string", "minLength": 1, "maxLength": 200},
            "color": COLOR_SCHEMA,
            "boxes": {
                "type": "array",
                "minItems": 1,
                "items": entry,
                "description": "The object's box per second.",
            },
        },
        required=("label", "boxes"),
    )


@TOOLS.register("draw_video_objects_tracking")
class DrawVideoTrackingTool(Tool):
    """Draw object tracks (per-second boxes with consistent labels and colours) on a video."""

    name = "draw_video_objects_tracking"
    description = (
        "Draw tracked objects on a video sampled at one frame per second. The video is a list of frame "
        "image ids (give fps), an animated image id, or an animated image file (e.g. GIF) in the "
        "working directory. Each track has a unique label and boxes [x1, y1, x2, y2] at given seconds "
        '(0-1000 relative to the frame unless coord_space is "pixels"). Returns annotated frames and '
        "an animated GIF."
    )
    parameters = object_schema(
        {
            "video": {
                "anyOf": [
                    {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                    {"type": "string", "minLength": 1},
                ],
                "description": "Frame image ids in order, an animated image id, or a file path.",
            },
            "fps": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 240,
                "default": 1,
                "description": "Frame rate of a list of frame ids.",
            },
            "tracks": {"type": "array", "minItems": 1, "maxItems": 100, "items": _track_schema()},
            "coord_space": COORD_SPACE_SCHEMA,
            "line_width": LINE_WIDTH_SCHEMA,
            "max_images": {
                "type": "integer",
                "minimum": 1,
                "maximum": 32,
                "default": 8,
                "description": "At most this many annotated frames are returned as images.",
            },
        },
        required=("video", "tracks"),
    )

    def __init__(
        self,
        video_dirs: Sequence[str | Path] = (),
        max_pixels: int = 400_000_000,
        max_seconds: int = 3600,
    ) -> None:
        self.video_dirs = [Path(d) for d in video_dirs]
        self.max_pixels = max_pixels
        self.max_seconds = max_seconds

    def run(
        self,
        context: ToolContext,
        video: str | list[str],
        tracks: list[dict[str, Any]],
        fps: float = 1.0,
        coord_space: CoordSpace = "norm1000",
        line_width: int | None = None,
        max_images: int = 8,
        **_: Any,
    ) -> ToolResult:
        """Sample ``video`` once per second, draw ``tracks`` and write an animated GIF."""
        sampled = self._load(context, video, float(fps))
        size = sampled.frames[0].size
        labels = [t["label"] for t in tracks]
        duplicates = sorted({lab for lab in labels if labels.count(lab) > 1})
        if duplicates:
            raise ToolError(
                f"track labels must be unique (one track per object); repeated: {', '.join(duplicates)}"
            )
        colors = assign_colors(labels, [t.get("color") or None for t in tracks])
        per_second = self._boxes_by_second(tracks, size, coord_space, len(sampled.frames))
        width = int(line_width) if line_width else default_line_width(size)
        font = font_for(size)
        annotated = []
        for second, frame in enumerate(sampled.frames):
            canvas = rgb_canvas(frame)
            if canvas.size != size:
                raise ToolError(
                    f"frame at {second} s is {canvas.size[0]}x{canvas.size[1]}, not {size[0]}x{size[1]}"
                )
            draw = ImageDraw.Draw(canvas)
            for track_index, box in per_second.get(second, []):
                draw.rectangle(box, outline=colors[track_index], width=width)
            for track_index, box in per_second.get(second, []):
                draw_label(draw, (box[0], box[1]), labels[track_index], colors[track_index], font, size)
            draw_label(draw, (0, 0), f"t={second}s", (32, 32, 32), font, size, above=False)
            annotated.append(canvas)
        gif_path = self._write_gif(context, annotated)
        chosen = self._choose_seconds(sorted(per_second) or list(range(len(annotated))), int(max_images))
        legend = ", ".join(f"{lab} {_hex(c)}" for lab, c in zip(labels, colors, strict=True))
        text = (
            f"Sampled {len(annotated)} frame(s) at 1 fps from a {sampled.duration:.2f} s video; drew {len(tracks)} track(s) "
            f"({legend}). Returned frames at seconds {chosen}; animation saved to {gif_path}"
        )
        return ToolResult(
            text=text,
            images=[annotated[s] for s in chosen],
            files=[gif_path],
            data={
                "seconds": chosen,
                "frame_indices": sampled.indices,
                "colors": {lab: list(c) for lab, c in zip(labels, colors, strict=True)},
                "gif": str(gif_path),
            },
        )

    def _load(self, context: ToolContext, video: str | list[str], fps: float) -> SampledVideo:
        if isinstance(video, list):
            frames = [context.get_image(image_id) for image_id in video]
            starts = [k / fps for k in range(len(frames))]
            return sample_frames(frames, starts, len(frames) / fps, self.max_seconds)
        if video in context.images:
            return read_animation(context.images[video], self.max_pixels, self.max_seconds)
        path = self._resolve_path(context, video)
        try:
            with Image.open(path) as image:
                return read_animation(image, self.max_pixels, self.max_seconds)
        except (OSError, Image.DecompressionBombError) as exc:
            raise ToolError(f"cannot read video {str(path)!r}: {exc}") from None

    def _resolve_path(self, context: ToolContext, video: str) -> Path:
        # The model names the file; it may only read from directories the tool was given.
        roots = [context.scratch_dir().resolve(), *(d.resolve() for d in self.video_dirs)]
        candidate = Path(video)
        if not candidate.is_absolute():  # the first allowed directory that has it (scratch first)
            candidate = next((root / video for root in roots if (root / video).is_file()), roots[0] / video)
        resolved = candidate.resolve()
        if not any(resolved.is_relative_to(root) for root in roots):
            allowed = ", ".join(str(r) for r in roots)
            raise ToolError(
                f"{video!r} is neither an image id nor a file under the allowed directories ({allowed})"
            )
        if not resolved.is_file():
            known = ", ".join(context.images) or "none"
            raise ToolError(f"video file {str(resolved)!r} does not exist (image ids available: {known})")
        return resolved

    @staticmethod
    def _boxes_by_second(
        tracks: list[dict[str, Any]], size: tuple[int, int], space: CoordSpace, n_seconds: int
    ) -> dict[int, list[tuple[int, tuple[int, int, int, int]]]]:
        per_second: dict[int, list[tuple[int, tuple[int, int, int, int]]]] = {}
        for t, track in enumerate(tracks):
            seen: set[int] = set()
            for j, entry in enumerate(track["boxes"]):
                second = int(entry["second"])
                where = f"tracks[{t}] ({track['label']}).boxes[{j}]"
                if second >= n_seconds:
                    raise ToolError(
                        f"{where}: second {second} is past the end of the video (0..{n_seconds - 1})"
                    )
                if second in seen:
                    raise ToolError(f"{where}: second {second} appears twice in this track")
                seen.add(second)
                box = box_to_pixels(entry["bbox"], size, space, name=f"{where}.bbox")
                per_second.setdefault(second, []).append((t, box))
        return per_second

    @staticmethod
    def _choose_seconds(seconds: list[int], limit: int) -> list[int]:
        if len(seconds) <= limit:
            return seconds
        step = (len(seconds) - 1) / (limit - 1) if limit > 1 else 0
        return sorted({seconds[round(i * step)] for i in range(limit)})

    @staticmethod
    def _write_gif(context: ToolContext, frames: list[Image.Image]) -> Path:
        out_dir = context.scratch_dir()
        index = 0
        while (out_dir / f"tracking_{index}.gif").exists():
            index += 1
        path = out_dir / f"tracking_{index}.gif"
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=1000, loop=0, optimize=False)
        return path


def _hex(color: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)
