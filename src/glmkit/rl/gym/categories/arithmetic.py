"""``arithmetic``: arithmetic over the values an image shows (sums and differences of chart bars)."""

from __future__ import annotations

import numpy as np

from glmkit.eval.benchmarks import SHORT_PROMPT
from glmkit.eval.demo.common import sample as pick
from glmkit.eval.demo.vqa import bar_chart
from glmkit.rl.gym.categories.counting import NUMERIC
from glmkit.rl.gym.category import TASK_CATEGORIES, Draft, TaskCategory, VerifierSpec
from glmkit.scoring import Sample

OPERATIONS = ("sum", "difference", "total", "range")


@TASK_CATEGORIES.register("arithmetic")
class Arithmetic(TaskCategory):
    """One operation over the printed values of a bar chart: the sum of two bars, how much larger
    one bar is than another, the total of all bars, or the largest minus the smallest. Exact number.

    Args:
        seed / size / source / data_dir: see :class:`~glmkit.rl.gym.category.TaskCategory`.
    """

    name = "arithmetic"

    def draw(self, rng: np.random.Generator, index: int) -> Draft:
        image, values = bar_chart(rng)
        op = OPERATIONS[int(rng.integers(len(OPERATIONS)))]
        a, b = pick(rng, list(values), 2)
        if op == "sum":
            question, answer = f"What is the sum of the values of bars {a} and {b}?", values[a] + values[b]
        elif op == "difference":
            hi, lo = (a, b) if values[a] >= values[b] else (b, a)
            question = f"By how much does the value of bar {hi} exceed the value of bar {lo}?"
            answer = values[hi] - values[lo]
        elif op == "total":
            question, answer = "What is the total of all the bar values?", sum(values.values())
        else:
            question = "What is the largest bar value minus the smallest bar value?"
            answer = max(values.values()) - min(values.values())
        return Draft(SHORT_PROMPT.format(question=question), answer, [image], {"op": op, "values": values})

    def verifiers(self) -> dict[str, VerifierSpec]:
        return {"numeric": NUMERIC}

    def oracle(self, sample: Sample) -> str:
        return str(sample.answer)
