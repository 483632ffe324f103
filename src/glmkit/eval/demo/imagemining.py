"""``demo-imagemining``: questions that need cropping, searching or both, with a local search index.

* ``crop``: a serial code printed tiny in a corner (read it with ``crop_image``);
* ``search``: a fictional landmark named in large type; its opening year is in the index;
* ``crop+search``: the landmark's name is printed tiny in a corner; its height is in the index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import ImageDraw

from glmkit.data.fonts import load_font
from glmkit.eval.definition import register_benchmark
from glmkit.eval.demo.common import DemoSamples, choice, demo_rng, demo_scene, randint, sample, serial_code
from glmkit.eval.imagemining import imagemining_benchmark

SYLLABLES = ("vel", "mor", "ka", "stra", "lin", "dor", "bre", "tha", "nix", "quo", "ral", "zen", "pim", "sor")
LANDMARKS = ("Tower", "Bridge", "Observatory", "Lighthouse", "Library", "Dam")
CANVAS = (640, 480)
_CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def fictional_name(rng: np.random.Generator) -> str:
    """A landmark that does not exist, e.g. ``"Velmor Lighthouse"``."""
    return "".join(sample(rng, SYLLABLES, 2)).capitalize() + " " + choice(rng, LANDMARKS)


def _corner_xy(corner: str, text_w: int, text_h: int) -> tuple[int, int]:
    width, height = CANVAS
    x = 6 if corner.endswith("left") else width - text_w - 6
    y = 4 if corner.startswith("top") else height - text_h - 6
    return x, y


def make_imagemining(out_dir: Path, n: int = 9, seed: int = 0) -> Path:
    """Write ``n`` samples under ``out_dir`` and the search index they need under
    ``out_dir/search_index`` (their facts plus as many distractor documents); returns the JSONL path."""
    from glmkit.tools.search import build_index

    rng = demo_rng(seed, 5)
    samples = DemoSamples(out_dir)
    documents, used = [], set()
    tiny = load_font(9)
    for i in range(n):
        category = ("crop", "search", "crop+search")[i % 3]
        image = demo_scene(rng, CANVAS, randint(rng, 6, 10)).image
        draw = ImageDraw.Draw(image)
        corner = choice(rng, _CORNERS)
        name = fictional_name(rng)
        while name in used:
            name = fictional_name(rng)
        used.add(name)
        year, height = randint(rng, 1820, 1990), randint(rng, 40, 420)
        documents.append(
            {
                "title": name,
                "url": f"https://demo.invalid/wiki/{name.replace(' ', '_')}",
                "text": f"The {name} is a landmark of the demo world. It was completed in {year} "
                f"and stands {height} metres tall. Visitors reach it by the old coast road.",
            }
        )
        answer: Any
        if category == "crop":
            code = serial_code(rng)
            text: str | None = f"SN {code}"
            question = (
                f"What is the serial number printed in small text in the {corner} corner? Give the code only."
            )
            answer = code
        elif category == "search":
            big = load_font(30)
            tw = draw.textlength(name, font=big)
            draw.rectangle((320 - tw / 2 - 12, 200, 320 + tw / 2 + 12, 250), fill="white", outline="black")
            draw.text((320 - tw / 2, 208), name, font=big, fill="black")
            text = None
            question = "In which year was the landmark named on the sign completed?"
            answer = str(year)
        else:
            text = name
            question = (
                f"The small text in the {corner} corner names a landmark. How tall is that landmark, in metres? "
                "Give the number only."
            )
            answer = str(height)
        if text is not None:
            left, top, right, bottom = draw.textbbox((0, 0), text, font=tiny)
            x, y = _corner_xy(corner, right - left, bottom - top)
            draw.text((x - left, y - top), text, font=tiny, fill=(60, 60, 60))
        samples.add(f"mine-{i:03d}", image, question, answer, category, {"entity": name})
    for _ in range(n):  # distractor documents
        name = fictional_name(rng)
        if name not in used:
            documents.append(
                {
                    "title": name,
                    "url": f"https://demo.invalid/wiki/{name.replace(' ', '_')}",
                    "text": f"The {name} was planned in {randint(rng, 1800, 2000)} but never finished.",
                }
            )
    build_index(samples.out_dir / "search_index", documents=documents)
    return samples.write("demo-imagemining")


DEMO_IMAGEMINING = register_benchmark(
    imagemining_benchmark(
        "demo-imagemining",
        tools=(("crop_image", {}), ("search_web_text", {"index_path": "{data_dir}/search_index"})),
        make_data=make_imagemining,
        description="demo: tiny corner text (crop_image) and facts in a local index (search_web_text)",
    )
)
