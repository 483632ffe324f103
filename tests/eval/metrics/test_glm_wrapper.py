"""Parity of the GLM wrapper step with VLMEvalKit ``vlmeval/vlm/glm.py``, ``GLMThinking.extract_answer``.

Expected outputs were derived by reading the reference: ``re.sub(r'<think>.*?</think>', '', ., DOTALL)``
then ``strip``; the first ``<answer>(.*?)</answer>`` (stripped); for OCRBench / MMLongBench_DOC stop;
else the first ``<|begin_of_box|>(.*?)<|end_of_box|>`` (stripped).
"""

from __future__ import annotations

import pytest

from glmkit.eval.metrics.glm_wrapper import check_wrapper, glm_wrapper_answer, reference_prediction

B, E = "<|begin_of_box|>", "<|end_of_box|>"

# (response, dataset, expected prediction)
CASES = [
    # plain text: only stripped
    ("  hello  ", None, "hello"),
    # a closed thinking block is removed
    ("<think>a</think>b", None, "b"),
    # every closed block is removed
    ("<think>a</think><think>b</think>c", None, "c"),
    # non-greedy: a nested block ends at the first </think>, the rest stays
    ("<think>a<think>b</think>c</think>d", None, "c</think>d"),
    # an unclosed <think> is not removed (truncated generations keep their reasoning)
    ("<think>unclosed", None, "<think>unclosed"),
    # a </think> without its opening tag is not removed
    ("x</think>y", None, "x</think>y"),
    # the tags are case-sensitive
    ("<THINK>a</THINK>b", None, "<THINK>a</THINK>b"),
    # the FIRST <answer> wins
    ("<answer> a </answer><answer>b</answer>", None, "a"),
    # the FIRST box wins (glmkit's own extractor takes the last)
    (f"{B} A {E}{B}B{E}", None, "A"),
    # a box inside the answer is extracted after the answer
    (f"<answer>{B}x{E}</answer>", None, "x"),
    # OCRBench keeps the box markers (no box extraction for that dataset)
    (f"<answer>{B}x{E}</answer>", "OCRBench", f"{B}x{E}"),
    # MMLongBench_DOC too
    (f"{B}x{E}", "MMLongBench_DOC", f"{B}x{E}"),
    # an unclosed box is no box
    (f"{B}unclosed", None, f"{B}unclosed"),
    # empty reply
    ("", None, ""),
    # a reply that is only thinking becomes empty
    ("<think>a</think>", None, ""),
    # DOTALL: blocks span lines
    ("<think>\nmulti\nline\n</think>\n<answer>\nok\n</answer>", None, "ok"),
    # Chinese text before a box is dropped with the box extraction
    (f"中文{B}答案{E}", None, "答案"),
    # an <answer> later in the text still wins over an earlier box
    (f"{B}x{E} <answer>y</answer>", None, "y"),
    # a box drafted inside thinking is removed with it
    (f"<think>{B}1{E}</think>{B}2{E}", None, "2"),
    # newlines inside the box are stripped
    (f"a{B}\nb\n{E}", None, "b"),
    # an empty answer tag gives an empty prediction
    ("<answer></answer>", None, ""),
]


@pytest.mark.parametrize(("response", "dataset", "expected"), CASES)
def test_glm_wrapper_matches_vlmevalkit(response: str, dataset: str | None, expected: str) -> None:
    assert glm_wrapper_answer(response, dataset) == expected


def test_wrapper_none_keeps_the_raw_reply_and_unknown_wrappers_are_refused() -> None:
    assert reference_prediction("<think>a</think> b ", "none") == "<think>a</think> b "
    assert reference_prediction(None, "glm") == ""
    with pytest.raises(ValueError, match="wrapper='qwen'"):
        reference_prediction("x", "qwen")
    with pytest.raises(ValueError, match="chartqa: wrapper='qwen' is not a model wrapper; valid: glm, none"):
        check_wrapper("qwen", "chartqa")
