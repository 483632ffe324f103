"""``grounding``: the box of the one shape a phrase names, as a 0-1000 box; the reward is the IoU."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from glmkit.eval.benchmarks import GROUNDING_PROMPT
from glmkit.eval.demo.common import choice, demo_scene, pixel_box, randint
from glmkit.rl.gym.category import TASK_CATEGORIES, Draft, TaskCategory, VerifierSpec
from glmkit.scoring import Sample

GROUNDING_IOU = VerifierSpec(
    "grounding",
    {"pred_space": "norm1000", "answer_space": "pixels"},
    score_key="grounding.iou",
)
"""The first box of the answer in 0-1000 against the pixel reference; the reward reads the IoU."""

DIVISOR_SIZES: tuple[tuple[int, int], ...] = ((500, 500), (500, 250), (250, 500), (250, 250))
"""Sides that divide 1000: every integer pixel box has an exact integer 0-1000 form, so the
oracle's box scores IoU 1 exactly."""


def check_sizes(name: str, sizes: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """``sizes`` as (width, height) pairs of at least 64 pixels, or a ``ValueError`` naming them."""
    out = tuple((int(w), int(h)) for w, h in sizes)
    if not out or any(min(s) < 64 for s in out):
        raise ValueError(
            f"{name}: image_sizes must be a non-empty list of (width, height) >= 64, got {sizes!r}"
        )
    return out


@TASK_CATEGORIES.register("grounding")
class Grounding(TaskCategory):
    """Find the one shape with a given colour and kind (``the red triangle``) among 0-6 others and
    answer with its box in 0-1000 coordinates (GLM-V's ``<|begin_of_box|>[[x1,y1,x2,y2]]<|end_of_box|>``).

    Args:
        max_distractors: other shapes in a scene, drawn from ``[0, max_distractors]``.
        image_sizes: the scene sizes to draw from (default: sides that divide 1000, see
            :data:`DIVISOR_SIZES`).
        seed / size / source / data_dir: see :class:`~glmkit.rl.gym.category.TaskCategory`.
    """

    name = "grounding"

    def __init__(
        self,
        max_distractors: int = 6,
        image_sizes: Sequence[Sequence[int]] = DIVISOR_SIZES,
        seed: int = 0,
        size: int = 100_000,
        source: str | None = None,
        data_dir: str | None = None,
    ) -> None:
        super().__init__(seed, size, source, data_dir)
        if not 0 <= max_distractors <= 12:
            raise ValueError(f"{self.name}: max_distractors must be in [0, 12], got {max_distractors}")
        self.max_distractors = int(max_distractors)
        self.image_sizes = check_sizes(self.name, image_sizes)

    def draw(self, rng: np.random.Generator, index: int) -> Draft:
        size = choice(rng, self.image_sizes)
        scene = demo_scene(rng, size, 1 + randint(rng, 0, self.max_distractors))
        target = scene.shapes[0]  # unique in colour and kind
        answer = {"box": pixel_box(target.box), "space": "pixels"}
        question = GROUNDING_PROMPT.format(question=f"Find the {target.label}.")
        return Draft(question, answer, [scene.image], {"target": target.label, "shapes": len(scene.shapes)})

    def verifiers(self) -> dict[str, VerifierSpec]:
        return {"grounding_iou": GROUNDING_IOU}

    def oracle(self, sample: Sample) -> str:
        return GROUNDING_IOU.build().oracle(sample)
