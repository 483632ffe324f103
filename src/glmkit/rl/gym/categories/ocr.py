"""``ocr``: read rendered text (a word, a serial code or a short sentence) exactly."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from glmkit.data.fonts import load_font
from glmkit.eval.demo.common import WORDS, choice, randint, serial_code
from glmkit.eval.demo.common import sample as pick
from glmkit.rl.gym.category import TASK_CATEGORIES, Draft, TaskCategory, VerifierSpec
from glmkit.scoring import Sample

EXACT_MATCH = VerifierSpec("exact_match")
"""The final answer equals the reference character for character (ends stripped)."""
OCR_NED = VerifierSpec("ocr_ned")
"""1 - normalised edit distance: partial credit for a nearly right reading."""
QUESTION = "Read the text in the image. Answer with the text only."
KINDS = ("word", "code", "sentence")


def text_image(rng: np.random.Generator, text: str, font_size: int) -> Image.Image:
    """Dark text on a light plain background with a margin (the ``demo-ocr`` style)."""
    font = load_font(font_size)
    bg = tuple(randint(rng, 200, 255) for _ in range(3))
    fg = tuple(randint(rng, 0, 60) for _ in range(3))
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    image = Image.new("RGB", (right - left + 40, bottom - top + 30), bg)
    ImageDraw.Draw(image).text((20 - left, 15 - top), text, font=font, fill=fg)
    return image


@TASK_CATEGORIES.register("ocr")
class OCR(TaskCategory):
    """Read a word, a serial code (``K7T-9ZB``, no vowels) or a four-word sentence; the reward is
    the mean of exact match and 1 - NED.

    Args:
        font_sizes: ``(low, high)`` pixel sizes of the text (both ends included).
        seed / size / source / data_dir: see :class:`~glmkit.rl.gym.category.TaskCategory`.
    """

    name = "ocr"

    def __init__(
        self,
        font_sizes: tuple[int, int] = (18, 34),
        seed: int = 0,
        size: int = 100_000,
        source: str | None = None,
        data_dir: str | None = None,
    ) -> None:
        super().__init__(seed, size, source, data_dir)
        low, high = (int(v) for v in font_sizes)
        if not 8 <= low <= high:
            raise ValueError(
                f"{self.name}: font_sizes must be (low, high) with 8 <= low <= high, got {font_sizes!r}"
            )
        self.font_sizes = (low, high)

    def draw(self, rng: np.random.Generator, index: int) -> Draft:
        kind = choice(rng, KINDS)
        if kind == "word":
            text = choice(rng, WORDS).capitalize()
        elif kind == "code":
            text = serial_code(rng)
        else:
            text = " ".join(pick(rng, WORDS, 4)).capitalize() + "."
        image = text_image(rng, text, randint(rng, *self.font_sizes))
        return Draft(QUESTION, text, [image], {"kind": kind})

    def verifiers(self) -> dict[str, VerifierSpec]:
        return {"exact_match": EXACT_MATCH, "ocr_ned": OCR_NED}

    def oracle(self, sample: Sample) -> str:
        return str(sample.answer)
