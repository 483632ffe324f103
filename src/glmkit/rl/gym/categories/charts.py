"""``chart_values``: read a value off a bar chart (a named bar, the tallest, the shortest)."""

from __future__ import annotations

import numpy as np

from glmkit.eval.benchmarks import SHORT_PROMPT
from glmkit.eval.demo.common import choice
from glmkit.eval.demo.vqa import bar_chart
from glmkit.rl.gym.categories.counting import NUMERIC
from glmkit.rl.gym.category import TASK_CATEGORIES, Draft, TaskCategory, VerifierSpec
from glmkit.scoring import Sample


@TASK_CATEGORIES.register("chart_values")
class ChartValues(TaskCategory):
    """Bar charts of 3-5 labelled bars (values 10-95, printed above the bars; the ``demo-vqa``
    chart); the question asks for one bar's value, the largest or the smallest value. Exact number.

    Args:
        seed / size / source / data_dir: see :class:`~glmkit.rl.gym.category.TaskCategory`.
    """

    name = "chart_values"

    def draw(self, rng: np.random.Generator, index: int) -> Draft:
        image, values = bar_chart(rng)
        ask = ("bar", "max", "min")[int(rng.integers(3))]
        if ask == "bar":
            label = choice(rng, list(values))
            question, answer = f"What is the value of bar {label}?", values[label]
        elif ask == "max":
            question, answer = "What is the largest value in the chart?", max(values.values())
        else:
            question, answer = "What is the smallest value in the chart?", min(values.values())
        return Draft(SHORT_PROMPT.format(question=question), answer, [image], {"ask": ask, "values": values})

    def verifiers(self) -> dict[str, VerifierSpec]:
        return {"numeric": NUMERIC}

    def oracle(self, sample: Sample) -> str:
        return str(sample.answer)
