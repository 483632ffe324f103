"""VQAv2-style accuracy as VLMEvalKit computes it: the official answer normalisation and the
leave-one-out soft score over the human answers (registered as ``vqa``).

Reference: VLMEvalKit ``vlmeval/dataset/utils/vqa_eval.py`` (``process_answer``,
``_process_digit_article``, ``process_line``, ``hit_calculate``) with ``process_punctuation`` from
``vlmeval/smp/misc.py``, themselves taken from the official VQA evaluation
(GT-Vision-Lab/VQA ``vqaEval.py``). ``process_answer`` is applied to the prediction and to every
human answer:

* newlines and tabs become spaces, the ends are stripped;
* punctuation (``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !``) is deleted when the text holds the
  mark next to a space, or holds a digit-comma-digit anywhere, and replaced by a space otherwise;
  the apostrophe, colon, ``%`` and ``$`` are kept;
* a period not followed by a digit is deleted (at most 32 of them: the reference passes
  ``re.UNICODE`` where ``re.sub`` expects its ``count``);
* lower case; the words ``none``, ``zero`` ... ``ten`` become digits (``eleven`` and above do not);
  the articles a, an, the are dropped; contractions written without their apostrophe are restored.

The score of one prediction over answers a_1..a_n is the mean over i of
min(1, #{j != i : a_j == prediction} / 3) (``vqa_score``): 3 matching annotators of 10 give 0.9,
4 or more give 1.0, and a single answer gives 0.

VLMEvalKit scores single-answer short-answer sets (OCRVQA, GQA) with its ``accuracy`` method
instead: the stripped, lower-cased prediction equals a stripped, lower-cased answer (no other
normalisation; the best answer counts). ``method="auto"`` (the default) uses ``vqa_score`` for a
sample whose answer is a list of two or more human answers and ``accuracy`` for a single answer;
``"vqa_score"`` and ``"accuracy"`` force one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from glmkit.eval.metrics.base import METRICS, reference_answers, scorer_info
from glmkit.eval.metrics.glm_wrapper import check_wrapper, reference_prediction
from glmkit.scoring import Sample, Scores, Verifier

VQAMethod = Literal["auto", "vqa_score", "accuracy"]
VQA_METHODS: tuple[str, ...] = ("auto", "vqa_score", "accuracy")

_PUNCTUATION = ';/[]"{}()=+\\_->@`,?!<'
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The reference pattern is "(?!<=\d)(\.)(?!\d)": its first group is a look-ahead for the two
# characters "<=" and a digit, which never holds where a "." stands, so it reduces to this one.
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
_MAX_PERIODS = 32  # re.UNICODE (== 32) lands in re.sub's count argument in the reference

_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    )
}
_NUMBER_WORDS["none"] = "0"
_ARTICLES = frozenset({"a", "an", "the"})

# Contractions written without the apostrophe and the form they are restored to. Only lower-case
# keys are listed: the reference table also has "Im", "Ive", "Id've" and "I'dve", which never
# match because the words are lower-cased first, and identities such as "let's".
_CONTRACTIONS_TABLE = """
aint ain't | arent aren't | cant can't | couldve could've | couldnt couldn't | couldn'tve couldn't've
couldnt've couldn't've | didnt didn't | doesnt doesn't | dont don't | hadnt hadn't | hadnt've hadn't've
hadn'tve hadn't've | hasnt hasn't | havent haven't | hed he'd | hed've he'd've | he'dve he'd've | hes he's
howd how'd | howll how'll | hows how's | isnt isn't | itd it'd | itd've it'd've | it'dve it'd've | itll it'll
maam ma'am | mightnt mightn't | mightnt've mightn't've | mightn'tve mightn't've | mightve might've
mustnt mustn't | mustve must've | neednt needn't | notve not've | oclock o'clock | oughtnt oughtn't
ow's'at 'ow's'at | 'ows'at 'ow's'at | 'ow'sat 'ow's'at | shant shan't | shed've she'd've | she'dve she'd've
shouldve should've | shouldnt shouldn't | shouldnt've shouldn't've | shouldn'tve shouldn't've
somebody'd somebodyd | somebodyd've somebody'd've | somebody'dve somebody'd've | somebodyll somebody'll
somebodys somebody's | someoned someone'd | someoned've someone'd've | someone'dve someone'd've
someonell someone'll | someones someone's | somethingd something'd | somethingd've something'd've
something'dve something'd've | somethingll something'll | thats that's | thered there'd
thered've there'd've | there'dve there'd've | therere there're | theres there's | theyd they'd
theyd've they'd've | they'dve they'd've | theyll they'll | theyre they're | theyve they've | twas 'twas
wasnt wasn't | wed've we'd've | we'dve we'd've | weve we've | werent weren't | whatll what'll
whatre what're | whats what's | whatve what've | whens when's | whered where'd | wheres where's
whereve where've | whod who'd | whod've who'd've | who'dve who'd've | wholl who'll | whos who's
whove who've | whyll why'll | whyre why're | whys why's | wont won't | wouldve would've
wouldnt wouldn't | wouldnt've wouldn't've | wouldn'tve wouldn't've | yall y'all | yall'll y'all'll
y'allll y'all'll | yall'd've y'all'd've | y'alld've y'all'd've | y'all'dve y'all'd've | youd you'd
youd've you'd've | you'dve you'd've | youll you'll | youre you're | youve you've
"""
_CONTRACTIONS = dict(
    pair.split() for line in _CONTRACTIONS_TABLE.strip().splitlines() for pair in line.split(" | ")
)


def process_punctuation(text: str) -> str:
    """The official VQA punctuation step (see the module docstring for the rules)."""
    # Both tests look at the text as given, not as it is being rewritten.
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        spaced = f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if delete_all or spaced else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=_MAX_PERIODS)


def process_digit_article(text: str) -> str:
    """Lower-case words; number words to digits; articles dropped; contractions restored."""
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


def process_answer(answer: str) -> str:
    """VLMEvalKit's ``process_answer``: newlines and tabs to spaces, strip, punctuation, digits and articles."""
    text = str(answer).replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def vqa_score(prediction: str, answers: Sequence[str]) -> float:
    """Leave-one-out VQA accuracy: mean over i of min(1, matches among the other answers / 3)."""
    gts = [process_answer(a) for a in answers]
    pred = process_answer(prediction)
    matches = sum(gt == pred for gt in gts)
    # Leaving out a matching answer leaves matches - 1, leaving out another leaves all of them.
    per_answer = [min(1.0, (matches - (gt == pred)) / 3) for gt in gts]
    return sum(per_answer) / len(per_answer)


