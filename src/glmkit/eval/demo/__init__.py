"""Offline demo benchmarks, generated procedurally (and with Chromium for page screenshots).

Each demo is a registered benchmark whose data are built on first use under ``<out>/data``, so
it runs in one command with no download, e.g.::

    glmkit eval --benchmark demo-ocr --model oracle
    glmkit eval --benchmark demo-vqa --model openai:http://localhost:8000/v1@glm-4.5v

One module per demo:

* :mod:`~glmkit.eval.demo.grounding` (``demo-grounding``): find the unique coloured shape -> box
  (Acc@IoU>=0.5, 0-1000 predictions).
* :mod:`~glmkit.eval.demo.pointing` (``demo-pointing``): point at the unique coloured shape -> point
  in its box or mask.
* :mod:`~glmkit.eval.demo.ocr` (``demo-ocr``): read rendered words, codes and sentences (1 - NED,
  exact match).
* :mod:`~glmkit.eval.demo.vqa` (``demo-vqa``): count shapes, name a colour, read a bar value off a
  chart (5% tolerance).
* :mod:`~glmkit.eval.demo.ui2code` (``demo-ui2code``): reproduce simple web pages from screenshots
  (Design2Code-style scores).
* :mod:`~glmkit.eval.demo.imagemining` (``demo-imagemining``): tiny text in a corner that needs
  ``crop_image``, facts about fictional places that need ``search_web_text`` over a local index
  shipped with the data, and both.

Shape scenes come from :func:`glmkit.data.procedural.shape_scene` (the generator the encoder's
procedural pretraining data uses) and text is drawn with :func:`glmkit.data.fonts.load_font`; the
shared helpers are in :mod:`~glmkit.eval.demo.common`. Generation is deterministic in ``seed``:
the same arguments give the same files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from glmkit.eval.demo.common import CODE_ALPHABET, WORDS, serial_code
from glmkit.eval.demo.grounding import make_grounding
from glmkit.eval.demo.imagemining import make_imagemining
from glmkit.eval.demo.ocr import make_ocr
from glmkit.eval.demo.pointing import make_pointing
from glmkit.eval.demo.ui2code import make_ui2code
from glmkit.eval.demo.vqa import make_vqa

DEMO_MAKERS: dict[str, Callable[..., Path]] = {
    "demo-grounding": make_grounding,
    "demo-pointing": make_pointing,
    "demo-ocr": make_ocr,
    "demo-vqa": make_vqa,
    "demo-ui2code": make_ui2code,
    "demo-imagemining": make_imagemining,
}


def make_demo(name: str, out_dir: str | Path, **kwargs: Any) -> Path:
    """Build demo ``name``'s data under ``out_dir`` and return its JSONL path."""
    if name not in DEMO_MAKERS:
        raise KeyError(f"unknown demo {name!r}; demos: {', '.join(DEMO_MAKERS)}")
    return DEMO_MAKERS[name](Path(out_dir), **kwargs)


__all__ = [
    "CODE_ALPHABET",
    "DEMO_MAKERS",
    "WORDS",
    "make_demo",
    "make_grounding",
    "make_imagemining",
    "make_ocr",
    "make_pointing",
    "make_ui2code",
    "make_vqa",
    "serial_code",
]
