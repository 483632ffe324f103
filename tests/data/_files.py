"""Small image files, corrupt files and WebDataset shards written into a test's tmp_path."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def image_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (20, 16), fmt: str = "JPEG") -> bytes:
    """An encoded image of one colour with a little texture, so decoding has something to do."""
    rng = np.random.default_rng(sum(colour))
    pixels = np.clip(np.asarray(colour) + rng.integers(-3, 4, size=(size[1], size[0], 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buf, format=fmt)
    return buf.getvalue()


def write_image(path: Path, colour: tuple[int, int, int] = (200, 30, 30), fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(colour, fmt=fmt))
    return path


def truncated_jpeg(size: tuple[int, int] = (64, 64)) -> bytes:
    data = image_bytes((10, 120, 240), size=size)
    return data[: len(data) // 2]


def random_bytes(n: int = 500, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8).tobytes()


def write_shard(path: Path, members: dict[str, bytes]) -> Path:
    """A tar with the given member names and contents, in insertion order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path
