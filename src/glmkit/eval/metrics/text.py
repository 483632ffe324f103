"""Text helpers shared by the metrics: final-answer extraction, normalisation, edit distance."""

from __future__ import annotations

import re
import string

# GLM-4.1V/4.5V wrap final answers (not only boxes) in these markers (zai-org/GLM-V README).
BEGIN_BOX = "<|begin_of_box|>"
END_BOX = "<|end_of_box|>"

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_THINK_OPEN = re.compile(r"<think>", re.I)
_THINK_CLOSE = re.compile(r"</think>", re.I)


def strip_thinking(text: str | None) -> str:
    """``text`` without its reasoning: every ``<think>...</think>`` block is removed.

    Chat templates that open ``<think>`` in the prompt leave a reply that starts inside the block, so
    everything before a remaining ``</think>`` is reasoning too; a ``<think>`` that is never closed
    (a truncated generation) runs to the end of the text. Boxes, points and answers written while
    thinking are drafts, not the answer (GLM-4.1V-Thinking emits ``<think>...</think><answer>...``).
    """
    if text is None:
        return ""
    text = _THINK.sub("", str(text))
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end() :]
    opened = _THINK_OPEN.search(text)
    if opened:
        text = text[: opened.start()]
    return text


def _boxed_contents(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}`` with balanced braces, or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def answer_span(text: str | None) -> str:
    """The final-answer span of a model output, with thinking removed (see :func:`strip_thinking`).

    The last ``<|begin_of_box|>...<|end_of_box|>`` span (GLM) if any, else the last
    ``<answer>...</answer>``, else the whole remaining text. Grounding and pointing parse
    coordinates from this span; OCR and VQA metrics compare it (after :func:`extract_answer`).
    """
    text = strip_thinking(text)
    if BEGIN_BOX in text:
        tail = text[text.rfind(BEGIN_BOX) + len(BEGIN_BOX) :]
        end = tail.find(END_BOX)
        return (tail[:end] if end >= 0 else tail).strip()
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip()
    return text.strip()


def extract_answer(text: str | None) -> str:
    """The final answer inside a model output.

    Thinking is removed first; then the last ``<|begin_of_box|>...<|end_of_box|>`` span (GLM), the
    last ``<answer>...</answer>``, the last ``\\boxed{...}``; otherwise the remaining text.
    """
    text = strip_thinking(text)
    if BEGIN_BOX in text or _ANSWER_TAG.search(text):
        return answer_span(text)
    boxed = _boxed_contents(text)
    if boxed is not None:
        return boxed.strip()
    return text.strip()


def normalize_whitespace(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return " ".join(text.split())


# The VQA evaluation normalisation (Antol et al. 2015, the official vqaEval.py): lowercase,
# punctuation removed (except a decimal point between digits), number words to digits,
# articles dropped, a few contractions restored.
_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
}
_ARTICLES = {"a", "an", "the"}
_CONTRACTIONS = {
    "dont": "don't",
    "doesnt": "doesn't",
    "isnt": "isn't",
    "arent": "aren't",
    "cant": "can't",
    "wont": "won't",
    "im": "i'm",
    "ive": "i've",
    "youre": "you're",
    "thats": "that's",
    "whats": "what's",
}
_DIGIT_COMMA = re.compile(r"(?<=\d),(?=\d{3}\b)")
_PUNCT_KEEP_DECIMAL = re.compile(r"(?!(?<=\d)\.(?=\d))[" + re.escape(string.punctuation) + "]")


def normalize_vqa(text: str) -> str:
    """VQA-style normalisation used by the normalised-match metric."""
    text = str(text).lower().replace("\n", " ").replace("\t", " ").strip()
    text = _DIGIT_COMMA.sub("", text)
    text = _PUNCT_KEEP_DECIMAL.sub(" ", text.replace("'", ""))
    words = []
    for word in text.split():
        word = _NUMBER_WORDS.get(word, word)
        if word in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each cost 1).

    Uses ``rapidfuzz`` when installed; otherwise a two-row dynamic programme, O(len(a)·len(b))
    time and O(min) memory, ample for answer-length strings.
    """
    try:
        from rapidfuzz.distance import Levenshtein
    except ImportError:
        pass
    else:
        return int(Levenshtein.distance(a, b))
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]
