"""``pointing``: one 0-1000 point on the shape a phrase names; the reward is a hit in its box."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from glmkit.eval.benchmarks import POINTING_PROMPT
from glmkit.eval.demo.common import choice, demo_scene, pixel_box, randint
from glmkit.rl.gym.categories.grounding import check_sizes
from glmkit.rl.gym.category import TASK_CATEGORIES, Draft, TaskCategory, VerifierSpec
from glmkit.scoring import Sample

POINTING = VerifierSpec("pointing", {"pred_space": "norm1000", "answer_space": "pixels"})
"""The first point of the answer (0-1000) must fall in the target's pixel box."""


@TASK_CATEGORIES.register("pointing")
class Pointing(TaskCategory):
    """Point at the one shape with a given colour and kind among 1-6 others.

    Args:
        max_distractors: other shapes in a scene, drawn from ``[1, max_distractors]``.
        image_sizes: the scene sizes to draw from.
        seed / size / source / data_dir: see :class:`~glmkit.rl.gym.category.TaskCategory`.
    """

    name = "pointing"

    def __init__(
        self,
        max_distractors: int = 6,
        image_sizes: Sequence[Sequence[int]] = ((480, 360), (400, 400), (360, 480)),
        seed: int = 0,
        size: int = 100_000,
        source: str | None = None,
        data_dir: str | None = None,
    ) -> None:
        super().__init__(seed, size, source, data_dir)
        if not 1 <= max_distractors <= 12:
            raise ValueError(f"{self.name}: max_distractors must be in [1, 12], got {max_distractors}")
        self.max_distractors = int(max_distractors)
        self.image_sizes = check_sizes(self.name, image_sizes)

    def draw(self, rng: np.random.Generator, index: int) -> Draft:
        scene = demo_scene(rng, choice(rng, self.image_sizes), 1 + randint(rng, 1, self.max_distractors))
        target = scene.shapes[0]
        answer = {"box": pixel_box(target.box), "space": "pixels"}
        question = POINTING_PROMPT.format(question=f"Point to the {target.label}.")
        return Draft(question, answer, [scene.image], {"target": target.label, "shapes": len(scene.shapes)})

    def verifiers(self) -> dict[str, VerifierSpec]:
        return {"pointing": POINTING}

    def oracle(self, sample: Sample) -> str:
        return POINTING.build().oracle(sample)
