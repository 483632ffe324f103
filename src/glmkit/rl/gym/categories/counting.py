"""``counting``: how many shapes of a kind, a colour, or both are in a scene (exact number)."""

from __future__ import annotations

import numpy as np

from glmkit.eval.benchmarks import SHORT_PROMPT
from glmkit.eval.demo.common import choice, demo_scene, randint
from glmkit.rl.gym.category import TASK_CATEGORIES, Draft, TaskCategory, VerifierSpec
from glmkit.scoring import Sample

NUMERIC = VerifierSpec("numeric")
"""An exact number (no tolerance): the last number of the final answer."""


@TASK_CATEGORIES.register("counting")
class Counting(TaskCategory):
    """Count the shapes of one kind (``How many circles ...``), one colour, or one colour and kind,
    in a scene of :func:`glmkit.data.procedural.shape_scene` (the eval demos' named shapes, whole
    and apart). The answer is at least 1.

    Args:
        min_shapes / max_shapes: the number of shapes in a scene (both ends included).
        image_size: ``(width, height)`` of the scene.
        seed / size / source / data_dir: see :class:`~glmkit.rl.gym.category.TaskCategory`.
    """

    name = "counting"

    def __init__(
        self,
        min_shapes: int = 2,
        max_shapes: int = 10,
        image_size: tuple[int, int] = (480, 360),
        seed: int = 0,
        size: int = 100_000,
        source: str | None = None,
        data_dir: str | None = None,
    ) -> None:
        super().__init__(seed, size, source, data_dir)
        if not 1 <= min_shapes <= max_shapes:
            raise ValueError(
                f"counting: need 1 <= min_shapes <= max_shapes, got min_shapes={min_shapes}, max_shapes={max_shapes}"
            )
        self.min_shapes, self.max_shapes = int(min_shapes), int(max_shapes)
        self.image_size = (int(image_size[0]), int(image_size[1]))

    def draw(self, rng: np.random.Generator, index: int) -> Draft:
        scene = demo_scene(
            rng, self.image_size, randint(rng, self.min_shapes, self.max_shapes), unique_first=False
        )
        target = choice(rng, scene.shapes)  # asking about a shape that is there: the answer is >= 1
        ask = ("kind", "color", "both")[int(rng.integers(3))]
        if ask == "kind":
            count = sum(s.kind == target.kind for s in scene.shapes)
            question = f"How many {target.kind}s are there in the image?"
        elif ask == "color":
            count = sum(s.color_name == target.color_name for s in scene.shapes)
            question = f"How many {target.color_name} shapes are there in the image?"
        else:
            count = sum(s.label == target.label for s in scene.shapes)
            question = f"How many {target.color_name} {target.kind}s are there in the image?"
        return Draft(
            SHORT_PROMPT.format(question=question),
            count,
            [scene.image],
            {"ask": ask, "shapes": len(scene.shapes), "answer_type": "numeric"},
        )

    def verifiers(self) -> dict[str, VerifierSpec]:
        return {"numeric": NUMERIC}

    def oracle(self, sample: Sample) -> str:
        return str(sample.answer)