def exact_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VLMEvalKit's ``accuracy`` method: stripped, lower-cased equality with the best answer."""
    pred = str(prediction).strip().lower()
    return max(float(str(a).strip().lower() == pred) for a in answers)


@METRICS.register("vqa")
class VQAv2Scorer(Verifier):
    """VQAv2 / TextVQA accuracy as VLMEvalKit computes it (see the module docstring).

    Reference: VLMEvalKit ``vlmeval/dataset/utils/vqa_eval.py``, ``process_line`` (methods
    ``vqa_score`` and ``accuracy``), ``process_answer`` and ``hit_calculate``; the prediction is the
    GLM model wrapper's (``vlmeval/vlm/glm.py``, ``GLMThinking.extract_answer``) unless
    ``wrapper="none"``.

    Args:
        method: ``"auto"`` (``vqa_score`` for a list of two or more human answers, ``accuracy`` for
            one answer), ``"vqa_score"`` or ``"accuracy"``.
        wrapper: ``"glm"`` (VLMEvalKit's GLM wrapper extracts the answer) or ``"none"`` (raw reply).
        key: the name the score is reported under.
    """

    name = "vqa"

    def __init__(self, method: VQAMethod = "auto", wrapper: str = "glm", key: str | None = None) -> None:
        super().__init__(key)
        if method not in VQA_METHODS:
            raise ValueError(f"vqa: method={method!r}; valid: {', '.join(VQA_METHODS)}")
        check_wrapper(wrapper, "vqa")
        self.method = method
        self.wrapper = wrapper

    def _method(self, answers: Sequence[str]) -> str:
        if self.method != "auto":
            return self.method
        return "vqa_score" if len(answers) >= 2 else "accuracy"

    def check_answer(self, sample: Sample) -> None:
        reference_answers(sample.answer)

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        answers = reference_answers(sample.answer)
        prediction = reference_prediction(response, self.wrapper)
        method = self._method(answers)
        if method == "vqa_score":
            value = vqa_score(prediction, answers)
            details = {"prediction": prediction, "processed": process_answer(prediction), "method": method}
        else:
            value = exact_accuracy(prediction.strip(), answers)
            details = {"prediction": prediction, "method": method}
        return self._out(value, details)

    def oracle(self, sample: Sample) -> str:
        answers = reference_answers(sample.answer)
        if self._method(answers) == "accuracy":
            return answers[0]
        # The answer most annotators gave, in their own words.
        counts = Counter(process_answer(a) for a in answers)
        best = counts.most_common(1)[0][0]
        return next(a for a in answers if process_answer(a) == best)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "method": self.method,
            "wrapper": self.wrapper,
            **scorer_info(
                "VLMEvalKit vlmeval/dataset/utils/vqa_eval.py: process_line (vqa_score / accuracy)"
            ),
        }
