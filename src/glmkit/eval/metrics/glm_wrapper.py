"""The prediction a reference harness scores: a GLM reply as VLMEvalKit's GLM model wrapper passes it on.

Reference harnesses score the ``prediction`` their model wrapper returns, not the raw generation.
For GLM-4.1V/4.5V thinking models that wrapper is VLMEvalKit's
``vlmeval/vlm/glm.py``, ``GLMThinking.extract_answer``:

1. every ``<think>...</think>`` block is removed (case-sensitive, non-greedy; a ``<think>`` that is
   never closed, or a ``</think>`` without its opening tag, stays in the text), then the text is
   stripped;
2. if an ``<answer>...</answer>`` pair follows, the contents of the **first** one are kept
   (stripped);
3. for OCRBench and MMLongBench-Doc the text is returned as it is now;
4. otherwise the contents of the **first** ``<|begin_of_box|>...<|end_of_box|>`` pair are kept
   (stripped), if there is one.

The parity metrics of :mod:`glmkit.eval.metrics` apply this step (``wrapper="glm"``, their default)
before the benchmark's own scorer, so a number they report is the one VLMEvalKit would report for
the same GLM generations; ``wrapper="none"`` scores the raw reply, as a harness does for a model
whose wrapper post-processes nothing.
"""

from __future__ import annotations

import re
from typing import Literal

Wrapper = Literal["glm", "none"]
WRAPPERS: tuple[str, ...] = ("glm", "none")

# Datasets for which GLMThinking.extract_answer stops before looking for a box.
NO_BOX_DATASETS = frozenset({"OCRBench", "MMLongBench_DOC"})

_CLOSED_THINK = re.compile(r"<think>.*?</think>", re.S)
_FIRST_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_FIRST_BOX = re.compile(r"<\|begin_of_box\|>(.*?)<\|end_of_box\|>", re.S)


def glm_wrapper_answer(response: str | None, dataset: str | None = None) -> str:
    """``response`` as VLMEvalKit's ``GLMThinking.extract_answer`` returns it for ``dataset``.

    See the module docstring for the four steps; ``dataset`` matters only for ``"OCRBench"`` and
    ``"MMLongBench_DOC"``, whose box markers are kept.
    """
    text = _CLOSED_THINK.sub("", "" if response is None else str(response)).strip()
    answer = _FIRST_ANSWER.search(text)
    if answer is not None:
        text = answer.group(1).strip()
    if dataset in NO_BOX_DATASETS:
        return text
    box = _FIRST_BOX.search(text)
    return box.group(1).strip() if box is not None else text


def reference_prediction(response: str | None, wrapper: str, dataset: str | None = None) -> str:
    """The prediction a reference scorer sees: the GLM wrapper's answer, or the raw reply."""
    if wrapper == "glm":
        return glm_wrapper_answer(response, dataset)
    if wrapper == "none":
        return "" if response is None else str(response)
    raise ValueError(f"wrapper={wrapper!r}; valid: {', '.join(WRAPPERS)}")


def check_wrapper(wrapper: str, metric: str) -> None:
    """Raise a ``ValueError`` naming ``metric`` for an unknown ``wrapper``."""
    if wrapper not in WRAPPERS:
        raise ValueError(
            f"{metric}: wrapper={wrapper!r} is not a model wrapper; valid: {', '.join(WRAPPERS)}"
        )
