"""The generated HTML Design2Code renders: taken out of the reply, then cleaned as the benchmark does.

Reference: Design2Code (NoviScl/Design2Code) ``metrics/visual_score.py``, ``pre_process`` (called
on every generated page before it is rendered), which runs, in order:

1. ``check_repetitive_content`` (``data_utils/dedup_post_gen.py``): the text with tags removed is
   cut into 100-character chunks; a chunk whose ``difflib`` ratio with an earlier distinct chunk is
   >= 0.8 joins that chunk's group, and once a group has 5 members the page is cut at the group's
   first chunk (its position mapped back into the HTML). The reference mixes the two position
   systems when comparing cut points; :func:`truncate_repetition` keeps that arithmetic.
2. ``make_html``: text without an ``<html>`` tag is wrapped in ``<html><body><p>...</p></body></html>``.
3. ``truncate_repeated_html_elements``: parsed with BeautifulSoup's ``html.parser``, an element whose
   serialisation already occurred 50 times is removed; the page is written back as BeautifulSoup
   serialises it.

Taking the code out of the reply (:func:`extract_html`) is glmkit's: the longest fenced block, else
from the first tag to the last.
"""

from __future__ import annotations

import difflib
import re

_FENCE_RE = re.compile(r"```(?:html|HTML)?\s*\n(.*?)```", re.S)
_TAG = re.compile(r"<.*?>")
_HTML_TAG = re.compile(r"<html[^>]*>", re.I)


def extract_html(text: str) -> str:
    """The HTML inside a model output: the longest fenced block, else from the first tag to the last."""
    text = text or ""
    fences = _FENCE_RE.findall(text)
    if fences:
        return max(fences, key=len).strip()
    start = text.find("<")
    end = text.rfind(">")
    if start >= 0 and end > start:
        return text[start : end + 1]
    return text


def truncate_repetition(
    content: str, chunk_size: int = 100, repetition_threshold: int = 5, similarity_threshold: float = 0.8
) -> str:
    """``content`` cut where ``check_repetitive_content`` finds repeated text (step 1), else unchanged."""
    clean = _TAG.sub("", content)
    # Position in ``content`` of each character of ``clean``.
    position: list[int] = []
    at = 0
    for ch in clean:
        while content[at] != ch:
            at += 1
        position.append(at)
        at += 1
    chunks = [clean[i : i + chunk_size] for i in range(0, len(clean), chunk_size)]
    groups: dict[str, list[int]] = {}
    cut = len(clean)
    for i, chunk in enumerate(chunks):
        for seen, members in groups.items():
            if difflib.SequenceMatcher(None, chunk, seen).ratio() >= similarity_threshold:
                members.append(i)
                if len(members) >= repetition_threshold:
                    clean_start = min(cut, members[0] * chunk_size)
                    start = position[clean_start] if clean_start < len(position) else len(content)
                    cut = min(cut, start)
                break
        else:
            groups[chunk] = [i]
    return content[:cut] if cut != len(clean) else content


def wrap_plain_text(content: str) -> str:
    """``make_html`` (step 2): text without an ``<html>`` tag becomes one paragraph of a page."""
    if _HTML_TAG.search(content):
        return content
    return f"<html><body><p>{content}</p></body></html>"


def drop_repeated_elements(content: str, max_count: int = 50) -> str:
    """``truncate_repeated_html_elements`` (step 3) on ``html.parser``'s reading of ``content``."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(content, "html.parser")
    counts: dict[str, int] = {}
    for element in soup.find_all(True):
        try:
            serialised = str(element)
        except Exception:  # an element that no longer serialises is dropped, as in the reference
            element.decompose()
            continue
        counts[serialised] = counts.get(serialised, 0) + 1
        if counts[serialised] > max_count:
            element.decompose()
    return str(soup)


def preprocess_html(content: str) -> str:
    """Design2Code's ``pre_process`` of a generated page: steps 1-3 of the module docstring."""
    return drop_repeated_elements(wrap_plain_text(truncate_repetition(content)))
